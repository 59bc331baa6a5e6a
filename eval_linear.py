"""Linear evaluation of a frozen backbone (SimReg's protocol): head = L2-normalise -> fixed
full-dataset BatchNorm (mean and unbiased variance of the normalised centre-crop train features,
eps 1e-5) -> Linear; SGD lr 0.01, momentum 0.9, wd 1e-4, 40 epochs, lr x0.1 after epochs 15 and 30.
By default each step sees freshly augmented images through the backbone; `--use-cache` trains on
cached centre-crop features instead (much faster), in a cache keyed to the evaluated checkpoint's
contents, so another checkpoint can never reuse it."""
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import process_clock
from core.checkpoint import save_atomic
from core.cli import add_compile_arg, add_precision_args, exit_on_user_error, pick_device, seed_everything
from core.compile import compile_step, mark_step_begin, resolve_mode
from core.errors import UserError
from core.optim import sgd
from core.schedule import set_lr, step_lr
from core.validate import (Parser, int_list, momentum, non_negative_float, non_negative_int, positive_float, positive_int,
                           writable_folder)
from datasets.feature_cache import CacheMismatchError, FeatureCache, FeatureWriter
from engine.evaluation import (ResultPlace, add_backbone_args, backbone, cost, eval_split, extract, load_checkpoint,
                               pooled_features, run_folder_of)
