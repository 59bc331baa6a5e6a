"""SP (similarity-preserving) on feat[-2]: row-normalised batch Gram matrices."""
import torch.nn.functional as F

from .base import Method, LossWeights


def similarity_loss(f_s, f_t):
    b = f_s.shape[0]
    g_s = F.normalize(f_s.reshape(b, -1) @ f_s.reshape(b, -1).t())
    g_t = F.normalize(f_t.reshape(b, -1) @ f_t.reshape(b, -1).t())
    return (g_t - g_s).pow(2).sum() / (b * b)


class SP(Method):
    name = "similarity"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=3000.0)

    def distill_loss(self, s, t, batch, epoch):
        return similarity_loss(s.feats[-2], t.feats[-2])
