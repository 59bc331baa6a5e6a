"""Train a teacher (plain cross-entropy) with the RepDistiller / SSKD teacher recipe:
240 epochs, batch 64, SGD lr 0.05 (0.01 for MobileNetV2 / ShuffleV1 / ShuffleV2), momentum 0.9,
weight decay 5e-4, lr x0.1 after epochs 150, 180 and 210. The same loop as train_student.py,
through a distiller without a teacher whose method is plain cross-entropy."""
import argparse

import torch

import datasets
import losses
import models
from core import distributed, process_clock
from core.cli import (add_data_args, add_run_args, exit_on_user_error, per_process_batch, run_in_process_group,
                      seed_everything)
from core.compile import resolve_mode
from core.optim import sgd
from core.schedule import Schedule
from core.validate import (Parser, int_list, momentum, non_negative_float, positive_float, positive_int,
                           run_folder_path)
from engine.distill import build_distiller
from engine.run_folder import RunFolder
from engine.trainer import Trainer, restart_from_checkpoint

RECIPE = losses.CIFAR_RECIPE


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    names = [n for n in datasets.NAMES if datasets.in_memory(n)]
    add_data_args(p, names, datasets.data_root_help(names))
    p.add_argument("--arch", "--model", dest="arch", default="resnet32x4", help="model registry name")
    p.add_argument("--epochs", type=positive_int, default=RECIPE.epochs)
    p.add_argument("--batch-size", type=positive_int, default=RECIPE.batch_size,
                   help="global batch (split over torchrun processes)")
    p.add_argument("--lr", type=positive_float, default=None, help="default 0.05, or 0.01 for MobileNetV2/ShuffleV1/ShuffleV2")
    p.add_argument("--lr-decay-epochs", type=int_list, default=RECIPE.lr_decay_epochs)
    p.add_argument("--lr-decay-rate", type=positive_float, default=RECIPE.lr_decay_rate)
    p.add_argument("--momentum", type=momentum, default=RECIPE.momentum)
    p.add_argument("--weight-decay", type=non_negative_float, default=RECIPE.weight_decay)
    p.add_argument("--eval-batch-size", type=positive_int, default=256)
    add_run_args(p, default_save_dir="./save/teachers")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = models.default_lr(args.arch)
    if args.name is None:
        args.name = f"{args.arch}_{args.dataset}_lr_{args.lr}_decay_{args.weight_decay}_trial_{args.trial}"
    return args


@exit_on_user_error
def main(argv=None):
    started = process_clock.run_started()
    return run_in_process_group(train, parse_args(argv), started)


def train(args, info, device, started=None):
    # everything that can fail on bad input is checked before the experiment folder is written to
    folder = run_folder_path(args.save_dir, args.name)
    with RunFolder(folder, args, args.resume, info.is_main, args.save_every, not args.no_progress,
                   args.allow_changed_args) as run:
        distributed.barrier()   # every process has checked the folder before the first one writes to it
        shard = {"device": device, "rank": info.rank, "world_size": info.world_size}
        train_split = datasets.build(args.dataset, args.data_root, "train", "train", download=args.download,
                                     batch_size=per_process_batch(args.batch_size, info.world_size),
                                     generator=torch.Generator().manual_seed(args.seed), **shard)
        test_split = datasets.build(args.dataset, args.data_root, "test", "eval", batch_size=args.eval_batch_size,
                                    **shard)
        seed_everything(args.seed)
        distiller, _ = build_distiller("ce", args.arch, None, None, train_split.image_shape, train_split.num_classes,
                                       train_split.labels, device, amp=args.amp, channels_last=args.channels_last,
                                       compile_mode=resolve_mode(args.compile, device))
        distiller.parallelize(info, device, args.sync_bn, args.data_parallel)
        optimizer = sgd(distiller.trainable_parameters(), args.lr, args.momentum, args.weight_decay, device)
        schedule = Schedule("step", args.lr, args.epochs, tuple(args.lr_decay_epochs), args.lr_decay_rate)
        run.meta = {"arch": args.arch, "num_classes": train_split.num_classes, "dataset": args.dataset}
        trainer = Trainer(distiller, optimizer, (train_split.loader, test_split.loader), schedule, run,
                          args.ckpt_every_minutes, started)
        run.open(args, args.seed)
        restart_from_checkpoint(run, trainer)
        run.log(f"teacher {args.arch} on {args.dataset} ({len(train_split)} train / {len(test_split)} test "
                f"images) on {device} x {info.world_size} process(es); writing to {run.folder}")
        summary = trainer.fit()
        run.log(f"done: last top-1 {summary['last']['top1']:.2f}, best top-1 {summary['best']['top1']:.2f} "
                f"(epoch {summary['best']['epoch']}); run folder {run.folder}")
    return summary


if __name__ == "__main__":
    main()
