"""Adaptor modules shared by several methods."""
import torch.nn as nn

from .base import MethodError


class ConvReg(nn.Module):
    """RepDistiller's FitNet regressor from a student map (C_s, H_s, W_s) to a teacher map
    (C_t, H_t, W_t): 3x3 stride-2 conv if H_s = 2 H_t; 4x4 stride-2 transposed conv if 2 H_s = H_t;
    otherwise, when H_s >= H_t, a valid conv of kernel (1 + H_s - H_t, 1 + W_s - W_t); then BN and
    (unless `use_relu=False`, as AB's connector) ReLU. Shapes are (N, C, H, W) tuples."""

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        _, c_s, h_s, w_s = s_shape
        _, c_t, h_t, w_t = t_shape
        if h_s == 2 * h_t:
            self.conv = nn.Conv2d(c_s, c_t, 3, stride=2, padding=1)
        elif h_s * 2 == h_t:
            self.conv = nn.ConvTranspose2d(c_s, c_t, 4, stride=2, padding=1)
        elif h_s >= h_t:
            self.conv = nn.Conv2d(c_s, c_t, (1 + h_s - h_t, 1 + w_s - w_t))
        else:
            # the reference raises a confusing TypeError here (it calls NotImplemented(...))
            raise MethodError(f"cannot regress a student map of size {h_s}x{w_s} onto a teacher map of "
                             f"size {h_t}x{w_t}: only equal, twice or half the height, or a larger "
                             f"student map are supported")
        self.bn = nn.BatchNorm2d(c_t)
        self.use_relu = use_relu
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class LinearEmbed(nn.Module):
    """CC's embedding: one Linear (module name `linear`), no normalisation."""

    def __init__(self, dim_in, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return self.linear(x.flatten(1))
