"""RKD (relational KD) on the pooled features: 25 x distance term + 50 x angle term, both
SmoothL1 means over all pairs / triplets (diagonal and degenerate entries included)."""
import torch
import torch.nn.functional as F

from .base import Method, LossWeights


def pairwise_distance(e, eps=1e-12):
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), dtype=d.dtype, device=d.device))


def _normalised_distance(e):
    d = pairwise_distance(e)
    return d / d[d > 0].mean()


def _angles(e):
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def rkd_loss(f_s, f_t, w_dist=25.0, w_angle=50.0):
    s, t = f_s.flatten(1), f_t.flatten(1)
    with torch.no_grad():
        t_d, t_a = _normalised_distance(t), _angles(t)
    loss_d = F.smooth_l1_loss(_normalised_distance(s), t_d)
    loss_a = F.smooth_l1_loss(_angles(s), t_a)
    return w_dist * loss_d + w_angle * loss_a


class RKD(Method):
    name = "rkd"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)

    def distill_loss(self, s, t, batch, epoch):
        return rkd_loss(s.feats[-1], t.feats[-1])
