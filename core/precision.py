"""Mixed precision and memory layout: autocast, the gradient scaler and channels_last, as no-ops
where they do not apply. `--amp` is 'off' (float32, the reference numbers), 'bf16' (bfloat16
autocast, CUDA or CPU; no scaler needed) or 'fp16' (float16 autocast on CUDA with a GradScaler)."""
import contextlib

import torch

from .errors import UserError

PRECISIONS = ("off", "bf16", "fp16")


def precision_name(amp):
    """'off' / 'bf16' / 'fp16' from a flag value (True, the old --amp switch, means fp16)."""
    if amp is True:
        return "fp16"
    if amp in (False, None):
        return "off"
    if amp not in PRECISIONS:
        raise UserError(f"--amp {amp}: choose from {', '.join(PRECISIONS)}")
    return amp


def autocast(device, amp):
    device = torch.device(device)
    amp = precision_name(amp)
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device (use --amp bf16 on the CPU)")
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def make_grad_scaler(device, amp):
    """A GradScaler that is enabled only for float16 on CUDA (bfloat16 keeps float32's range)."""
    enabled = precision_name(amp) == "fp16" and torch.device(device).type == "cuda"
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def to_channels_last(x):
    """4-D tensors (images, conv weights) in NHWC memory order; anything else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def full_precision(device):
    """Autocast switched off inside an autocast region: for computations that low precision ruins
    (CRD's exp(<v, w> / 0.07) scores)."""
    return torch.autocast(torch.device(device).type, enabled=False)


def upcast(x):
    """float16 / bfloat16 tensors in float32; anything else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
