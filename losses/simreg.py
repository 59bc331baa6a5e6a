"""SimReg: regress the teacher's feature with a prediction head on the student's pooled feature;
the head is dropped after training.

Normalised (default, the reference): mean over the batch of ||q/|q| - t/|t|||^2 = 2 - 2 cos(q, t).
Un-normalised (`--no-normalize`): mean over the batch of ||q - t||^2 -- the reference's
`--mse_nonorm` normalises anyway (a no-op); this option really skips the normalisation."""
import torch.nn.functional as F

from models.heads import prediction_head

from .base import HParam, LossWeights, Method, Recipe


def simreg_loss(pred, target, normalize=True):
    if normalize:
        return (2 - 2 * (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)).mean()
    return (pred - target).pow(2).sum(1).mean()


class SimReg(Method):
    name = "simreg"
    views = "pair"                 # a student view and a teacher view (often the same tensor)
    trains_classifier = False   # evaluated afterwards by k-NN and linear probes
    takes_cached_teacher = True   # regresses the teacher's final feature only
    standard_weights = LossWeights(ce=0.0, kd=0.0, distill=1.0)
    # the reference's ImageNet recipe: 130 epochs, batch 256, SGD lr 0.05 wd 1e-4, cosine per epoch
    recipe = Recipe(epochs=130, batch_size=256, lr=0.05, schedule="cosine", weight_decay=1e-4, save_every=10)
    hparams = (HParam("mlp_layers", 4, "prediction head: 4, 2 (linear, as the reference) or 1 (BN + Linear)", "int",
                      choices=(1, 2, 4)),
               HParam("mlp2_bn_relu", False, "2-layer head with BN + ReLU in between", "flag"),
               HParam("no_normalize", False, "plain MSE on un-normalised vectors", "flag"))

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.normalize = not self.hp["no_normalize"]
        # named as the reference's head so that its checkpoints map by prefix
        self.predict_q = prediction_head(ctx.s_shapes[-1][1], ctx.t_shapes[-1][1], self.hp["mlp_layers"],
                                         self.hp["mlp2_bn_relu"])

    def forward(self, s, t, batch, epoch):
        return {"simreg": self.w.distill * simreg_loss(self.predict_q(s.feats[-1].flatten(1)),
                                                       t.feats[-1].flatten(1), self.normalize)}

    def accuracy_logits(self, s):
        return None   # no classifier: nothing to score during training
