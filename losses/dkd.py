"""DKD (Decoupled Knowledge Distillation, Zhao et al., CVPR 2022; mdistiller's DKD).

KD split into a target-class term (TCKD: KL between the binary target / non-target
distributions) and a non-target term (NCKD: KL between the distributions over the non-target
classes), weighted alpha and beta; the sum ramps in linearly over the first `dkd_warmup` epochs
(epoch / warmup, epochs counted from 1). CE weight 1; T = --kd-T (4). beta is 8 except where
mdistiller's CIFAR configs set it per pair. With --logit-stand (DKD+LS) the logits are
standardised, T = --ls-T and alpha, beta are multiplied by --ls-weight."""
import torch
import torch.nn.functional as F

from . import logit_stand
from .base import HParam, LossWeights, Method, MethodError, warmup_factor

# the target class is pushed out of the non-target softmax by this logit offset, as the authors'
MASK_OFFSET = 1000.0


def dkd_loss(logits_s, logits_t, target, alpha, beta, T):
    """alpha * TCKD + beta * NCKD, each T^2 * KL summed over the batch / B."""
    batch = logits_s.shape[0]
    gt = F.one_hot(target, logits_s.shape[1]).to(logits_s.dtype)
    p_s, p_t = F.softmax(logits_s / T, dim=1), F.softmax(logits_t / T, dim=1)
    # binary distributions: probability of the target class, and of all the others
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], dim=1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * T ** 2 / batch
    nckd = F.kl_div(F.log_softmax(logits_s / T - MASK_OFFSET * gt, dim=1),
                    F.softmax(logits_t / T - MASK_OFFSET * gt, dim=1), reduction="sum") * T ** 2 / batch
    return alpha * tckd + beta * nckd


class DKD(Method):
    name = "dkd"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)
    hparams = (
        HParam("dkd_alpha", 1.0, "DKD's target-class (TCKD) weight; not -a, which weighs an extra KD term"),
        HParam("dkd_beta", 8.0, "DKD's non-target (NCKD) weight; not -b, which weighs the whole DKD loss. Per pair "
               "as mdistiller's CIFAR configs: 2 for resnet56:resnet20 and resnet110:resnet32, 6 for vgg13:vgg8, "
               "vgg13:MobileNetV2, wrn_40_2:wrn_16_2 and wrn_40_2:wrn_40_1"),
        HParam("dkd_warmup", 20, "epochs over which DKD's loss ramps in linearly", "int",
               bounds="positive"),
    ) + logit_stand.HPARAMS
    pair_defaults = {"dkd_beta": {("resnet56", "resnet20"): 2.0, ("resnet110", "resnet32"): 2.0,
                                  ("vgg13", "vgg8"): 6.0, ("vgg13", "MobileNetV2"): 6.0,
                                  ("wrn_40_2", "wrn_16_2"): 6.0, ("wrn_40_2", "wrn_40_1"): 6.0}}

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        if self.hp["dkd_warmup"] < 1:
            raise MethodError(f"--dkd-warmup {self.hp['dkd_warmup']}: give at least 1 epoch")
        scale = self.hp["ls_weight"] if self.hp["logit_stand"] else 1.0
        self.alpha, self.beta = self.hp["dkd_alpha"] * scale, self.hp["dkd_beta"] * scale
        self.T = self.hp["ls_T"] if self.hp["logit_stand"] else self.kd_T

    def distill_loss(self, s, t, batch, epoch):
        logits_s, logits_t = s.logits, t.logits
        if self.hp["logit_stand"]:
            logits_s, logits_t = logit_stand.standardize(logits_s), logit_stand.standardize(logits_t)
        loss = dkd_loss(logits_s, logits_t, batch["label"], self.alpha, self.beta, self.T)
        return warmup_factor(epoch, self.hp["dkd_warmup"], loss) * loss
