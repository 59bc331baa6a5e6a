"""Backbone features for evaluation and caching (eval_knn.py, eval_linear.py, cache_features.py):
the shared flags, the model to evaluate from any supported checkpoint (frozen, re-normalising its
input when it was trained with other constants than the data's), the un-augmented splits, and
batched extraction of pooled features."""
import os

import torch

import datasets
from core.precision import autocast
from models import weights

from .distill import FrozenNet


def add_backbone_args(parser, checkpoint_flags=("--checkpoint", "--weights"), arch_flag="--arch",
                      format_flag="--format"):
    """The checkpoint and data flags shared by the evaluation and caching scripts."""
    dest = checkpoint_flags[0].lstrip("-").replace("-", "_")
    parser.add_argument(*checkpoint_flags, dest=dest, required=True, help="checkpoint of any supported layout")
    parser.add_argument(arch_flag, dest=arch_flag.lstrip("-").replace("-", "_"), default=None,
                        help="only for checkpoints that neither record the architecture nor let it be recognised")
    parser.add_argument(format_flag, dest=format_flag.lstrip("-").replace("-", "_"), default="auto",
                        choices=["auto", *weights.FORMAT_NAMES], help="checkpoint layout (models/weights.py)")
    parser.add_argument("--dataset", default="imagenet", choices=datasets.NAMES)
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")


def eval_split(args, split, device, purpose="eval", generator=None, rank=0, world_size=1):
    """One split of args.dataset, un-augmented (or with the linear probe's augmentation)."""
    return datasets.build(args.dataset, args.data_root, split, purpose, batch_size=args.batch_size, device=device,
                          generator=generator, rank=rank, world_size=world_size, image_size=args.image_size,
                          workers=args.workers)


def load_backbone(path, data_norm, device, arch=None, fmt="auto"):
    """(frozen backbone on `device`, weights.Loaded) of a checkpoint of any supported layout."""
    loaded = weights.load(path, arch, fmt)
    return FrozenNet(loaded.model, data_norm, loaded.input_norm).to(device), loaded


@torch.no_grad()
def pooled_features(net, images, amp=False):
    """The pooled feature (last tap) of a batch, in float32."""
    with autocast(images.device, amp):
        feats, _ = net(images, is_feat=True)
    return feats[-1].flatten(1).float()


def extract(net, loader, amp=False):
    """Yields (dataset indices, pooled features) batch by batch."""
    for batch in loader:
        yield batch["index"], pooled_features(net, batch["image"], amp)


def run_folder_of(checkpoint):
    """The experiment folder of a checkpoint written by this project (<run>/ckpt/*.pth), or None."""
    ckpt_dir = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(ckpt_dir) == "ckpt" and os.path.isfile(os.path.join(os.path.dirname(ckpt_dir), "args.json")):
        return os.path.dirname(ckpt_dir)
    return None
