"""SimReg: regress the teacher's feature with a prediction head on the student's pooled feature;
the head is dropped after training.

Normalised (default, the reference): mean over the batch of ||q/|q| - t/|t|||^2 = 2 - 2 cos(q, t).
Un-normalised (`--no-normalize`): mean over the batch of ||q - t||^2 -- the reference's
`--mse_nonorm` normalises anyway (a no-op); this option really skips the normalisation."""
import torch.nn.functional as F

from models.heads import prediction_head
from .base import Method, Weights


def simreg_loss(pred, target, normalize=True):
    if normalize:
        return (2 - 2 * (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)).mean()
    return (pred - target).pow(2).sum(1).mean()


class SimReg(Method):
    name = "simreg"
    views = "pair"                 # a student view and a teacher view (often the same tensor)
    trains_classifier = False   # evaluated afterwards by k-NN and linear probes
    standard_weights = Weights(ce=0.0, kd=0.0, distill=1.0)

    def __init__(self, ctx, weights):
        super().__init__(ctx, weights)
        self.normalize = not ctx.get("no_normalize", False)
        # named as the reference's head so that its checkpoints map by prefix
        self.predict_q = prediction_head(ctx.s_shapes[-1][1], ctx.t_shapes[-1][1], int(ctx.get("mlp_layers", 4)),
                                         bool(ctx.get("mlp2_bn_relu", False)))

    def forward(self, s, t, batch):
        return {"simreg": self.w.distill * simreg_loss(self.predict_q(s.feats[-1].flatten(1)),
                                                       t.feats[-1].flatten(1), self.normalize)}

    def accuracy_logits(self, s):
        return None   # no classifier: nothing to score during training
