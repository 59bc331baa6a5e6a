"""Distillation methods, one file each. `METHODS` maps the reference's `--distill` names to their
classes; `resolve_weights` applies the standard (gamma, alpha, beta) of each method."""
from .ab import AB
from .at import AT
from .base import Context, InitPhase, Method, MethodError, Outputs, Weights, kd_loss
from .cc import CC
from .crd import CRD
from .fitnet import FitNet
from .fsp import FSP
from .ft import FT
from .kd import KD, PlainCE
from .kdsvd import KDSVD
from .nst import NST
from .pkt import PKT
from .rkd import RKD
from .simreg import SimReg
from .sp import SP
from .sskd import SSKD
from .vid import VID

METHODS = {cls.name: cls for cls in (PlainCE, KD, FitNet, AT, SP, CC, VID, RKD, PKT, AB, FT, FSP, NST,
                                      KDSVD, CRD, SSKD, SimReg)}


__all__ = ["METHODS", "Context", "InitPhase", "Method", "MethodError", "Outputs", "Weights", "build", "kd_loss",
           "resolve_weights"]


def resolve_weights(name, ce=None, kd=None, distill=None):
    """The method's standard weights (RepDistiller's command lines, SSKD's defaults), each
    overridden where given."""
    if name not in METHODS:
        raise MethodError(f"unknown method '{name}'. Known: {', '.join(sorted(METHODS))}")
    std = METHODS[name].standard_weights
    return Weights(ce=std.ce if ce is None else ce, kd=std.kd if kd is None else kd,
                   distill=std.distill if distill is None else distill)


def build(name, ctx, weights):
    if name not in METHODS:
        raise MethodError(f"unknown method '{name}'. Known: {', '.join(sorted(METHODS))}")
    return METHODS[name](ctx, weights)
