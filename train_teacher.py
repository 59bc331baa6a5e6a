"""Train a teacher (plain cross-entropy) with the RepDistiller / SSKD teacher recipe:
240 epochs, batch 64, SGD lr 0.05 (0.01 for MobileNetV2 / ShuffleV1 / ShuffleV2), momentum 0.9,
weight decay 5e-4, lr x0.1 after epochs 150, 180 and 210."""
import argparse
import os

import torch
import torch.nn.functional as F

import models
from datasets import InMemoryLoader, build_image_sets
from datasets.cifar100 import DatasetNotFoundError
from engine.checkpoint import CheckpointError
from engine import distributed
from engine.fit import Trainer
from engine.logging import ExistingRunError, RunRecord
from engine.loops import NonFiniteLossError
from engine.runtime import (add_data_args, add_run_args, exit_on_user_error, per_process_batch, pick_device,
                            seed_everything)
from engine.schedule import make_schedule, parse_milestones


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p)
    p.add_argument("--arch", "--model", dest="arch", default="resnet32x4", help="model registry name")
    p.add_argument("--epochs", type=int, default=240)
    p.add_argument("--batch-size", type=int, default=64, help="global batch (split over torchrun processes)")
    p.add_argument("--lr", type=float, default=None, help="default 0.05, or 0.01 for MobileNetV2/ShuffleV1/ShuffleV2")
    p.add_argument("--lr-decay-epochs", default="150,180,210")
    p.add_argument("--lr-decay-rate", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--eval-batch-size", type=int, default=256)
    add_run_args(p, default_save_dir="./save/teachers")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = models.default_lr(args.arch)
    if args.name is None:
        args.name = f"{args.arch}_{args.dataset}_lr_{args.lr}_decay_{args.weight_decay}_trial_{args.trial}"
    return args


@exit_on_user_error(DatasetNotFoundError, models.UnknownModelError, CheckpointError, ExistingRunError,
                    NonFiniteLossError)
def main(argv=None):
    args = parse_args(argv)
    # everything that can fail on bad input is checked before the experiment folder is touched
    info, device = distributed.init(pick_device(args.device))
    try:
        return train(args, info, device)
    finally:
        distributed.cleanup()


def train(args, info, device):
    record = RunRecord(os.path.join(args.save_dir, args.name), resume=args.resume, is_main=info.is_main)
    distributed.barrier()   # every process has checked the folder before the first one writes to it
    batch_size = per_process_batch(args.batch_size, info.world_size)
    train_set, test_set = build_image_sets(args.dataset, args.data_root, args.download)
    seed_everything(args.seed)
    model = models.create(args.arch, train_set.num_classes).to(device)
    net = distributed.wrap(model, info, device, args.sync_bn, args.data_parallel)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    lr_at, schedule = make_schedule("step", args.lr, parse_milestones(args.lr_decay_epochs),
                                    args.lr_decay_rate)
    generator = torch.Generator().manual_seed(args.seed)
    shard = {"rank": info.rank, "world_size": info.world_size}
    train_loader = InMemoryLoader(train_set, batch_size, train=True, device=device, generator=generator, **shard)
    test_loader = InMemoryLoader(test_set, args.eval_batch_size, train=False, device=device, **shard)

    def step(batch):
        logits = net(batch["image"])
        return {"ce": F.cross_entropy(logits, batch["label"])}, logits

    meta = {"arch": args.arch, "num_classes": train_set.num_classes, "dataset": args.dataset}
    trainer = Trainer(record, model, optimizer, lr_at, args.epochs, step, train_loader, test_loader,
                      meta, schedule, save_every=args.save_every, amp=args.amp,
                      show_progress=not args.no_progress and info.is_main)
    if args.resume:
        trainer.resume()
    record.open(args, args.seed)
    record.log(f"teacher {args.arch} on {args.dataset} ({len(train_set)} train / {len(test_set)} test "
               f"images) on {device} x {info.world_size} process(es); writing to {record.folder}")
    try:
        summary = trainer.run()
    finally:
        record.close()
    record.log(f"done: last top-1 {summary['last']['top1']:.2f}, best top-1 {summary['best']['top1']:.2f} "
               f"(epoch {summary['best']['epoch']}); run folder {record.folder}")
    return summary


if __name__ == "__main__":
    main()
