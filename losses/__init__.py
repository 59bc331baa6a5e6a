"""Distillation methods, one file each. `METHODS` maps the reference's `--distill` names to their
classes; each class declares its standard loss weights, its hyper-parameters with their defaults
and its recipe. Adding a method is two edits here: its file, and its entry in `METHODS`."""
from .ab import AB
from .at import AT
from .base import (CIFAR_RECIPE, Context, HParam, InitPhase, LossWeights, Method, MethodError, Recipe, kd_loss)
from .cc import CC
from .crd import CRD
from .dist import DIST
from .dkd import DKD
from .fitnet import FitNet
from .fsp import FSP
from .ft import FT
from .kd import KD, PlainCE
from .kdsvd import KDSVD
from .nst import NST
from .pkt import PKT
from .reviewkd import ReviewKD
from .rkd import RKD
from .simreg import SimReg
from .sp import SP
from .sskd import SSKD
from .vid import VID

METHODS = {cls.name: cls for cls in (PlainCE, KD, FitNet, AT, SP, CC, VID, RKD, PKT, AB, FT, FSP, NST,
                                      KDSVD, CRD, SSKD, SimReg, DKD, ReviewKD, DIST)}

__all__ = ["CIFAR_RECIPE", "METHODS", "Context", "HParam", "InitPhase", "LossWeights", "Method", "MethodError",
           "Recipe", "add_hparam_args", "build", "hparam_defaults", "kd_loss", "method_class", "resolve_weights"]


def method_class(name):
    if name not in METHODS:
        raise MethodError(f"unknown method '{name}'. Known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def resolve_weights(name, ce=None, kd=None, distill=None):
    """The method's standard weights (RepDistiller's command lines, SSKD's defaults), each
    overridden where given."""
    std = method_class(name).standard_weights
    return LossWeights(ce=std.ce if ce is None else ce, kd=std.kd if kd is None else kd,
                       distill=std.distill if distill is None else distill)


def build(name, ctx, weights=None, hparams=None):
    """The method `name` with `weights` (default: its standard ones) and the given hyper-parameter
    values (None or absent: the method's own default)."""
    cls = method_class(name)
    return cls(ctx, weights if weights is not None else resolve_weights(name), hparams)


def hparam_defaults():
    """{hyper-parameter name: (HParam, {method name: its default})} over the whole registry; a name
    shared by several methods (kd_T, feat_dim, init_epochs) has one flag and one kind."""
    table = {}
    for method_name, cls in METHODS.items():
        for h in cls.declared_hparams():
            first, defaults = table.setdefault(h.name, (h, {}))
            if (first.kind, first.choices) != (h.kind, h.choices):
                raise TypeError(f"hyper-parameter {h.name} is declared with two kinds ({first.kind}, {h.kind})")
            defaults[method_name] = h.default
    return table


def _defaults_text(defaults):
    values = set(map(repr, defaults.values()))
    if len(defaults) == len(METHODS) and len(values) == 1:
        return f"every method: {next(iter(defaults.values()))!r}"
    return ", ".join(f"{m}: {v!r}" for m, v in defaults.items())


def add_hparam_args(group):
    """One flag per hyper-parameter of the registry, default None (the method's own default applies);
    the help text lists the default of every method that has it."""
    for h, defaults in hparam_defaults().values():
        text = f"{h.help} (default {_defaults_text(defaults)})".replace("%", "%%")
        if h.kind == "flag":
            group.add_argument(h.flag, dest=h.name, action="store_true", default=None, help=text)
        else:
            group.add_argument(h.flag, dest=h.name, default=None, help=text, choices=h.choices, type=h.parse)
