"""The embedded default dataset: scikit-learn's bundled handwritten digits (1,797 real 8x8
images, 10 classes, no download), upsampled to 32x32 RGB uint8 with a fixed stratified split."""
import functools
import gzip
import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DatasetError

NUM_CLASSES = 10


def bundled_csv_path():
    """scikit-learn's digits.csv.gz (64 pixel columns in 0..16, then the label), found without
    importing scikit-learn: its import (SciPy and the rest) costs about a second per process."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the digits data set is scikit-learn's bundled copy: pip install scikit-learn")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")


@functools.lru_cache(maxsize=1)
def load_digits_tensors():
    """All 1,797 digits as (N, 3, 32, 32) uint8 images and int64 labels, in file order."""
    with gzip.open(bundled_csv_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    images = torch.tensor(table[:, :-1].reshape(-1, 1, 8, 8), dtype=torch.float32) / 16.0   # in [0, 1]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    return images, torch.tensor(table[:, -1].astype(np.int64))


def split_indices(labels, test_fraction=0.2):
    """Deterministic stratified split: within each class, every k-th sample (in file order)
    goes to the test set."""
    step = round(1 / test_fraction)
    train, test = [], []
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().flatten().tolist()
        test += idx[::step]
        train += [i for i in idx if i not in set(idx[::step])]
    return torch.tensor(sorted(train)), torch.tensor(sorted(test))


def load_split(train):
    images, labels = load_digits_tensors()
    train_idx, test_idx = split_indices(labels)
    idx = train_idx if train else test_idx
    return images[idx].contiguous(), labels[idx].contiguous()


def load(root=None, download=False):
    """((train images, labels), (test images, labels)): bundled with scikit-learn, nothing to fetch."""
    return load_split(train=True), load_split(train=False)