from engine.loops import topk_correct, train_one_epoch


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_backbone_args(p)
    p.add_argument("--epochs", type=positive_int, default=40)
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--momentum", type=momentum, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="wd", type=non_negative_float, default=1e-4)
    p.add_argument("--lr-schedule", type=int_list, default="15,30", help="epochs after which the lr is multiplied by 0.1")
    p.add_argument("--use-cache", action="store_true", help="train on cached centre-crop features")
    p.add_argument("--eval-every", type=positive_int, default=10, help="evaluate every N epochs (and after the last)")
    p.add_argument("--save", default=None, help="output folder (default: <run>/linear for our checkpoints)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_precision_args(p)
    add_compile_arg(p)
    return p.parse_args(argv)


class FullBatchNorm(nn.Module):
    """Fixed normalisation (x - mean) / sqrt(var + 1e-5) with statistics of the whole train set."""

    def __init__(self, var, mean):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", (var + 1e-5).rsqrt())

    def forward(self, x):
        return (x - self.mean) * self.inv_std


class L2Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


def linear_head(var, mean, num_classes):
    """Keys '1.mean', '1.inv_std', '2.weight', '2.bias', as the reference's probe."""
    return nn.Sequential(L2Normalize(), FullBatchNorm(var, mean), nn.Linear(len(mean), num_classes))


def train_features(net, split, save, source, use_cache, amp="off"):
    """Normalised centre-crop train features -> (var, mean) and, with `use_cache`, the cache of
    those features (reused only if written for this dataset by this very checkpoint)."""
    prefix = os.path.join(save, f"train_feats_{source['checkpoint_sha256'][:16]}")
    if use_cache:
        try:
            cache = FeatureCache(prefix).check(split.identity, source)
            return torch.tensor(cache.meta["stats"]["var"]), torch.tensor(cache.meta["stats"]["mean"]), cache
        except CacheMismatchError:
            pass   # absent or stale: (re)compute
    writer, total, total_sq, n = None, None, None, 0
    for idx, feats in extract(net, split.loader, amp):
        feats = F.normalize(feats, dim=1).double().cpu()
        if total is None:
            total, total_sq = torch.zeros(feats.shape[1], dtype=torch.float64), torch.zeros(feats.shape[1], dtype=torch.float64)
            if use_cache:
                writer = FeatureWriter(prefix, split.identity, split.names, feats.shape[1], split.crop, source)
        total += feats.sum(0)
        total_sq += feats.pow(2).sum(0)
        n += len(feats)
        if writer:
            writer.write(idx, feats)
    mean = total / n
    var = (total_sq - n * mean ** 2) / (n - 1)   # unbiased, as torch.var_mean
    if writer:
        writer.meta["stats"] = {"mean": mean.tolist(), "var": var.tolist()}
        writer.close()
        return var.float(), mean.float(), FeatureCache(prefix)
    return var.float(), mean.float(), None


@exit_on_user_error
def main(argv=None):
    started = process_clock.run_started()
    args = parse_args(argv)
    seed_everything(args.seed)
    device = pick_device(args.device)
    loaded = load_checkpoint(args, args.checkpoint, args.arch, args.format)
    train, test = eval_split(args, "train", device), eval_split(args, "test", device)
    net = backbone(loaded, train.norm, device, args.channels_last)
    if args.use_cache and len(train) < args.batch_size:   # floor(N / B) batches per epoch, as the reference
        raise UserError(f"--use-cache with --batch-size {args.batch_size} trains 0 steps: the {args.dataset} train "
                        f"split has {len(train)} images; lower --batch-size")
    run = run_folder_of(args.checkpoint)
    save = writable_folder(args.save or os.path.join(run or os.path.dirname(os.path.abspath(args.checkpoint)),
                                                     "linear"), "--save")
    key = {"checkpoint_sha256": loaded.sha256, "dataset": args.dataset, "image_size": args.image_size,
           **{k: getattr(args, k) for k in ("epochs", "lr", "momentum", "wd", "lr_schedule", "use_cache",
                                            "batch_size", "seed")}}
    place = ResultPlace("linear", key, run, save, args.overwrite, beside=bool(loaded.dataset) and
                        loaded.dataset != args.dataset)
    if place.reusable:
        print(f"linear top-1 {place.reusable['last']['top1']:.2f} (best {place.reusable['best']['top1']:.2f}): "
              f"already evaluated with these settings in {place.main_summary} (--overwrite computes it again)")
        return place.reusable
    os.makedirs(save, exist_ok=True)
    source = {"kind": "backbone", "arch": loaded.arch, "format": loaded.format.name,
              "checkpoint_sha256": loaded.sha256}
    var, mean, cache = train_features(net, train, save, source, args.use_cache, args.amp)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    head = linear_head(var, mean, num_classes).to(device)
    features, head_loss = training_step_parts(net, head, args.amp, resolve_mode(args.compile, device))
    optimizer = sgd(head.parameters(), args.lr, args.momentum, args.wd, device)
    milestones = list(args.lr_schedule)
    generator = torch.Generator().manual_seed(args.seed)
    if cache is None:   # augmented images through the frozen backbone
        batches = eval_split(args, "train", device, purpose="probe", generator=generator).loader
    else:
        batches = CachedFeatureBatches(cache, train.labels.to(device), args.batch_size, generator)
    probe = LinearProbe(features, head_loss, from_images=cache is None)
    best = {"top1": -1.0}
    last = None
    log_lines = []
    for epoch in range(1, args.epochs + 1):
        lr = step_lr(args.lr, epoch, milestones)
        set_lr(optimizer, lr)
        head.train()
        stats, _ = train_one_epoch(probe, batches, optimizer, epoch, desc="linear", show_progress=not args.no_progress)
        line = f"epoch {epoch}/{args.epochs} lr {lr:.5g} | loss {stats['loss']:.4f}"
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            last = {**evaluate_head(net, head, test), "epoch": epoch}
            if last["top1"] > best["top1"]:
                best = dict(last)
            line += f" | * Acc@1 {last['top1']:.3f} Acc@5 {last['top5']:.3f}"
        print(line, flush=True)
        log_lines.append(line)
    with open(os.path.join(save, "log.txt"), "a") as f:
        f.write("\n".join(log_lines) + "\n")
    head_name = os.path.basename(place.path).replace("summary", "linear_head").replace(".json", ".pth")
    save_atomic({"state_dict": head.state_dict(), "epoch": args.epochs, "best": best, "last": last},
                os.path.join(save, head_name))
    result = {"last": last, "best": best, "dataset": args.dataset, "use_cache": args.use_cache,
              "checkpoint": os.path.abspath(args.checkpoint), "arch": loaded.arch, "epochs": args.epochs,
              **cost(started, device)}
    where = place.write(result)
    print(f"linear top-1 {last['top1']:.2f} (best {best['top1']:.2f}); {where}")
    return {**result, "key": key}


def training_step_parts(net, head, amp, compile_mode):
    """(images -> pooled features of the frozen backbone, (features, labels) -> the head's CE loss),
    each compiled when `compile_mode` is a torch.compile mode (the optimizer step stays eager)."""
    def features(images):
        return pooled_features(net, images, amp)

    def head_loss(feats, labels):
        return F.cross_entropy(head(feats), labels)

    if compile_mode is None:
        return features, head_loss
    return compile_step(features, compile_mode), compile_step(head_loss, compile_mode)


class CachedFeatureBatches:
    """Batches of cached train features: a fresh permutation per epoch and floor(N / B) batches, as
    the reference's cached probe."""

    def __init__(self, cache, labels, batch_size, generator):
        self.cache, self.labels, self.batch_size, self.generator = cache, labels, batch_size, generator

    def __len__(self):
        return len(self.labels) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.labels), generator=self.generator)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size].to(self.labels.device)
            yield {"image": self.cache.lookup(idx), "label": self.labels[idx]}


class LinearProbe:
    """The probe's training step in the shape engine.loops.train_one_epoch runs: (batch, epoch) ->
    ({'ce': loss}, None); batches hold images (through the frozen backbone) or cached features."""

    def __init__(self, features, head_loss, from_images):
        self.features, self.head_loss, self.from_images = features, head_loss, from_images

    def __call__(self, batch, epoch):
        mark_step_begin(batch["image"].device)
        inputs = self.features(batch["image"]) if self.from_images else batch["image"]
        return {"ce": self.head_loss(inputs, batch["label"])}, None

    def sync_gradients(self):
        pass   # one process: nothing to average


@torch.no_grad()
def evaluate_head(net, head, split):
    head.eval()
    c1 = c5 = n = 0
    for idx, feats in extract(net, split.loader):
        labels = split.labels[idx.cpu()].to(feats.device)
        a, b = topk_correct(head(feats), labels)
        c1, c5, n = c1 + a.item(), c5 + b.item(), n + len(labels)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}


if __name__ == "__main__":
    main()
