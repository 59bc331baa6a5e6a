"""Learning-rate schedules as pure functions of the 1-based epoch, set once at the start of each
epoch (as every reference does). A run's schedule is therefore fully described by a few numbers,
which the checkpoint stores."""
import math
from dataclasses import dataclass

from .errors import UserError


class ScheduleError(UserError, ValueError):
    pass


def step_lr(base_lr, epoch, milestones, gamma=0.1):
    """RepDistiller / SSKD: x gamma for every milestone m with epoch > m (so 150 -> from epoch 151)."""
    return base_lr * gamma ** sum(epoch > m for m in milestones)


def cosine_lr(base_lr, epoch, total_epochs):
    """SimReg: base * 1/2 (1 + cos(pi (epoch - 1) / total)), constant within an epoch."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / total_epochs))


@dataclass(frozen=True)
class Schedule:
    """`epochs` epochs at lr(epoch): 'step' (x gamma after each milestone), 'cosine' or 'constant'."""
    kind: str
    base_lr: float
    epochs: int
    milestones: tuple = ()
    gamma: float = 0.1

    def __post_init__(self):
        if self.kind not in ("step", "cosine", "constant"):
            raise ScheduleError(f"unknown schedule '{self.kind}'; choose step, cosine or constant")
        if not self.epochs >= 1:
            raise ScheduleError(f"--epochs {self.epochs}: must be at least 1")
        if not self.base_lr > 0:
            raise ScheduleError(f"--lr {self.base_lr}: must be greater than 0")
        if not self.gamma > 0:
            raise ScheduleError(f"--lr-decay-rate {self.gamma}: must be greater than 0")

    def lr(self, epoch):
        if self.kind == "step":
            return step_lr(self.base_lr, epoch, self.milestones, self.gamma)
        if self.kind == "cosine":
            return cosine_lr(self.base_lr, epoch, self.epochs)
        return self.base_lr

    def describe(self):
        """A plain dict for the checkpoint."""
        return {"kind": self.kind, "base_lr": self.base_lr, "milestones": list(self.milestones),
                "gamma": self.gamma, "total_epochs": self.epochs}


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def parse_milestones(text):
    """'150,180,210' -> [150, 180, 210]; '' -> []; a list or tuple is returned as a list."""
    if isinstance(text, (list, tuple)):
        return [int(x) for x in text]
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ScheduleError(f"milestones '{text}': expected comma-separated epoch numbers, e.g. 150,180,210") from None
    if any(v < 1 for v in values):
        raise ScheduleError(f"milestones '{text}': every epoch number must be at least 1")
    return values
