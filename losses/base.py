"""What every distillation method shares: the context a method is built from, its declared
hyper-parameters and recipe, the loss coefficients, the CE + KD terms, the init-phase description,
and the method base class.

A method is an nn.Module that owns its adaptors and returns a dict of named, already-weighted loss
terms for a batch and an epoch; the training loop sums the dict and never branches on a method's
name. A method declares what it needs: `preact` (feature taps before the last ReLU; for the
teacher `teacher_preact` where it differs, as ReviewKD's), `views`
('plain' images, SSKD's 'rotations', SimReg's 'pair'), its hyper-parameters with their defaults
(`hparams`, each once), its recipe where it differs from the CIFAR one, and optionally an init
phase that runs before the main schedule.
"""
import argparse
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import UserError
from core.schedule import Schedule, parse_milestones
from core.validate import fraction, momentum, non_negative_float, non_negative_int, positive_float, positive_int


class MethodError(UserError, ValueError):
    """A method that cannot be built for the given architectures or arguments."""


# the argparse type of a numeric hyper-parameter, by (kind, bounds): the scripts' own validators
NUMBER_TYPES = {("int", "non_negative"): non_negative_int, ("int", "positive"): positive_int,
                ("float", "non_negative"): non_negative_float, ("float", "positive"): positive_float,
                ("float", "fraction"): fraction, ("float", "momentum"): momentum}


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter of a method: its flag is `--<name with dashes>` (`kd_T` -> `--kd-T`),
    its value a `kind` ('int', 'float', 'str', 'flag' (store_true) or 'ints' (comma list)); a
    number's value must lie in `bounds` (NUMBER_TYPES: non_negative, positive, fraction, momentum)."""
    name: str
    default: Any
    help: str = ""
    kind: str = "float"
    choices: Optional[tuple] = None
    bounds: str = "non_negative"

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def parse(self, value):
        """The flag's argparse type: a bad value is one line naming the flag and the expected kind."""
        if self.kind in ("int", "float") and self.choices is None:
            return NUMBER_TYPES[(self.kind, self.bounds)](value)
        try:
            if self.kind == "ints":
                return tuple(parse_milestones(value))
            return {"int": int, "float": float, "str": str, "flag": bool}[self.kind](value)
        except ValueError:
            kind = {"ints": "a comma-separated list of integers", "int": "an integer"}.get(self.kind, "a number")
            raise argparse.ArgumentTypeError(f"'{value}' is not {kind}") from None


@dataclass(frozen=True)
class Recipe:
    """Optimisation defaults of a method's runs (RepDistiller's CIFAR recipe unless overridden);
    `lr` None means the architecture's reference lr (0.05, or 0.01 for MobileNetV2 / ShuffleNets)."""
    epochs: int = 240
    batch_size: int = 64
    lr: Optional[float] = None
    schedule: str = "step"
    lr_decay_epochs: tuple = (150, 180, 210)
    lr_decay_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    save_every: int = 40


CIFAR_RECIPE = Recipe()


@dataclass
class LossWeights:
    """The loss coefficients: total = ce * CE + kd * KD + distill * L_method."""
    ce: float       # gamma, -r
    kd: float       # alpha, -a
    distill: float  # beta, -b


@dataclass
class Context:
    """Everything a method may need at construction time besides its hyper-parameters. Tap shapes
    come from a probe forward pass (batch of 2, both networks in eval mode), as in the reference;
    `lr`, `seed` and `epochs` are the run's."""
    s_shapes: list
    t_shapes: list
    s_shapes_pre: list
    t_shapes_pre: list
    student_arch: str
    teacher_arch: str
    num_classes: int
    n_data: int = 0
    train_labels: Optional[torch.Tensor] = None
    lr: float = 0.05
    seed: int = 0
    epochs: int = 240


@dataclass
class InitPhase:
    """A pre-training stage run before the main schedule (AB, FT, FSP; SSKD's teacher head): a
    fresh SGD over the parameters of `trains` under `schedule`, with `loss(s, t, batch)` (a dict of
    terms; `s` is None when the student is not run). During the phase the student is in eval mode
    except its modules listed in `trains`; the method's modules listed in `trains` are trainable
    only during the phase (frozen before and after)."""
    name: str
    schedule: Schedule
    trains: List[nn.Module]
    loss: Callable
    run_student: bool = True
    views: str = "plain"
    evaluate: Optional[Callable] = None   # (teacher, test_loader) -> dict of metrics, logged per epoch

    def parameters(self):
        return [p for m in self.trains for p in m.parameters()]


