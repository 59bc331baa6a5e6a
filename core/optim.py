"""The one SGD of every training path (teacher, student, init phases, linear probe): on CUDA the
fused kernel (one launch for all parameters) where this torch has it; elsewhere torch's default,
so that CPU runs stay bit-identical to the reference's update."""
import inspect

import torch


def fused_available():
    return "fused" in inspect.signature(torch.optim.SGD).parameters


def sgd(params, lr, momentum, weight_decay, device="cpu"):
    extra = {"fused": True} if torch.device(device).type == "cuda" and fused_available() else {}
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra)
