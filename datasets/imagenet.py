"""ImageNet (and ImageNet-100) as torchvision ImageFolders `<root>/train` and `<root>/val`, with
SimReg's augmentations and view pairing and a loader of dict batches."""
import os
import random

import torch
from PIL import ImageFilter
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from .errors import DatasetNotFoundError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# SimReg's ImageNet-100: original class indices (sorted-wnid order) picked by
# np.random.seed(1234); np.random.permutation(1000)[:100], sorted
IMAGENET100_INDICES = (
    21, 29, 40, 60, 78, 89, 99, 108, 112, 118, 122, 124, 128, 143, 155, 166, 175, 188, 192, 202, 206, 219,
    241, 266, 270, 287, 319, 339, 341, 347, 361, 363, 369, 382, 386, 406, 416, 428, 438, 443, 444, 466,
    467, 473, 477, 489, 495, 498, 501, 502, 516, 536, 555, 566, 569, 571, 585, 603, 620, 622, 624, 635,
    645, 672, 675, 681, 688, 705, 706, 709, 742, 756, 758, 764, 765, 768, 778, 782, 790, 793, 804, 833,
    835, 852, 860, 875, 878, 882, 887, 888, 895, 899, 929, 931, 938, 952, 958, 982, 983, 990)


def split_folder(root, split):
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise DatasetNotFoundError(
            f"ImageNet folder incomplete: expected the ImageFolder '{path}' (--data-root must hold "
            f"'train/' and 'val/', one sub-folder per class)")
    return path


class IndexedImageFolder(tv_datasets.ImageFolder):
    """ImageFolder whose items are (views, label, index); `views` is what the transform returns."""

    def __getitem__(self, index):
        path, label = self.samples[index]
        img = self.loader(path)
        return self.transform(img), label, index

    def file_names(self):
        return [os.path.relpath(p, self.root) for p, _ in self.samples]


def keep_classes(dataset, original_indices):
    """Restrict an ImageFolder to the classes at `original_indices` (of its sorted classes),
    relabelled 0..k-1 in that order; samples, targets, imgs, classes and class_to_idx stay consistent."""
    if len(dataset.classes) <= max(original_indices):
        raise DatasetNotFoundError(
            f"{dataset.root} has {len(dataset.classes)} classes; ImageNet-100 selects by index among the "
            f"1000 ImageNet classes")
    new_label = {old: new for new, old in enumerate(original_indices)}
    dataset.samples = [(p, new_label[y]) for p, y in dataset.samples if y in new_label]
    dataset.imgs = dataset.samples
    dataset.targets = [y for _, y in dataset.samples]
    dataset.classes = [dataset.classes[i] for i in original_indices]
    dataset.class_to_idx = {c: i for i, c in enumerate(dataset.classes)}
    return dataset


def build_imagefolder(root, split, transform, dataset="imagenet"):
    ds = IndexedImageFolder(split_folder(root, split), transform=transform)
    if dataset == "imagenet100":
        keep_classes(ds, IMAGENET100_INDICES)
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


AUGMENTATIONS = ("weak_weak", "weak_strong", "strong_strong")


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
    views, labels, index = zip(*items)
    if isinstance(views[0], tuple):   # (student view, teacher view or None)
        student = torch.stack([v[0] for v in views])
        teacher = None if views[0][1] is None else torch.stack([v[1] for v in views])
    else:
        student, teacher = torch.stack(views), None
    return (student, teacher), torch.tensor(labels), torch.tensor(index)


class FolderLoader:
    """Batches {'image', 'image_t' (teacher view, when different), 'label', 'index'} on `device`
    from an IndexedImageFolder: a seeded sampler (DistributedSampler under torchrun), worker
    processes, `drop_last` for training as the reference."""

    def __init__(self, dataset, batch_size, train, device="cpu", generator=None, workers=4, rank=0,
                 world_size=1, drop_last=None):
        self.dataset, self.train, self.device = dataset, train, torch.device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if world_size > 1:
            self.sampler = DistributedSampler(dataset, world_size, rank, shuffle=train,
                                              seed=int(torch.randint(0, 2 ** 31, (1,), generator=self.generator)),
                                              drop_last=False)
        elif train:
            self.sampler = RandomSampler(dataset, generator=self.generator)
        else:
            self.sampler = SequentialSampler(dataset)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 collate_fn=_collate, pin_memory=self.device.type == "cuda",
                                 drop_last=train if drop_last is None else drop_last,
                                 generator=self.generator, persistent_workers=False)

    def set_epoch(self, epoch):
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for (student, teacher), labels, index in self.loader:
            batch = {"image": student.to(self.device, non_blocking=True),
                     "label": labels.to(self.device), "index": index.to(self.device)}
            if teacher is not None:
                batch["image_t"] = teacher.to(self.device, non_blocking=True)
            yield batch
