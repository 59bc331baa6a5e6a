"""Teacher features of a data set to disk, for SimReg without a teacher network
(`train_student.py --method simreg --teacher-feats PREFIX`). Writes PREFIX.npy (float16,
memory-mapped; row i = sample i of the data set in ImageFolder order) and PREFIX.json (the index:
file name of every row, which crop, the data set's identity and the teacher's file hash). Images
are centre crops (Resize 256 + CenterCrop 224, as CompRess caches) with the teacher's own input
normalisation; in-memory data sets use their un-augmented images. Runs under torchrun too: each
process writes its share of the rows."""
import argparse
import os

import torch

from datasets.cifar100 import DatasetNotFoundError
from datasets.features import FeatureWriter
from engine import distributed
from engine.checkpoint import CheckpointError, file_sha256
from engine.features import FOLDER_DATASETS, eval_splits, extract, load_backbone
from engine.runtime import exit_on_user_error, pick_device
from models import UnknownModelError
from models.weights import TEACHER_FORMATS
from tqdm import tqdm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher checkpoint (any format train_student.py accepts)")
    p.add_argument("--teacher-format", default="auto", choices=["auto", *TEACHER_FORMATS])
    p.add_argument("--teacher-arch", default=None, help="only when the checkpoint does not tell it")
    p.add_argument("--dataset", default="imagenet", choices=("cifar100", "digits") + FOLDER_DATASETS)
    p.add_argument("--data-root", default="./data")
    p.add_argument("--split", default="train", choices=["train", "val"])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--out", required=True, help="output prefix: writes OUT.npy and OUT.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@exit_on_user_error(CheckpointError, DatasetNotFoundError, UnknownModelError)
def main(argv=None):
    args = parse_args(argv)
    info, device = distributed.init(pick_device(args.device))
    try:
        return cache(args, info, device)
    finally:
        distributed.cleanup()


def cache(args, info, device):
    net, desc = load_backbone(args.teacher, args.teacher_arch, args.teacher_format, args.dataset)
    net = net.to(device).eval()
    spec = TEACHER_FORMATS[desc["format"]]
    splits = eval_splits(args.dataset, args.data_root, device, args.batch_size, args.image_size, args.workers,
                         norm=(spec.mean, spec.std), rank=info.rank, world_size=info.world_size)
    split = splits[0] if args.split == "train" else splits[1]
    with torch.no_grad():
        dim = net(torch.zeros(1, *next(iter(split.loader))["image"].shape[1:], device=device), is_feat=True)[0][-1].shape[1]
    source = {"kind": "teacher", "path": os.path.abspath(args.teacher), "sha256": file_sha256(args.teacher),
              "format": desc["format"], "arch": desc["arch"]}
    writer = None
    if info.is_main:
        writer = FeatureWriter(args.out, split.identity, split.names, dim, split.crop, source)
    distributed.barrier()
    if not info.is_main:
        writer = FeatureWriter(args.out, split.identity, split.names, dim, split.crop, source, create=False)
    for idx, feats in tqdm(extract(net, split.loader, args.amp), total=len(split.loader), desc="features",
                           disable=args.no_progress or not info.is_main):
        writer.write(idx, feats)
    writer.close()
    if info.is_main:
        print(f"{len(split)} x {dim} teacher features ({desc['arch']}, {desc['format']}) of "
              f"{args.dataset}/{args.split} written to {args.out}.npy / {args.out}.json")
    return args.out


if __name__ == "__main__":
    main()
