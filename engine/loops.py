"""The training epoch and the evaluation pass shared by every script. A training step is one call
of the Distiller, `distiller(batch, epoch) -> (terms, logits)`, where `terms` is a dict of named,
already-weighted loss tensors: the loop sums them, logs each, and never knows which method
produced them."""
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.distributed import all_reduce_sum
from core.errors import UserError
from core.precision import autocast


class NonFiniteLossError(UserError, FloatingPointError):
    pass


def topk_correct(logits, target, ks=(1, 5)):
    """Number of samples whose label is among the top-k predictions, for each k (as tensors)."""
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, :min(k, k_max)].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate(classify, loader, amp=False):
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of `classify(images) -> logits` over the
    whole loader (summed over processes when the loader is sharded); the caller sets eval mode."""
    correct1 = correct5 = loss_sum = 0.0
    n = 0
    for batch in loader:
        with autocast(batch["image"].device, amp):
            logits = classify(batch["image"]).float()
        c1, c5 = topk_correct(logits, batch["label"])
        correct1 += c1.item()
        correct5 += c5.item()
        loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
        n += len(batch["label"])
    correct1, correct5, loss_sum, n = all_reduce_sum([correct1, correct5, loss_sum, float(n)])
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n}


@dataclass
class EpochProgress:
    """How far an epoch got: steps done and the running sums of its logged terms (on the device),
    so that a paused epoch continues to the same epoch means."""
    step: int = 0
    sums: dict = field(default_factory=dict)
    count: int = 0
    correct1: Optional[torch.Tensor] = None


def train_one_epoch(distiller, loader, optimizer, epoch, scaler=None, check_every=20, desc="train",
                    show_progress=True, progress=None, pause=None):
    """One pass over `loader`, or the rest of one: `progress` is where a paused pass stopped (the
    loader must then start at that step). Loss terms are accumulated on the device and checked for
    NaN/inf every `check_every` steps (fewer host syncs); a non-finite loss raises
    NonFiniteLossError before the epoch's checkpoint is written, so nothing saved is affected.
    After each step `pause(step)` may ask to stop: the pass then returns (None, progress);
    otherwise it returns (epoch statistics, None)."""
    p = progress or EpochProgress()
    bar = tqdm(loader, desc=f"{desc} epoch {epoch}", leave=False, disable=not show_progress,
               dynamic_ncols=True, initial=p.step, total=len(loader))
    for it, batch in enumerate(bar, p.step + 1):
        terms, logits = distiller(batch, epoch)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            distiller.sync_gradients()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            distiller.sync_gradients()
            optimizer.step()
        bs = len(batch["label"])
        p.count += bs
        for name, value in terms.items():
            p.sums[name] = p.sums.get(name, 0.0) + value.detach().float() * bs
        if logits is not None:
            c1 = topk_correct(logits.detach(), batch["label"], ks=(1,))[0]
            p.correct1 = c1 if p.correct1 is None else p.correct1 + c1
        p.step = it
        if it % check_every == 0 or it == len(loader):
            means = {k: (v / p.count).item() for k, v in p.sums.items()}
            if not all(torch.isfinite(torch.tensor(list(means.values()) or [0.0]))):
                raise NonFiniteLossError(
                    f"non-finite loss in epoch {epoch} by step {it}: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in means.items())
                    + ". The run stops here; the last checkpoint is untouched.")
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
        if pause is not None and it < len(loader) and pause(it):
            bar.close()
            return None, p
    # epoch means over all processes
    names = sorted(p.sums)
    totals = all_reduce_sum([p.sums[k].item() for k in names] + [float(p.count)]
                            + [p.correct1.item() if p.correct1 is not None else 0.0])
    count = max(totals[len(names)], 1.0)
    stats = {k: totals[i] / count for i, k in enumerate(names)}
    stats["loss"] = sum(stats.values())
    if p.correct1 is not None:
        stats["train_top1"] = 100.0 * totals[-1] / count
    return stats, None
