"""Teacher features of a data set to disk, for SimReg without a teacher network
(`train_student.py --method simreg --teacher-feats PREFIX`). Writes PREFIX.npy (float16,
memory-mapped; row i = sample i of the data set in ImageFolder order) and PREFIX.json (the index:
file name of every row, which crop, the data set's identity and the teacher's file hash). Images
are centre crops (Resize 256 + CenterCrop 224, as CompRess caches) presented to the teacher in its
own input normalisation; in-memory data sets use their un-augmented images. Runs under torchrun
too: each process writes its share of the rows."""
import argparse
import os

from tqdm import tqdm

from core import distributed, process_clock
from core.cli import add_precision_args, exit_on_user_error, run_in_process_group
from core.jsonio import read_json
from core.validate import Parser, writable_prefix
from datasets.feature_cache import CacheMismatchError, FeatureCache, FeatureWriter, paths
from engine.evaluation import add_backbone_args, backbone, cost, eval_split, extract, load_checkpoint


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_backbone_args(p, ("--teacher",), "--teacher-arch", "--teacher-format")
    p.add_argument("--split", default="train", choices=["train", "val"])
    p.add_argument("--out", required=True, help="output prefix: writes OUT.npy and OUT.json")
    add_precision_args(p)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    started = process_clock.run_started()
    return run_in_process_group(cache, parse_args(argv), started)


def cache(args, info, device, started):
    loaded = load_checkpoint(args, args.teacher, args.teacher_arch, args.teacher_format, evaluated=False)
    split = eval_split(args, args.split, device, rank=info.rank, world_size=info.world_size)
    net = backbone(loaded, split.norm, device, args.channels_last)
    dim = loaded.model.feat_dim
    source = {"kind": "teacher", "path": loaded.path, "sha256": loaded.sha256, "format": loaded.format.name,
              "arch": loaded.arch}
    npy, meta = paths(writable_prefix(args.out, "--out"))
    if os.path.isfile(meta) and not args.overwrite:   # a complete cache is already there
        try:
            FeatureCache(args.out).check(split.identity, {**source, "path": read_json(meta)["source"].get("path")})
        except CacheMismatchError as e:
            raise CacheMismatchError(f"{e}. Refusing to overwrite it: pass --overwrite, or choose another --out") from None
        if info.is_main:
            print(f"{args.out}: already holds these features (same teacher file, same data); nothing to do")
        return args.out
    writer = None
    if info.is_main:
        writer = FeatureWriter(args.out, split.identity, split.names, dim, split.crop, source)
    distributed.barrier()
    if not info.is_main:
        writer = FeatureWriter(args.out, split.identity, split.names, dim, split.crop, source, create=False)
    try:
        for idx, feats in tqdm(extract(net, split.loader, args.amp), total=len(split.loader), desc="features",
                               disable=args.no_progress or not info.is_main):
            writer.write(idx, feats)
    except BaseException:
        writer.abort()
        raise
    writer.close(cost(started, device, info.world_size))
    if info.is_main:
        print(f"{len(split)} x {dim} teacher features ({loaded.arch}, {loaded.format.name}) of "
              f"{args.dataset}/{args.split} written to {args.out}.npy / {args.out}.json")
    return args.out


if __name__ == "__main__":
    main()
