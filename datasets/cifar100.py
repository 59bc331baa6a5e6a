"""CIFAR-100 from torchvision's on-disk format (`<root>/cifar-100-python/{train,test}`, pickles
with `data` (N x 3072 uint8, channel-major) and `fine_labels`). The pickles are read directly:
torchvision's class checks md5 sums even without downloading, so it would refuse a generated
test folder; torchvision is used only for `--download`."""
import os
import pickle

import numpy as np
import torch

from .errors import DatasetError, DatasetNotFoundError

FOLDER = "cifar-100-python"
NUM_CLASSES = 100


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
        raise RefusedGlobal(f"the pickle would construct '{module}.{name}', which a CIFAR-100 file never holds")


def read_pickle(path):
    """A CIFAR-100 pickle as a dict, read with the restricted unpickler; a truncated, foreign or
    malicious file is one DatasetError naming it."""
    try:
        with open(path, "rb") as f:
            entry = RestrictedUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise DatasetError(f"refusing to read {path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OSError) as e:
        raise DatasetError(f"cannot read {path}: truncated or not a CIFAR-100 pickle "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{path} is not a CIFAR-100 pickle (it holds a {type(entry).__name__}, not a dict)")
    return entry


def download(root):
    from torchvision.datasets import CIFAR100
    CIFAR100(root, train=True, download=True)
    CIFAR100(root, train=False, download=True)


def load_split(root, train):
    """Returns (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    path = os.path.join(root, FOLDER, "train" if train else "test")
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"CIFAR-100 not found: expected the file {path} (torchvision's 'cifar-100-python' "
            f"folder inside --data-root {root}). Pass --download to fetch it, or point "
            f"--data-root at the folder that contains 'cifar-100-python/'.")
    entry = read_pickle(path)
    missing = [k for k in ("data", "fine_labels") if k not in entry]
    if missing:
        raise DatasetError(f"{path} is not a CIFAR-100 pickle: no {' / '.join(missing)} entry")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{path}: 'data' must be an N x 3072 uint8 array (32x32 RGB), found "
                           f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    try:
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: 'fine_labels' is not a list of integers") from None
    if labels.ndim != 1 or len(data) != len(labels):
        raise DatasetError(f"{path}: {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    if len(data) == 0:
        raise DatasetError(f"{path} holds no images")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)