def kd_loss(logits_s, logits_t, T):
    """Hinton KD as RepDistiller's DistillKL: T^2 * KL(p_t || p_s) summed over the batch / B."""
    log_p_s = F.log_softmax(logits_s / T, dim=1)
    p_t = F.softmax(logits_t / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (T ** 2) / logits_s.shape[0]


def warmup_factor(epoch, warmup, like):
    """min(epoch / warmup, 1) (epochs counted from 1, as mdistiller's) as a tensor of `like`'s dtype
    and device: a compiled step is not specialised per epoch."""
    return torch.clamp(torch.as_tensor(epoch, dtype=like.dtype, device=like.device) / warmup, max=1.0)


def pool_to_smaller(f_s, f_t):
    """Adaptive-average-pool the spatially larger of two maps to the smaller one's (square) size."""
    h_s, h_t = f_s.shape[2], f_t.shape[2]
    if h_s > h_t:
        f_s = F.adaptive_avg_pool2d(f_s, (h_t, h_t))
    elif h_s < h_t:
        f_t = F.adaptive_avg_pool2d(f_t, (h_s, h_s))
    return f_s, f_t


INIT_EPOCHS = HParam("init_epochs", 30, "init-phase epochs", "int", bounds="positive")


class Method(nn.Module):
    name = None
    preact = False
    teacher_preact = None   # the teacher's taps: None = as `preact`
    views = "plain"
    # RepDistiller's README / scripts command line: gamma (CE), alpha (KD), beta (method)
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=0.0)
    distills_in_main_phase = True
    trains_classifier = True   # the student's logits are scored on the test set every epoch
    # reads only the teacher's last feature vector, so cached teacher features (--teacher-feats) can
    # stand in for the teacher network
    takes_cached_teacher = False
    recipe = CIFAR_RECIPE
    # this class's own hyper-parameters; a subclass adds its own (see `declared_hparams`)
    hparams = (HParam("kd_T", 4.0, "KD temperature", bounds="positive"),)
    # {hyper-parameter: {(teacher arch, student arch): default}}: where the authors' configs set a
    # value per pair (DKD's beta), it replaces the declared default for that pair
    pair_defaults = {}

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__()
        self.w = weights if weights is not None else replace(self.standard_weights)
        # ctx is None for a teacher trained alone (method 'ce')
        self.hp = self.resolve_hparams(hp, None if ctx is None else (ctx.teacher_arch, ctx.student_arch))
        self.kd_T = self.hp["kd_T"]

    @classmethod
    def declared_hparams(cls):
        """Every hyper-parameter of the method, its base classes' first, each name once."""
        out = {}
        for klass in reversed(cls.__mro__):
            for h in vars(klass).get("hparams", ()):
                out[h.name] = h
        return tuple(out.values())

    @classmethod
    def default_value(cls, hparam, pair=None):
        """The default of `hparam` for the (teacher, student) `pair`: the pair's own where the
        method has one, else the declared one."""
        return cls.pair_defaults.get(hparam.name, {}).get(pair, hparam.default)

    @classmethod
    def resolve_hparams(cls, values=None, pair=None):
        """{name: value} for every declared hyper-parameter: the given value where not None,
        else the default (for `pair` where the method has per-pair defaults)."""
        values = values or {}
        return {h.name: cls.default_value(h, pair) if values.get(h.name) is None else values[h.name]
                for h in cls.declared_hparams()}

    def distill_loss(self, s, t, batch, epoch):
        """The method's own loss L, unweighted (the value the reference returns)."""
        raise NotImplementedError(f"{type(self).__name__} computes no main-phase loss")

    def forward(self, s, t, batch, epoch):
        terms = {}
        if self.w.ce:
            terms["ce"] = self.w.ce * F.cross_entropy(s.logits, batch["label"])
        if self.w.kd:
            terms["kd"] = self.w.kd * self.kd_term(s.logits, t.logits)
        if self.w.distill and self.distills_in_main_phase:
            terms[self.name] = self.w.distill * self.distill_loss(s, t, batch, epoch)
        return terms

    @property
    def teacher_taps_preact(self):
        return self.preact if self.teacher_preact is None else self.teacher_preact

    def kd_term(self, logits_s, logits_t):
        """The KD term before its weight -a (a method with logit standardisation overrides it)."""
        return kd_loss(logits_s, logits_t, self.kd_T)

    @property
    def uses_logits(self):
        """Whether the main-phase loss uses the student's logits (else they are detached, and the
        classifier is not trained)."""
        return bool(self.w.ce or self.w.kd)

    def init_phase(self, student, ctx):
        return None

    def accuracy_logits(self, s):
        """Logits aligned with batch['label'] (SSKD classifies only the upright views)."""
        return s.logits
