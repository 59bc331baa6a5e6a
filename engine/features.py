"""Backbone features for evaluation and caching: the evaluation data sets (centre crops for
ImageNet, un-augmented images for the in-memory sets), loading a model to evaluate from any
supported checkpoint, and batched feature extraction."""
import os

import torch

import models
from datasets import InMemoryLoader, build_image_sets
from datasets import imagenet as imagenet_data
from datasets.features import dataset_identity, image_set_identity
from engine.checkpoint import CheckpointError, load_file, load_state_dict_strict
from models.weights import (_CLASSIFIER_BIASES, infer_cifar_arch, load_cifar_checkpoint, load_imagenet_teacher,
                            unwrap_state_dict)

FOLDER_DATASETS = ("imagenet", "imagenet100")


def add_backbone_args(parser):
    """The checkpoint and data flags shared by eval_knn.py and eval_linear.py."""
    from models.weights import TEACHER_FORMATS
    parser.add_argument("--checkpoint", "--weights", dest="checkpoint", required=True)
    parser.add_argument("--arch", default=None, help="only for checkpoints that do not record it")
    parser.add_argument("--format", default="auto", choices=["auto", *TEACHER_FORMATS])
    parser.add_argument("--dataset", default="imagenet", choices=("cifar100", "digits") + FOLDER_DATASETS)
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")


class EvalSplit:
    """One split for evaluation: loader (no augmentation), labels, identity, row names, crop."""

    def __init__(self, loader, labels, identity, names, crop):
        self.loader, self.labels, self.identity, self.names, self.crop = loader, labels, identity, names, crop

    def __len__(self):
        return len(self.labels)


def eval_splits(dataset, data_root, device, batch_size=256, image_size=224, workers=8, norm=None, rank=0,
                world_size=1):
    """(train, test) EvalSplits. `norm` = (mean, std) for folder data sets (None: raw pixels)."""
    shard = {"rank": rank, "world_size": world_size}
    if dataset in FOLDER_DATASETS:
        mean, std = norm if norm is not None else (None, None)
        tf = imagenet_data.eval_transform(image_size, mean, std)
        out = []
        for split in ("train", "val"):
            ds = imagenet_data.build_imagefolder(data_root, split, tf, dataset)
            loader = imagenet_data.FolderLoader(ds, batch_size, False, device, None, workers, **shard)
            names = ds.file_names()
            out.append(EvalSplit(loader, torch.tensor(ds.targets), dataset_identity(dataset, split, names), names,
                                 f"resize{round(image_size * 256 / 224)}_center{image_size}"))
        return out
    train, test = build_image_sets(dataset, data_root)
    out = []
    for split, image_set in (("train", train), ("test", test)):
        identity, names = image_set_identity(image_set, split)
        out.append(EvalSplit(InMemoryLoader(image_set, batch_size, False, device, **shard), image_set.labels,
                             identity, names, "full"))
    return out


def load_backbone(path, arch=None, fmt="auto", dataset="imagenet"):
    """(model, description) of a checkpoint to evaluate or cache: ours (SimReg student, CIFAR
    student or teacher), for the in-memory data sets any CIFAR checkpoint layout, a reference SimReg
    checkpoint, or a published self-supervised teacher file."""
    obj = load_file(path)
    if isinstance(obj, dict) and "model" in obj and "arch" in obj and fmt in ("auto", "ours"):
        net = models.create(obj["arch"], obj.get("num_classes", 100))
        load_state_dict_strict(net, obj["model"], what=obj["arch"])
        return net, {"arch": obj["arch"], "format": "ours", "epoch": obj.get("epoch")}
    if dataset not in FOLDER_DATASETS:   # RepDistiller / SSKD / mdistiller CIFAR checkpoints
        arch_found, num_classes = (arch, None) if arch else infer_cifar_arch(unwrap_state_dict(obj))
        if arch_found is None:
            raise CheckpointError(f"{path}: cannot tell the architecture from its keys: pass --arch")
        sd = unwrap_state_dict(obj)
        num_classes = num_classes or next(v.shape[0] for k, v in sd.items() if k.endswith(_CLASSIFIER_BIASES))
        net = models.create(arch_found, num_classes)
        load_cifar_checkpoint(net, path)
        return net, {"arch": arch_found, "format": "ours", "epoch": obj.get("epoch") if isinstance(obj, dict) else None}
    net, spec = load_imagenet_teacher(path, fmt, arch)
    return net, {"arch": spec.arch or arch, "format": spec.name, "epoch": obj.get("epoch") if isinstance(obj, dict) else None}


@torch.no_grad()
def pooled_features(net, images, amp=False):
    """The pooled feature (last tap) of a batch, in float32."""
    from engine.loops import autocast
    with autocast(images.device, amp):
        feats, _ = net(images, is_feat=True)
    return feats[-1].flatten(1).float()


def extract(net, loader, amp=False):
    """Yields (dataset indices, pooled features) batch by batch; the model in eval mode."""
    net.eval()
    for batch in loader:
        yield batch["index"], pooled_features(net, batch["image"], amp)


def run_folder_of(checkpoint):
    """The experiment folder of a checkpoint written by this project (<run>/ckpt/*.pth), or None."""
    ckpt_dir = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(ckpt_dir) == "ckpt" and os.path.isfile(os.path.join(os.path.dirname(ckpt_dir), "args.json")):
        return os.path.dirname(ckpt_dir)
    return None
