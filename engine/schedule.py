"""Learning-rate schedules as pure functions of the 1-based epoch, set once at the start of each
epoch (as every reference does). A run's schedule is therefore fully described by its arguments,
which the checkpoint stores."""
import math


def step_lr(base_lr, epoch, milestones, gamma=0.1):
    """RepDistiller / SSKD: x gamma for every milestone m with epoch > m (so 150 -> from epoch 151)."""
    return base_lr * gamma ** sum(epoch > m for m in milestones)


def cosine_lr(base_lr, epoch, total_epochs):
    """SimReg: base * 1/2 (1 + cos(pi (epoch - 1) / total)), constant within an epoch."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / total_epochs))


def make_schedule(kind, base_lr, milestones=(), gamma=0.1, total_epochs=None):
    """epoch -> lr, plus a plain-dict description for the checkpoint."""
    if kind == "step":
        fn = lambda epoch: step_lr(base_lr, epoch, milestones, gamma)  # noqa: E731
    elif kind == "cosine":
        fn = lambda epoch: cosine_lr(base_lr, epoch, total_epochs)  # noqa: E731
    elif kind == "constant":
        fn = lambda epoch: base_lr  # noqa: E731
    else:
        raise ValueError(f"unknown schedule '{kind}'")
    description = {"kind": kind, "base_lr": base_lr, "milestones": list(milestones), "gamma": gamma,
                   "total_epochs": total_epochs}
    return fn, description


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def parse_milestones(text):
    """'150,180,210' -> [150, 180, 210]; '' -> []."""
    return [int(x) for x in str(text).split(",") if x.strip()]
