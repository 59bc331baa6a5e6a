"""Mixed-precision contexts: autocast and the gradient scaler, as no-ops where they do not apply."""
import contextlib

import torch


def autocast(device, enabled):
    """Mixed precision on CUDA (float16); a no-op elsewhere or when disabled."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def make_grad_scaler(device, enabled):
    enabled = enabled and torch.device(device).type == "cuda"
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3
