"""CIFAR-100 from torchvision's on-disk format (`<root>/cifar-100-python/{train,test}`, pickles
with `data` (N x 3072 uint8, channel-major) and `fine_labels`). The pickles are read directly:
torchvision's class checks md5 sums even without downloading, so it would refuse a generated
test folder; torchvision is used only for `--download`."""
import os
import pickle

import numpy as np
import torch

from .errors import DatasetNotFoundError

FOLDER = "cifar-100-python"


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
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)
