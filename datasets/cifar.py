"""CIFAR-100 and CIFAR-10 from torchvision's on-disk formats (`<root>/cifar-100-python/{train,test}`;
`<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`): pickles with `data` (N x 3072 uint8,
channel-major) and the labels (`fine_labels`; `labels`). The pickles are read directly:
torchvision's classes check md5 sums even without downloading, so they would refuse a generated
test folder; torchvision is used only for `--download`."""
import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DatasetError, DatasetNotFoundError


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR variant's pickles lie and what they hold."""
    title: str
    folder: str
    train_files: tuple
    test_files: tuple
    label_key: str
    num_classes: int
    torchvision_class: str


CIFAR100 = Layout("CIFAR-100", "cifar-100-python", ("train",), ("test",), "fine_labels", 100, "CIFAR100")
CIFAR10 = Layout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                 "labels", 10, "CIFAR10")


class RefusedGlobal(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers, numbers, strings and bytes, plus numpy arrays of numbers (the
    pickles hold `data` as an ndarray): numpy's array reconstructor and ndarray / dtype are the only
    globals it resolves, so a file that would construct any other object, and run code, is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            import codecs
            if module == "_codecs":
                return codecs.encode
            multiarray = getattr(np, "_core", None) or np.core
            return {"_reconstruct": multiarray.multiarray._reconstruct, "ndarray": np.ndarray,
                    "dtype": np.dtype}[name]
        raise RefusedGlobal(f"the pickle would construct '{module}.{name}', which a CIFAR file never holds")


def read_pickle(path, title="CIFAR-100"):
    """A CIFAR pickle as a dict, read with the restricted unpickler; a truncated, foreign or
    malicious file is one DatasetError naming it."""
    try:
        with open(path, "rb") as f:
            entry = RestrictedUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise DatasetError(f"refusing to read {path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OSError) as e:
        raise DatasetError(f"cannot read {path}: truncated or not a {title} pickle "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{path} is not a {title} pickle (it holds a {type(entry).__name__}, not a dict)")
    return entry


def download(root, layout):
    import torchvision.datasets
    for train in (True, False):
        getattr(torchvision.datasets, layout.torchvision_class)(root, train=train, download=True)


def load(root, download_first, layout):
    """((train images, labels), (test images, labels)) of the CIFAR variant `layout`."""
    if download_first:
        download(root, layout)
    return load_split(root, layout, True), load_split(root, layout, False)


def load_split(root, layout, train):
    """Returns (images uint8 (N, 3, 32, 32), labels int64 (N,)), the split's files in order."""
    parts = [_read_file(root, layout, name) for name in (layout.train_files if train else layout.test_files)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _read_file(root, layout, name):
    path = os.path.join(root, layout.folder, name)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"{layout.title} not found: expected the file {path} (torchvision's '{layout.folder}' "
            f"folder inside --data-root {root}). Pass --download to fetch it, or point "
            f"--data-root at the folder that contains '{layout.folder}/'.")
    entry = read_pickle(path, layout.title)
    missing = [k for k in ("data", layout.label_key) if k not in entry]
    if missing:
        raise DatasetError(f"{path} is not a {layout.title} pickle: no {' / '.join(missing)} entry")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{path}: 'data' must be an N x 3072 uint8 array (32x32 RGB), found "
                           f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    try:
        labels = np.asarray(entry[layout.label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: '{layout.label_key}' is not a list of integers") from None
    if labels.ndim != 1 or len(data) != len(labels):
        raise DatasetError(f"{path}: {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise DatasetError(f"{path}: labels must lie in 0..{layout.num_classes - 1}, found "
                           f"{labels.min()}..{labels.max()}")
    if len(data) == 0:
        raise DatasetError(f"{path} holds no images")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)
