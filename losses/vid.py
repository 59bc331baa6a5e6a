"""VID (variational information distillation) on feat[1:-1]: per pair a 3-layer 1x1-conv regressor
of the mean and a learned per-channel variance softplus(alpha) + eps, alpha starting so that the
variance is 5."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Method, LossWeights, pool_to_smaller


class VIDRegressor(nn.Module):
    def __init__(self, c_in, c_mid, c_out, init_var=5.0, eps=1e-5):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_out, 1, bias=False))
        self.log_scale = nn.Parameter(torch.full((c_out,), math.log(math.exp(init_var - eps) - 1.0)))
        self.eps = eps

    def forward(self, f_s, f_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        mean = self.regressor(f_s)
        var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        return (0.5 * ((mean - f_t) ** 2 / var + var.log())).mean()


class VID(Method):
    name = "vid"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.vid = nn.ModuleList(VIDRegressor(s[1], t[1], t[1])
                                 for s, t in zip(ctx.s_shapes[1:-1], ctx.t_shapes[1:-1]))

    def terms(self, s, t):
        return [m(f_s, f_t) for m, f_s, f_t in zip(self.vid, s.feats[1:-1], t.feats[1:-1])]

    def distill_loss(self, s, t, batch, epoch):
        return sum(self.terms(s, t))
