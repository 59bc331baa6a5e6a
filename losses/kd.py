"""KD (Hinton et al.): CE and temperature-scaled KL only; the KD term comes through alpha. With
--logit-stand, KD on standardised logits (KD+LS)."""
from dataclasses import replace

from . import logit_stand
from .base import LossWeights, Method, kd_loss


class KD(Method):
    name = "kd"
    standard_weights = LossWeights(ce=0.1, kd=0.9, distill=0.0)
    distills_in_main_phase = False  # L_method = 0; KD enters through the kd weight
    hparams = logit_stand.HPARAMS

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        if self.hp["logit_stand"]:
            self.kd_T = self.hp["ls_T"]
            self.w = replace(self.w, kd=self.hp["ls_weight"])

    def kd_term(self, logits_s, logits_t):
        if self.hp["logit_stand"]:
            logits_s, logits_t = logit_stand.standardize(logits_s), logit_stand.standardize(logits_t)
        return kd_loss(logits_s, logits_t, self.kd_T)


class PlainCE(Method):
    """No teacher signal: a student trained with cross-entropy only (the 'student' baseline)."""
    name = "ce"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=0.0)
    distills_in_main_phase = False
