"""In-memory image datasets and their batch loader."""
import functools
import math
from dataclasses import dataclass

import torch

from . import augment
from .epochs import ResumableEpochs
from .registry import entry


@dataclass
class ImageSet:
    """All images of one split as a uint8 (N, C, H, W) tensor plus int64 labels."""
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple

    def __len__(self):
        return len(self.labels)


@functools.lru_cache(maxsize=4)
def load_image_sets(dataset, data_root=None, download=False):
    """(train, test) ImageSets of the in-memory data set `dataset` (its registry entry's loader),
    read once per process (the tensors are never modified, so every loader shares them)."""
    e = entry(dataset)
    if not e.in_memory:
        raise ValueError(f"{dataset} is an image folder, not an in-memory data set")
    train, test = e.load(data_root, download)
    mean, std = e.mean, e.std
    if mean is None:   # grey images: one constant per channel, from the train split
        gray = train[0].float() / 255.0
        mean, std = (gray.mean().item(),) * 3, (gray.std().item(),) * 3
    return (ImageSet(dataset, train[0], train[1], e.num_classes, mean, std),
            ImageSet(dataset, test[0], test[1], e.num_classes, mean, std))


class InMemoryLoader(ResumableEpochs):
    """Iterates an ImageSet in batches of dicts {'image', 'label', 'index'} on `device`.
    `views='rotations'` gives SSKD's 4 rotated views per image (4B images, B labels); 'pair'
    (SimReg) is one augmented view that student and teacher share, i.e. the same as 'plain'.

    At the start of every epoch one CPU torch.Generator draws the sample order and every sample's
    augmentation (crop offsets, flip), so a sample's augmentation depends only on the seed and the
    epoch, not on the batch size or the number of processes; the generator's state is saved in the
    checkpoint, so a resumed run sees the same batches. With `world_size > 1` every rank uses the
    same order and takes its strided share (training: padded like DistributedSampler; evaluation:
    not padded, so that summed counts cover every sample once)."""

    def __init__(self, image_set, batch_size, train, device="cpu", generator=None, pad=4,
                 drop_last=False, rank=0, world_size=1, views="plain"):
        if views not in ("plain", "rotations", "pair"):
            raise ValueError(f"unknown view kind '{views}'")
        self.set = image_set
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.pad = pad
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.views = views
        self.images = image_set.images.to(self.device)
        self.labels = image_set.labels.to(self.device)
        self._draws = None
        self._init_epochs()

    def _epoch_order(self):
        n = len(self.set)
        if not self.train:
            return torch.arange(n)[self.rank::self.world_size]
        order = torch.randperm(n, generator=self.generator)
        n_views = 4 if self.views == "rotations" else 1
        offsets, flips = augment.draw_crop_flip(n * n_views, self.pad, self.generator)
        self._draws = (offsets.view(n, n_views, 2), flips.view(n, n_views)[:, 0])
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - n]])  # pad as DistributedSampler
            order = order[self.rank::self.world_size]
        return order

    def __len__(self):
        n = math.ceil(len(self.set) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        skip = self._begin_epoch()
        order = self._epoch_order()
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.make_batch(idx)

    def make_batch(self, idx):
        dev_idx = idx.to(self.device)
        images = self.images[dev_idx]
        if self.views == "rotations":   # SSKD: 4 views per image, rows 4n + r
            flips, offsets = (self._draws[1][idx], self._draws[0][idx].reshape(-1, 2)) if self.train else (None, None)
            images = augment.rotation_views(images, flips, offsets, self.pad)
        elif self.train:
            images = augment.crop_flip(images, self._draws[0][idx, 0], self._draws[1][idx], self.pad)
        return {"image": augment.normalize(images, self.set.mean, self.set.std),
                "label": self.labels[dev_idx], "index": dev_idx}
