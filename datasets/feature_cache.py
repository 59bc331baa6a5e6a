"""Feature caches: one float16 memory-mapped `.npy` (row i = sample i of the dataset) plus a JSON
index (sample index -> file name, which crop, the dataset's identity, and where the features come
from). Teacher caches let train_student.py run SimReg without building the teacher; backbone caches
let eval_linear.py train its probe on fixed features. A cache is only ever used for the dataset and
the source it was written for."""
import hashlib
import json
import os

import numpy as np
import torch

from core.distributed import all_reduce_sum_tensor, barrier

from .errors import DatasetError

FORMAT = "kdzoo-feature-cache-1"


class CacheMismatchError(DatasetError):
    """A feature cache that is missing, incomplete, or written for other data or another model."""


def dataset_identity(name, split, file_names, content=b""):
    """What makes two datasets the same for a cache: name, split, the ordered file names (and, for
    in-memory data sets, the pixels and labels themselves)."""
    h = hashlib.sha1("\n".join(file_names).encode())
    h.update(content)
    return {"dataset": name, "split": split, "num_samples": len(file_names), "files_sha1": h.hexdigest()}


def image_set_identity(image_set, split):
    """Identity and row names of an in-memory ImageSet (CIFAR-100, digits)."""
    names = [f"{split}/{i:06d}" for i in range(len(image_set))]
    content = image_set.images.numpy().tobytes() + image_set.labels.numpy().tobytes()
    return dataset_identity(image_set.name, split, names, content), names


def paths(prefix):
    return prefix + ".npy", prefix + ".json"


class FeatureWriter:
    """Write rows of a cache as they are computed (no full copy in memory); `close()` publishes the
    index, so a cache interrupted midway is never taken for a complete one. Under torchrun the main
    process creates the file and the others attach to it (`create=False`); each writes its rows."""

    def __init__(self, prefix, identity, file_names, dim, crop, source, create=True):
        self.npy, self.meta_path = paths(prefix)
        self.create = create
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(self.npy)), exist_ok=True)
            if os.path.exists(self.meta_path):
                os.remove(self.meta_path)
            self.array = np.lib.format.open_memmap(self.npy, mode="w+", dtype=np.float16,
                                                   shape=(identity["num_samples"], dim))
        else:
            self.array = np.load(self.npy, mmap_mode="r+")
        self.meta = {"format": FORMAT, **identity, "dim": dim, "crop": crop, "source": source,
                     "files": list(file_names)}
        self.written = np.zeros(identity["num_samples"], dtype=bool)

    def write(self, index, feats):
        idx = index.cpu().numpy()
        self.array[idx] = feats.detach().float().cpu().numpy().astype(np.float16)
        self.written[idx] = True

    def abort(self):
        """Remove a cache that failed midway (its index was never written, so nothing used it)."""
        del self.array
        if self.create and os.path.exists(self.npy):
            os.remove(self.npy)

    def close(self, cost=None):
        """Publish the index (with `cost`, what writing the cache cost: kept out of its fingerprint)."""
        self.array.flush()
        del self.array
        written = all_reduce_sum_tensor(torch.from_numpy(self.written).to(torch.int32))  # rows written by any process
        barrier()
        if (written == 0).any():
            raise RuntimeError(f"feature cache {self.npy}: {int((written == 0).sum())} rows were never written")
        if not self.create:
            return
        with open(self.meta_path + ".tmp", "w") as f:
            json.dump({**self.meta, **({"cost": cost} if cost else {})}, f)
        os.replace(self.meta_path + ".tmp", self.meta_path)


class FeatureCache:
    """A complete cache opened read-only (memory-mapped); `lookup(index)` gives float32 rows."""

    def __init__(self, prefix):
        self.npy, self.meta_path = paths(prefix)
        if not (os.path.isfile(self.npy) and os.path.isfile(self.meta_path)):
            raise CacheMismatchError(f"no complete feature cache at {prefix} (expected {self.npy} and {self.meta_path})")
        try:
            with open(self.meta_path) as f:
                self.meta = json.load(f)
        except (OSError, ValueError) as e:
            raise CacheMismatchError(f"cannot read {self.meta_path}: not a JSON index ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise CacheMismatchError(f"{self.meta_path} is not a feature cache of this project")
        try:   # allow_pickle=False: a .npy holding Python objects is refused, never unpickled
            self.array = np.load(self.npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CacheMismatchError(f"cannot read {self.npy}: truncated or not a .npy array "
                                     f"({str(e).splitlines()[0]})") from None
        self.dim = self.meta.get("dim")
        expected = (self.meta.get("num_samples"), self.dim)
        if self.array.ndim != 2 or tuple(self.array.shape) != expected:
            raise CacheMismatchError(f"{self.npy} holds an array of shape {tuple(self.array.shape)}, its index "
                                     f"{self.meta_path} says {expected}: the cache is damaged; write it again")

    @property
    def fingerprint(self):
        """sha256 of what the features depend on: the data, the crop, the teacher file's content
        (not where the cache or the teacher file lie, nor what writing it cost)."""
        meta = {**{k: v for k, v in self.meta.items() if k != "cost"},
                "source": {k: v for k, v in self.meta.get("source", {}).items() if k != "path"}}
        return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()

    def check(self, identity, source=None):
        """Refuse a cache written for another dataset (or, when `source` is given, by another model)."""
        mine = {k: self.meta[k] for k in identity}
        if mine != identity:
            raise CacheMismatchError(
                f"feature cache {self.npy} was written for {self.meta['dataset']}/{self.meta['split']} "
                f"({self.meta['num_samples']} samples), not for {identity['dataset']}/{identity['split']} "
                f"({identity['num_samples']} samples, files {'equal' if mine.get('files_sha1') == identity['files_sha1'] else 'differ'})")
        if source is not None and self.meta["source"] != source:
            raise CacheMismatchError(f"feature cache {self.npy} holds features of {self.meta['source']}, not {source}")
        return self

    def lookup(self, index):
        rows = np.asarray(self.array[np.sort(index.cpu().numpy())], dtype=np.float32)
        order = torch.as_tensor(np.argsort(np.argsort(index.cpu().numpy())))
        return torch.from_numpy(rows)[order].to(index.device)

    def all(self):
        return torch.from_numpy(np.asarray(self.array, dtype=np.float32))
