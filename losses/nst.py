"""NST (neuron selectivity transfer) on feat[1:-1]: squared MMD with a degree-2 polynomial kernel
between channel-wise L2-normalised spatial activations."""
import torch.nn.functional as F

from .base import Method, LossWeights, pool_to_smaller


def _poly_kernel_mean(a, b):
    return (b.unsqueeze(2) * a.unsqueeze(1)).sum(-1).pow(2).mean()


def nst_terms(feats_s, feats_t):
    terms = []
    for f_s, f_t in zip(feats_s, feats_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        f_s = F.normalize(f_s.flatten(2), dim=2)
        f_t = F.normalize(f_t.flatten(2), dim=2)
        terms.append(_poly_kernel_mean(f_t, f_t).detach() + _poly_kernel_mean(f_s, f_s)
                     - 2 * _poly_kernel_mean(f_s, f_t))
    return terms


class NST(Method):
    name = "nst"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=50.0)

    def distill_loss(self, s, t, batch, epoch):
        return sum(nst_terms(s.feats[1:-1], t.feats[1:-1]))
