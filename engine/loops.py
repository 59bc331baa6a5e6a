"""Training and evaluation loops shared by every script. A training step is a callable
`step(batch) -> (terms, logits)` where `terms` is a dict of named, already-weighted loss tensors;
the loop sums them, logs each, and never knows which method produced them."""
import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.distributed import all_reduce_sum


class NonFiniteLossError(FloatingPointError):
    pass


def autocast(device, enabled):
    """Mixed precision on CUDA (float16); a no-op elsewhere or when disabled."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def make_grad_scaler(device, enabled):
    enabled = enabled and torch.device(device).type == "cuda"
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def topk_correct(logits, target, ks=(1, 5)):
    """Number of samples whose label is among the top-k predictions, for each k (as tensors)."""
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, :min(k, k_max)].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate(model, loader, amp=False, forward=None):
    """Top-1 / top-5 accuracy (%) and mean cross-entropy over the whole loader (summed over
    processes when the loader is sharded)."""
    was_training = model.training
    model.eval()
    forward = forward or model
    correct1 = correct5 = loss_sum = 0.0
    n = 0
    for batch in loader:
        with autocast(batch["image"].device, amp):
            logits = forward(batch["image"]).float()
        c1, c5 = topk_correct(logits, batch["label"])
        correct1 += c1.item()
        correct5 += c5.item()
        loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
        n += len(batch["label"])
    model.train(was_training)
    correct1, correct5, loss_sum, n = all_reduce_sum([correct1, correct5, loss_sum, float(n)])
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n}


def train_one_epoch(step, loader, optimizer, epoch, amp=False, scaler=None, check_every=20,
                    desc="train", show_progress=True, before_step=None):
    """One pass over `loader`. Loss terms are accumulated on the device and checked for NaN/inf
    every `check_every` steps (fewer host syncs); a non-finite loss raises NonFiniteLossError
    before the epoch's checkpoint is written, so nothing saved is affected."""
    sums, count, correct1 = {}, 0, None
    device = None
    bar = tqdm(loader, desc=f"{desc} epoch {epoch}", leave=False, disable=not show_progress,
               dynamic_ncols=True)
    for it, batch in enumerate(bar, 1):
        device = batch["image"].device
        with autocast(device, amp):
            terms, logits = step(batch)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if before_step is not None:
                before_step()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
        bs = len(batch["label"])
        count += bs
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float() * bs
        if logits is not None:
            c1 = topk_correct(logits.detach(), batch["label"], ks=(1,))[0]
            correct1 = c1 if correct1 is None else correct1 + c1
        if it % check_every == 0 or it == len(loader):
            means = {k: (v / count).item() for k, v in sums.items()}
            if not all(torch.isfinite(torch.tensor(list(means.values()) or [0.0]))):
                raise NonFiniteLossError(
                    f"non-finite loss in epoch {epoch} by step {it}: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in means.items())
                    + ". The run stops here; the last checkpoint (previous epoch) is untouched.")
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
    # epoch means over all processes
    names = sorted(sums)
    totals = all_reduce_sum([sums[k].item() for k in names] + [float(count)]
                            + [correct1.item() if correct1 is not None else 0.0])
    count = max(totals[len(names)], 1.0)
    stats = {k: totals[i] / count for i, k in enumerate(names)}
    stats["loss"] = sum(stats.values())
    if correct1 is not None:
        stats["train_top1"] = 100.0 * totals[-1] / count
    return stats
