"""What every distillation method shares: the output container, the context a method is built
from, the CE + KD terms, the init-phase description, and the method base class.

A method is an nn.Module that owns its adaptors and returns a dict of named, already-weighted loss
terms; the training loop sums the dict and never branches on a method's name. A method declares
what it needs: `preact` (feature taps before the last ReLU), `views` ('plain' images or SSKD's
'rotations'), and optionally an init phase that the loop runs before the main schedule.
"""
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Outputs:
    """A network's outputs for one batch: the tap list of `forward(x, is_feat=True)` and the logits."""
    feats: list
    logits: torch.Tensor


@dataclass
class Context:
    """Everything a method may need at construction time. Tap shapes come from a probe forward
    pass (batch of 2, both networks in eval mode), as in the reference."""
    s_shapes: list
    t_shapes: list
    s_shapes_pre: list
    t_shapes_pre: list
    student_arch: str
    teacher_arch: str
    num_classes: int
    n_data: int = 0
    train_labels: Optional[torch.Tensor] = None
    hp: dict = field(default_factory=dict)

    def get(self, key, default):
        value = self.hp.get(key)
        return default if value is None else value


@dataclass
class Weights:
    ce: float   # gamma, -r
    kd: float   # alpha, -a
    distill: float  # beta, -b


@dataclass
class InitPhase:
    """A pre-training stage run before the main schedule (AB, FT, FSP; SSKD's teacher head).
    `loss(s, t, batch)` returns a dict of terms; `s` is None when the student is not run.
    `student_train_modules` are put in train mode after the student is put in eval mode (the
    reference's behaviour); `aux_modules` are put in train mode."""
    name: str
    epochs: int
    lr_at: Callable[[int], float]
    parameters: List[torch.nn.Parameter]
    loss: Callable
    run_student: bool = True
    student_train_modules: List[nn.Module] = field(default_factory=list)
    aux_modules: List[nn.Module] = field(default_factory=list)
    views: str = "plain"
    evaluate: Optional[Callable] = None   # (teacher, test_loader) -> dict of metrics, logged per epoch
    on_end: Optional[Callable] = None


def kd_loss(logits_s, logits_t, T):
    """Hinton KD as RepDistiller's DistillKL: T^2 * KL(p_t || p_s) summed over the batch / B."""
    log_p_s = F.log_softmax(logits_s / T, dim=1)
    p_t = F.softmax(logits_t / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (T ** 2) / logits_s.shape[0]


def pool_to_smaller(f_s, f_t):
    """Adaptive-average-pool the spatially larger of two maps to the smaller one's (square) size."""
    h_s, h_t = f_s.shape[2], f_t.shape[2]
    if h_s > h_t:
        f_s = F.adaptive_avg_pool2d(f_s, (h_t, h_t))
    elif h_s < h_t:
        f_t = F.adaptive_avg_pool2d(f_t, (h_s, h_s))
    return f_s, f_t


class MethodError(ValueError):
    """A method that cannot be built for the given architectures or arguments."""


class Method(nn.Module):
    name = None
    preact = False
    views = "plain"
    # RepDistiller's README / scripts command line: gamma (CE), alpha (KD), beta (method)
    standard_weights = Weights(ce=1.0, kd=0.0, distill=0.0)
    distills_in_main_phase = True
    trains_classifier = True   # the student's logits are scored on the test set every epoch

    def __init__(self, ctx, weights):
        super().__init__()
        self.w = weights
        self.kd_T = ctx.get("kd_T", 4.0)

    def distill_loss(self, s, t, batch):
        """The method's own loss L, unweighted (the value the reference returns)."""
        raise NotImplementedError

    def forward(self, s, t, batch):
        terms = {}
        if self.w.ce:
            terms["ce"] = self.w.ce * F.cross_entropy(s.logits, batch["label"])
        if self.w.kd:
            terms["kd"] = self.w.kd * kd_loss(s.logits, t.logits, self.kd_T)
        if self.w.distill and self.distills_in_main_phase:
            terms[self.name] = self.w.distill * self.distill_loss(s, t, batch)
        return terms

    def init_phase(self, student, ctx):
        return None

    def accuracy_logits(self, s):
        """Logits aligned with batch['label'] (SSKD classifies only the upright views)."""
        return s.logits
