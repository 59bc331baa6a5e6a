"""torch.compile for the training step: the modes, the one decorator that keeps a function out of
the compiled graph (random draws from a generator, one-time host-side set-up), and the marker
that starts a CUDA-graph step. Everything degrades to eager where this torch lacks it."""
import functools

import torch

from .errors import UserError

# 'auto': CUDA graphs on CUDA (reduce-overhead), plain inductor elsewhere
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead", "max-autotune")


def _disable():
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "disable"):
        return compiler.disable
    import torch._dynamo as dynamo
    return dynamo.disable


# The functions kept out of compiled graphs, each as a one-element list holding the form a call
# runs: the function itself until a step is first compiled, then its torch.compiler.disable form.
# So torch._dynamo (over a second to import) is imported by the first compile_step, not by every
# process that imports a module using outside_graph: an eager run starts without it.
_KEPT_OUT = []
_compiled_once = False


def outside_graph(fn):
    """Run `fn` eagerly even when its caller is compiled (a deliberate graph break)."""
    form = [_disable()(fn) if _compiled_once else fn]
    _KEPT_OUT.append(form)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return form[0](*args, **kwargs)
    return call


def _keep_out_of_graphs():
    global _compiled_once
    if not _compiled_once:
        disable = _disable()
        for form in _KEPT_OUT:
            form[0] = disable(form[0])
        _compiled_once = True


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
    _keep_out_of_graphs()
    return torch.compile(fn, mode=mode, dynamic=False)


def mark_step_begin(device):
    """Tell CUDA-graph trees that a new training step starts (its outputs may be overwritten)."""
    if torch.device(device).type == "cuda" and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        torch.compiler.cudagraph_mark_step_begin()
