"""Backbone features for evaluation and caching (eval_knn.py, eval_linear.py, cache_features.py):
the shared flags, the model to evaluate from any supported checkpoint (frozen, re-normalising its
input when it was trained with other constants than the data's), the un-augmented splits, and
batched extraction of pooled features."""
import hashlib
import json
import os
import time

import torch

import datasets
from core.cli import add_image_folder_args
from core.errors import UserError
from core.jsonio import merge_summary, read_json, write_json
from core.precision import autocast
from core.validate import positive_int
from models import weights

from .distill import FrozenNet


# the data set of a checkpoint that records none: the published self-supervised teachers' ImageNet
UNRECORDED_DATASET = "imagenet"


def add_backbone_args(parser, checkpoint_flags=("--checkpoint", "--weights"), arch_flag="--arch",
                      format_flag="--format"):
    """The checkpoint and data flags shared by the evaluation and caching scripts."""
    dest = checkpoint_flags[0].lstrip("-").replace("-", "_")
    parser.add_argument(*checkpoint_flags, dest=dest, required=True, help="checkpoint of any supported layout")
    parser.add_argument(arch_flag, dest=arch_flag.lstrip("-").replace("-", "_"), default=None,
                        help="only for checkpoints that neither record the architecture nor let it be recognised")
    parser.add_argument(format_flag, dest=format_flag.lstrip("-").replace("-", "_"), default="auto",
                        choices=["auto", *weights.FORMAT_NAMES], help="checkpoint layout (models/weights.py)")
    parser.add_argument("--dataset", default=None, choices=datasets.NAMES,
                        help="default: the data set the checkpoint records (this project's runs), else "
                             f"{UNRECORDED_DATASET} (published checkpoints record none)")
    parser.add_argument("--data-root", default="./data", help=datasets.data_root_help())
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing result or cache made with other settings (default: keep it)")
    parser.add_argument("--other-dataset", action="store_true",
                        help="evaluate on another data set than the checkpoint was trained on (the result is kept "
                             "beside the run's own)")
    add_image_folder_args(parser)


def cost(started, device, processes=1):
    """What an evaluation or caching cell cost, for the table's report: its whole wall time (from
    `started`, its process's start) on `processes` devices of `device`'s kind."""
    return {"wall_seconds": round(time.time() - started, 1), "processes": processes, "device": device.type}


def eval_split(args, split, device, purpose="eval", generator=None, rank=0, world_size=1):
    """One split of args.dataset, un-augmented (or with the linear probe's augmentation)."""
    return datasets.build(args.dataset, args.data_root, split, purpose, batch_size=args.batch_size, device=device,
                          generator=generator, rank=rank, world_size=world_size, image_size=args.image_size,
                          workers=args.workers, decode=args.decode)


def load_checkpoint(args, path, arch=None, fmt="auto", evaluated=True):
    """weights.Loaded of a checkpoint of any supported layout, read before the data: a --dataset
    left out becomes the data set the checkpoint records (else UNRECORDED_DATASET). An `evaluated`
    checkpoint recorded on another data set than --dataset needs --other-dataset; a teacher whose
    features are cached (not evaluated) serves any data set, as it does in training."""
    loaded = weights.load(path, arch, fmt)
    if args.dataset is None:
        args.dataset = loaded.dataset or UNRECORDED_DATASET
    if evaluated:
        check_dataset(loaded, args.dataset, args.other_dataset)
    return loaded


def backbone(loaded, data_norm, device, channels_last=False):
    """The loaded network as a frozen backbone on `device`, fed images normalised with `data_norm`."""
    net = FrozenNet(loaded.model, data_norm, loaded.input_norm).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


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


def check_dataset(loaded, dataset, allowed):
    """A checkpoint that records its data set is evaluated on that one, unless `allowed`."""
    if loaded.dataset and loaded.dataset != dataset and not allowed:
        raise UserError(f"{loaded.path} was trained on {loaded.dataset}, not on --dataset {dataset}; pass "
                        f"--other-dataset to evaluate it there anyway (the result is kept beside the run's own)")


class ResultPlace:
    """Where an evaluation result goes, and whether one already exists. A result is keyed by what
    it depends on (the checkpoint's SHA-256, the data set, the settings); the run's summary.json
    (or <save>/summary.json for a foreign checkpoint) holds one per tool. A stored result with the
    same key is reused; one with another key is never replaced silently: the new result is kept
    beside it in <save>/summary_<key hash>.json, unless `overwrite`."""

    def __init__(self, name, key, run, save, overwrite, beside=False):
        self.name, self.key, self.run, self.save, self.overwrite = name, key, run, save, overwrite
        self.main_summary = os.path.join(run, "summary.json") if run else os.path.join(save, "summary.json")
        stored = read_json(self.main_summary).get(name) if os.path.isfile(self.main_summary) else None
        self.stored = stored if isinstance(stored, dict) else None
        self.reusable = (self.stored if self.stored is not None and self.stored.get("key") == key
                         and not overwrite and not beside else None)
        taken = self.stored is not None and self.stored.get("key") != key
        self.beside = beside or (taken and not overwrite)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        self.path = os.path.join(save, f"summary_{digest}.json" if self.beside else "summary.json")

    def write(self, result):
        """Store `result` (a dict, given its key here); returns a sentence saying where."""
        record = {self.name: {**result, "key": self.key}}
        os.makedirs(self.save, exist_ok=True)
        write_json(self.path, record)
        if self.beside:
            return (f"results written to {self.path}; {self.main_summary} keeps its earlier {self.name} result "
                    f"(other checkpoint, data set or settings; --overwrite replaces it)")
        if self.run:
            merge_summary(self.run, record)
        return f"results written to {self.path}" + (f" and {self.main_summary}" if self.run else "")
