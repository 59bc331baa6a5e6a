"""ImageNet (and ImageNet-100) as torchvision ImageFolders `<root>/train` and `<root>/val`, with
SimReg's augmentations and view pairing and a loader of dict batches."""
import math
import os
import random

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from .epochs import ResumableEpochs
from .errors import DatasetError, DatasetNotFoundError
from .gpu_decode import Encoded
from .imagenet_constants import AUGMENTATIONS, IMAGENET_MEAN, IMAGENET_STD


def split_folder(root, split):
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise DatasetNotFoundError(
            f"ImageNet folder incomplete: expected the ImageFolder '{path}' (--data-root must hold "
            f"'train/' and 'val/', one sub-folder per class)")
    return path


class Unreadable:
    """What a worker returns for an image it cannot decode: the main process raises one
    DatasetError naming the file (an exception raised in a worker would arrive wrapped in the
    worker's traceback)."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason


def sample_seed(epoch_seed, index):
    """The seed of one sample's augmentation in one epoch: a function of the epoch's seed and the
    sample's index only, so the augmentation does not depend on the worker that loads it, and a
    run that resumes mid-epoch draws the same crops."""
    return (epoch_seed * 1_000_003 + index * 2_654_435_761) % (2 ** 63)


class IndexedImageFolder(tv_datasets.ImageFolder):
    """ImageFolder whose items are (views, label, index); `views` is what the transform returns.
    A key (index, epoch_seed) draws the sample's augmentation from its own seed (`sample_seed`);
    the process's random generators are left as they were. With `encoded` (--decode gpu) an image
    is not decoded: the item is an `Encoded` (its JPEG bytes and what the transform, a
    gpu_decode.CropDraw, drew from the image's header)."""

    def __init__(self, root, transform=None, encoded=False):
        try:
            super().__init__(root, transform=transform)
        except FileNotFoundError as e:   # a class folder without images
            raise DatasetError(f"{root}: {str(e).splitlines()[0]}") from None
        self.encoded = encoded

    def _open(self, path):
        if not self.encoded:
            img = self.loader(path)
            img.load()
            return img
        img = Image.open(path)   # the header only
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            with open(path, "rb") as f:
                data = f.read()
            img.close()
            return img, torch.frombuffer(bytearray(data), dtype=torch.uint8)
        rgb = img.convert("RGB")   # PNG / CMYK files: decoded here
        return rgb, torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()

    def _views(self, path, opened):
        if not self.encoded:
            return self.transform(opened)
        img, payload = opened
        return Encoded(path, payload, self.transform(img))

    def __getitem__(self, key):
        index, epoch_seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[index]
        try:
            opened = self._open(path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return Unreadable(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"), label, index
        if epoch_seed is None:
            return self._views(path, opened), label, index
        torch_state, python_state = torch.get_rng_state(), random.getstate()
        seed = sample_seed(epoch_seed, index)
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            return self._views(path, opened), label, index
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(python_state)

    def file_names(self):
        return [os.path.relpath(p, self.root) for p, _ in self.samples]


def keep_classes(dataset, original_indices, name="ImageNet-100"):
    """Restrict an ImageFolder to the classes at `original_indices` (of its sorted classes),
    relabelled 0..k-1 in that order; samples, targets, imgs, classes and class_to_idx stay consistent."""
    if len(dataset.classes) <= max(original_indices):
        raise DatasetNotFoundError(
            f"{dataset.root} has {len(dataset.classes)} classes; {name} selects classes by index up to "
            f"{max(original_indices)} among its sorted class folders (the full data set's)")
    new_label = {old: new for new, old in enumerate(original_indices)}
    dataset.samples = [(p, new_label[y]) for p, y in dataset.samples if y in new_label]
    dataset.imgs = dataset.samples
    dataset.targets = [y for _, y in dataset.samples]
    dataset.classes = [dataset.classes[i] for i in original_indices]
    dataset.class_to_idx = {c: i for i, c in enumerate(dataset.classes)}
    return dataset


def build_imagefolder(root, split, transform, class_subset=None, encoded=False, name="imagenet"):
    """The ImageFolder <root>/<split>, restricted to `class_subset` (indices among its sorted classes) if given."""
    ds = IndexedImageFolder(split_folder(root, split), transform=transform, encoded=encoded)
    if class_subset is not None:
        keep_classes(ds, class_subset, name)
    return ds


# ------------------------------------------------------------------------------ transforms
class PILGaussianBlur:
    """MoCo-v2 / SimReg blur: PIL GaussianBlur with radius ~ U(0.1, 2.0)."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def weak_transform(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return T.Compose([T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(mean, std)])


def strong_transform(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return T.Compose([T.RandomResizedCrop(size, scale=(0.2, 1.0)),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                      T.RandomApply([PILGaussianBlur()], p=0.5), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(mean, std)])


def eval_transform(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize(256) + CenterCrop(224), scaled with `size`."""
    norm = [T.Normalize(mean, std)] if mean is not None else []
    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), *norm])


