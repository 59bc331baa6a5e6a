"""bfloat16 convolutions on CPUs without native bfloat16 kernels.

oneDNN computes a bfloat16 convolution from bfloat16 operands with float32 accumulation and
rounds the result to bfloat16. On a CPU without AVX-512 BF16 / AMX it has no such kernel and torch
falls back to its reference convolution, 15-20x slower than float32, which would make the bf16
accuracy runs cost an hour of both cores. There the tests use `bf16_convolutions()`: every
convolution (forward and backward) whose operands are bfloat16 is computed in float32 from the
same bfloat16 values and rounded to bfloat16, the arithmetic of the native kernel. Everything else
(linear layers, normalisation, the losses, autocast's casts, the optimizer on float32 weights)
runs as it does in production; `test_emulated_convolution_is_torch_bf16` checks the emulation
against torch's own bfloat16 convolution."""
import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_CONVOLUTIONS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)


def native_bf16_cpu():
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if probe is None else bool(probe())


def _is_bf16(value):
    return isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16


class EmulatedBf16Convolutions(TorchDispatchMode):
    """Convolutions of bfloat16 operands computed in float32 and rounded to bfloat16; `calls`
    counts them (a test can tell that the emulation was in the path)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _CONVOLUTIONS or not any(_is_bf16(a) for a in args):
            return func(*args, **kwargs)
        self.calls += 1
        wide = [a.float() if _is_bf16(a) else a for a in args]   # exact: every bf16 is a float32
        out = func(*wide, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.to(torch.bfloat16)
        return tuple(o.to(torch.bfloat16) if isinstance(o, torch.Tensor) else o for o in out)


def bf16_convolutions():
    """A context in which bfloat16 runs at float32 speed: nothing on a CPU with native bfloat16,
    the emulation elsewhere."""
    return contextlib.nullcontext() if native_bf16_cpu() else EmulatedBf16Convolutions()
