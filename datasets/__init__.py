"""Data sets behind one entry point: `build(name, root, split, purpose, views, ...)` returns a
`Split` whose loader yields batches of dicts {'image', 'label', 'index'} (plus 'image_t', a
separate teacher view, for SimReg pairs) on the training device, whatever the storage:

- in memory (CIFAR-100 and CIFAR-10 from torchvision's pickles, the embedded digits): one uint8 tensor,
  augmented in batches on the device from draws of one checkpointed generator;
- image folders (ImageNet, ImageNet-100): torchvision ImageFolders decoded by worker processes.

`purpose` says what the batches are for: 'train' (the training augmentation of `views`), 'eval'
(no augmentation; centre crops for folders; in order) or 'probe' (the linear probe's training
augmentation). Every image is normalised with its data set's constants; a network trained with
other constants gets a `models.common.Renormalize` in front of it. Each data set is one entry of
`REGISTRY` (datasets/registry.py)."""
from dataclasses import dataclass
from functools import cached_property

import torch

from .errors import DatasetError, DatasetNotFoundError
from .feature_cache import dataset_identity, image_set_identity
from .memory import ImageSet, InMemoryLoader, load_image_sets
from .registry import NAMES, REGISTRY, DatasetEntry, data_root_help, entry

PURPOSES = ("train", "eval", "probe")
VIEWS = ("plain", "rotations", "pair")


def in_memory(name):
    return entry(name).in_memory


@dataclass(eq=False)
class Split:
    """One split of a data set: its loader and what a model, a method or a cache needs to know."""
    dataset: str
    split: str             # 'train', or the held-out split's own name ('test' in memory, 'val' for folders)
    loader: object         # iterable of batch dicts; .generator, .epoch_state, resume_at(state, step), len()
    labels: torch.Tensor   # CPU int64, in dataset order
    num_classes: int
    image_shape: tuple
    mean: tuple
    std: tuple
    crop: str              # what the images are: 'augmented', 'full' or the centre crop
    source: object         # the ImageSet or ImageFolder behind the loader

    def __len__(self):
        return len(self.labels)

    @property
    def norm(self):
        return (tuple(self.mean), tuple(self.std))

    @cached_property
    def names(self):
        """A name per row (file names for folders), in dataset order."""
        if isinstance(self.source, ImageSet):
            return [f"{self.split}/{i:06d}" for i in range(len(self.source))]
        return self.source.file_names()

    @cached_property
    def identity(self):
        """What makes two data sets the same for a feature cache."""
        if isinstance(self.source, ImageSet):
            return image_set_identity(self.source, self.split)[0]
        return dataset_identity(self.dataset, self.split, self.names)


def build(name, root=None, split="train", purpose="eval", views="plain", *, batch_size=256, device="cpu",
          generator=None, rank=0, world_size=1, download=False, image_size=224, workers=8, aug="weak_weak",
          single_aug=True, decode="cpu"):
    """The `split` ('train', or 'test' / 'val' for the held-out one) of data set `name` as a Split.
    Training batches come in the order and with the augmentation drawn from `generator`; under
    torchrun every rank takes its share (`rank`, `world_size`). `decode` 'gpu' decodes image
    folders' JPEGs on `device` (datasets.gpu_decode); 'cpu' (the default) decodes with PIL."""
    spec = entry(name)
    if purpose not in PURPOSES or views not in VIEWS:
        raise ValueError(f"purpose {purpose!r} / views {views!r}: choose from {PURPOSES} / {VIEWS}")
    train = split == "train"
    shuffled = purpose != "eval"
    shard = {"rank": rank, "world_size": world_size}
    if spec.in_memory:
        image_set = load_image_sets(name, root, download)[0 if train else 1]
        loader = InMemoryLoader(image_set, batch_size, shuffled, device, generator,
                                views=views if purpose != "probe" else "plain", **shard)
        return Split(name, "train" if train else "test", loader, image_set.labels, image_set.num_classes,
                     tuple(image_set.images.shape[1:]), image_set.mean, image_set.std,
                     "augmented" if shuffled else "full", image_set)
    # image folders need torchvision: imported here, so that in-memory runs start without it
    from . import gpu_decode, imagenet
    if views == "rotations":
        raise DatasetError("SSKD's rotated views are implemented for the in-memory data sets ("
                           + ", ".join(n for n in NAMES if REGISTRY[n].in_memory) + ")")
    if decode not in ("cpu", "gpu"):
        raise DatasetError(f"--decode {decode}: choose from cpu, gpu")
    decoder = None
    if decode == "gpu":
        scale = (0.08, 1.0) if purpose == "probe" else (0.2, 1.0)
        transform = gpu_decode.CropDraw(image_size, scale, train=purpose != "eval")
        if purpose == "train" and views == "pair":
            if aug not in imagenet.AUGMENTATIONS:
                raise DatasetError(f"unknown augmentation '{aug}'; choose from {', '.join(imagenet.AUGMENTATIONS)}")
            draws = {kind: gpu_decode.CropDraw(image_size, scale, strong=kind == "strong") for kind in ("weak", "strong")}
            teacher_kind, student_kind = aug.split("_")
            transform = gpu_decode.PairDraw(draws[teacher_kind], draws[student_kind], single_aug)
        decoder = gpu_decode.BatchDecoder(image_size, spec.mean, spec.std)
    elif purpose == "train":
        transform = (imagenet.simreg_views(aug, single_aug, image_size) if views == "pair"
                     else imagenet.weak_transform(image_size, spec.mean, spec.std))
    elif purpose == "probe":
        transform = imagenet.linear_train_transform(image_size, spec.mean, spec.std)
    else:
        transform = imagenet.eval_transform(image_size, spec.mean, spec.std)
    folder = imagenet.build_imagefolder(root, "train" if train else "val", transform, spec.class_subset,
                                        encoded=decoder is not None, name=name)
    loader = imagenet.FolderLoader(folder, batch_size, shuffled, device, generator, workers,
                                   drop_last=purpose == "train", decoder=decoder, **shard)
    crop = "augmented" if shuffled else f"resize{round(image_size * 256 / 224)}_center{image_size}"
    return Split(name, "train" if train else "val", loader, torch.tensor(folder.targets), len(folder.classes),
                 (3, image_size, image_size), spec.mean, spec.std, crop, folder)


__all__ = ["NAMES", "REGISTRY", "DatasetEntry", "DatasetError", "DatasetNotFoundError", "ImageSet", "InMemoryLoader",
           "Split", "build", "data_root_help", "entry", "in_memory", "load_image_sets"]
