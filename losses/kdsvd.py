"""KD-SVD on feat[1:-1]: top right-singular vectors of each map, sign-aligned student vectors,
and an RBF comparison between consecutive layers. Depends on the SVD backend's sign convention
(torch's CPU SVD reproduces the reference); it has no standard weight."""
import torch
import torch.nn.functional as F

from .base import Method, MethodError, LossWeights


def _finite(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _svd(feat, n):
    b, c, h = feat.shape[:3]
    x = feat.reshape(b, c, h * h).transpose(-2, -1)       # (B, HW, C); the reference assumes square maps
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    v = vh.transpose(-2, -1)
    u, s, v = _finite(u), _finite(s), _finite(v)
    return (F.normalize(u[:, :, :n], dim=1), F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1))


def _align(v_s, v_t):
    cosine = v_s.transpose(-2, -1) @ v_t
    best = cosine.abs().max(1, keepdim=True).values
    mask = torch.where(best == cosine.abs(), torch.sign(cosine), torch.zeros_like(cosine))
    return v_s @ mask


def kdsvd_terms(feats_s, feats_t, k=1):
    terms, prev_s, prev_t = [], None, None
    for i, (f_s, f_t) in enumerate(zip(feats_s, feats_t)):
        _, s_t, v_t = _svd(f_t, k)
        _, _, v_s = _svd(f_s, k + 3)
        v_s = _align(v_s, v_t)
        s_t = s_t.unsqueeze(1)
        v_t, v_s = v_t * s_t, v_s * s_t
        if i > 0:
            rbf_s = torch.exp(-(v_s.unsqueeze(2) - prev_s.unsqueeze(1)).pow(2) / 8)
            rbf_t = torch.exp(-(v_t.unsqueeze(2) - prev_t.unsqueeze(1)).pow(2) / 8)
            terms.append(_finite((rbf_s - rbf_t.detach()).pow(2)).sum())
        prev_s, prev_t = v_s, v_t
    b = feats_s[0].shape[0]
    return [term / b for term in terms]


class KDSVD(Method):
    name = "kdsvd"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)  # no reference value: pass -b

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        s_ch = [s[1] for s in ctx.s_shapes[1:-1]]
        t_ch = [t[1] for t in ctx.t_shapes[1:-1]]
        if s_ch != t_ch:
            raise MethodError(f"KDSVD needs equal channel counts: {ctx.student_arch} {s_ch} vs "
                              f"{ctx.teacher_arch} {t_ch}")

    def distill_loss(self, s, t, batch, epoch):
        return sum(kdsvd_terms(s.feats[1:-1], t.feats[1:-1]))
