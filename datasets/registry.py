"""Every data set the project reads, one entry each: where its images come from, how they are held
(in memory, augmented in batches on the device; or an image folder decoded by worker processes),
its normalisation constants, classes and, for a folder, the class subset it keeps. A new data set
is one entry here and its loader."""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

from . import cifar, digits
from .errors import DatasetError
from .imagenet_constants import IMAGENET100_INDICES, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str                   # 'memory' or 'folder'
    num_classes: Optional[int]  # None: a folder's classes are those it holds (after `class_subset`)
    mean: Optional[tuple]       # None: one constant per channel from the train split (grey images)
    std: Optional[tuple]
    root_holds: str             # what --data-root must hold (help texts)
    load: Optional[Callable] = None      # memory: (root, download) -> ((images, labels) train, test)
    class_subset: Optional[tuple] = None  # folder: the kept classes, by index among its sorted class folders

    @property
    def in_memory(self):
        return self.kind == "memory"


# SSKD's scripts normalise CIFAR-100 with these (4th decimal apart from RepDistiller's, which we use)
SSKD_CIFAR100_MEAN = (0.5071, 0.4866, 0.4409)
SSKD_CIFAR100_STD = (0.2675, 0.2565, 0.2761)

REGISTRY = {e.name: e for e in (
    # RepDistiller's constants
    DatasetEntry("cifar100", "memory", cifar.CIFAR100.num_classes, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                 "cifar-100-python/", partial(cifar.load, layout=cifar.CIFAR100)),
    # the mean and (population) std of CIFAR-10's train pixels; no reference table uses CIFAR-10
    DatasetEntry("cifar10", "memory", cifar.CIFAR10.num_classes, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                 "cifar-10-batches-py/", partial(cifar.load, layout=cifar.CIFAR10)),
    DatasetEntry("digits", "memory", digits.NUM_CLASSES, None, None, "nothing (bundled with scikit-learn)",
                 digits.load),
    DatasetEntry("imagenet", "folder", None, IMAGENET_MEAN, IMAGENET_STD, "train/ and val/"),
    DatasetEntry("imagenet100", "folder", None, IMAGENET_MEAN, IMAGENET_STD,
                 "train/ and val/ of the full ImageNet (SimReg's 100 classes are picked from it)",
                 class_subset=IMAGENET100_INDICES),
)}
NAMES = tuple(REGISTRY)


def entry(name):
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset '{name}'; choose from {', '.join(NAMES)}")
    return REGISTRY[name]


def data_root_help(names=NAMES):
    """--data-root's help: what the folder holds for each data set."""
    return "folder holding " + "; ".join(f"{REGISTRY[n].root_holds} ({n})" for n in names)