def linear_train_transform(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The linear probe's training augmentation: RandomResizedCrop (default scale) + flip."""
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


class ViewPair:
    """SimReg's pairing: the student view always comes from the second pipeline; with `single` the
    same tensor is the teacher's view (returned as None), otherwise the teacher's comes from the
    first pipeline."""

    def __init__(self, teacher_pipeline, student_pipeline, single):
        self.teacher, self.student, self.single = teacher_pipeline, student_pipeline, single

    def __call__(self, img):
        student = self.student(img)
        return student, (None if self.single else self.teacher(img))


def simreg_views(aug, single, size=224):
    """aug names the (teacher, student) pipelines: 'weak_strong' = weak teacher, strong student
    (the reference's --weak_strong); 'weak_weak' + single is the paper default."""
    if aug not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation '{aug}'; choose from {', '.join(AUGMENTATIONS)}")
    teacher_kind, student_kind = aug.split("_")
    build = {"weak": weak_transform, "strong": strong_transform}
    return ViewPair(build[teacher_kind](size), build[student_kind](size), single)


# ------------------------------------------------------------------------------ loader
def _collate(items):
    bad = next((v for v, _, _ in items if isinstance(v, Unreadable)), None)
    if bad is not None:
        return bad
    views, labels, index = zip(*items)
    if isinstance(views[0], Encoded):   # decoded on the device by the loader's decoder
        return (list(views), None), torch.tensor(labels), torch.tensor(index)
    if isinstance(views[0], tuple):   # (student view, teacher view or None)
        student = torch.stack([v[0] for v in views])
        teacher = None if views[0][1] is None else torch.stack([v[1] for v in views])
    else:
        student, teacher = torch.stack(views), None
    return (student, teacher), torch.tensor(labels), torch.tensor(index)


class _LoadBatch:
    """Runs in the workers: loads and collates the samples of one batch of keys."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, keys):
        return _collate([self.dataset[k] for k in keys])


class FolderLoader(ResumableEpochs):
    """Batches {'image', 'image_t' (teacher view, when different), 'label', 'index'} on `device`
    from an IndexedImageFolder, loaded by worker processes. For training, each epoch draws from
    `generator` a sample order and an epoch seed from which every sample's augmentation is seeded
    (`sample_seed`), so an epoch is a function of the generator's state alone: the checkpoint
    stores it, and a run resumes bit for bit, even mid-epoch (`resume_at`). Under torchrun every
    rank draws the same order and takes its strided share (training padded as DistributedSampler,
    evaluation not padded, so summed counts cover every sample once); training drops the last
    incomplete batch, as the reference. `decoder` (a gpu_decode.BatchDecoder, with an `encoded`
    dataset) turns the workers' JPEG bytes into the batch on `device`."""

    def __init__(self, dataset, batch_size, train, device="cpu", generator=None, workers=4, rank=0,
                 world_size=1, drop_last=None, decoder=None):
        self.dataset, self.train, self.device = dataset, train, torch.device(device)
        self.decoder = decoder
        self.batch_size, self.workers = batch_size, workers
        self.rank, self.world_size = rank, world_size
        self.drop_last = train if drop_last is None else drop_last
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self._init_epochs()

    def _keys(self):
        n = len(self.dataset)
        if not self.train:
            return list(range(n))[self.rank::self.world_size]
        order = torch.randperm(n, generator=self.generator).tolist()
        epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            order = (order + order[: per_rank * self.world_size - n])[self.rank::self.world_size]
        return [(i, epoch_seed) for i in order]

    def __len__(self):
        n = len(self.dataset)
        n = math.ceil(n / self.world_size) if self.train else len(range(self.rank, n, self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        skip = self._begin_epoch()
        keys = self._keys()
        if self.drop_last:
            keys = keys[: len(keys) // self.batch_size * self.batch_size]
        keys = keys[skip * self.batch_size:]
        if not keys:
            return
        # the loader's own base seed would come from the global generator: give it a private one
        loader = DataLoader(keys, batch_size=self.batch_size, num_workers=self.workers,
                            collate_fn=_LoadBatch(self.dataset),
                            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(0))
        for item in loader:
            if isinstance(item, Unreadable):
                raise DatasetError(f"cannot read image {item.path}: {item.reason}")
            (student, teacher), labels, index = item
            if self.decoder is not None:
                student, teacher = self.decoder.views(student, self.device)
            batch = {"image": student.to(self.device, non_blocking=True),
                     "label": labels.to(self.device), "index": index.to(self.device)}
            if teacher is not None:
                batch["image_t"] = teacher.to(self.device, non_blocking=True)
            yield batch
