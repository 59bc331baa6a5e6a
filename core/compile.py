"""torch.compile for the training step: the modes, the one decorator that keeps a function out of
the compiled graph (random draws from a generator, one-time host-side set-up), and the marker
that starts a CUDA-graph step. Everything degrades to eager where this torch lacks it."""
import torch

from .errors import UserError

# 'auto': CUDA graphs on CUDA (reduce-overhead), plain inductor elsewhere
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead", "max-autotune")


def _disable():
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "disable"):
        return compiler.disable
    return torch._dynamo.disable


def outside_graph(fn):
    """Run `fn` eagerly even when its caller is compiled (a deliberate graph break)."""
    return _disable()(fn)


def resolve_mode(mode, device):
    """The torch.compile mode for a --compile value, or None when off."""
    if mode in (None, "off"):
        return None
    if mode not in COMPILE_MODES:
        raise UserError(f"--compile {mode}: choose from {', '.join(COMPILE_MODES)}")
    if mode == "auto":
        return "reduce-overhead" if torch.device(device).type == "cuda" else "default"
    if mode == "reduce-overhead" and torch.device(device).type != "cuda":
        raise UserError("--compile reduce-overhead (CUDA graphs) needs a CUDA device")
    return mode


def compile_step(fn, mode):
    """`fn` compiled for fixed shapes: a new batch size (an epoch's last, smaller batch) compiles
    once more instead of switching to dynamic shapes."""
    return torch.compile(fn, mode=mode, dynamic=False)


def mark_step_begin(device):
    """Tell CUDA-graph trees that a new training step starts (its outputs may be overwritten)."""
    if torch.device(device).type == "cuda" and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        torch.compiler.cudagraph_mark_step_begin()
