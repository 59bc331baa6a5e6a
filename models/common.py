"""Pieces shared by several model families: the output container of a forward pass with taps,
stages that expose pre-activations, the reference initialisation rules, and input re-normalisation
for a network trained with other normalisation constants than the data's."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class Outputs:
    """A network's outputs for one batch: the tap list of `forward(x, is_feat=True)` and the logits."""
    feats: list
    logits: torch.Tensor


class Stage(nn.Sequential):
    """A stage of blocks where the last block exposes its pre-activation: blocks return
    (out, preact) or just out; the stage returns the last block's (out, preact)."""

    def forward(self, x):
        preact = None
        for block in self:
            out = block(x)
            x, preact = out if isinstance(out, tuple) else (out, None)
        return x, preact


def tap_outputs(logits, is_feat, preact, post, pre):
    """The reference return convention: logits alone, or (taps, logits) with the pre-activation
    taps when `preact` (the first and last taps are the same in both lists)."""
    if not is_feat:
        return logits
    return (pre if preact else post), logits


def init_kaiming(model):
    """CIFAR ResNets: Kaiming-normal (fan_out, ReLU) convs, BatchNorm weight 1 and bias 0;
    Linear layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_fan_out_normal(model, conv_bias=False, linear_std=None):
    """WRN / VGG / MobileNetV2: convs N(0, sqrt(2 / (k*k*out))), optionally zero conv bias;
    BatchNorm weight 1 and bias 0; Linear bias 0 and, with `linear_std`, weight N(0, linear_std)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if conv_bias:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


class Renormalize(nn.Module):
    """Maps a batch normalised with the data's (mean, std) onto the normalisation a network was
    trained with: x_net = (x * std_data + mean_data - mean_net) / std_net, or raw [0, 1] pixels
    when the network's normalisation is None."""

    def __init__(self, data_norm, net_norm):
        super().__init__()
        (mean_d, std_d) = data_norm
        scale, shift = torch.tensor(std_d), torch.tensor(mean_d)
        if net_norm is not None:
            mean_n, std_n = net_norm
            scale, shift = scale / torch.tensor(std_n), (shift - torch.tensor(mean_n)) / torch.tensor(std_n)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift
