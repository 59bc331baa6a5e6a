"""AT (attention transfer, p = 2) on the intermediate maps feat[1:-1]."""
import torch.nn.functional as F

from .base import Method, LossWeights, pool_to_smaller


def attention_map(f, p=2):
    return F.normalize(f.pow(p).mean(1).flatten(1))


def attention_terms(feats_s, feats_t, p=2):
    terms = []
    for f_s, f_t in zip(feats_s, feats_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        terms.append((attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean())
    return terms


class AT(Method):
    name = "attention"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1000.0)

    def distill_loss(self, s, t, batch, epoch):
        return sum(attention_terms(s.feats[1:-1], t.feats[1:-1]))
