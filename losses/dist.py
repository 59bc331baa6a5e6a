"""DIST (Huang et al., NeurIPS 2022; hunto/DIST_KD): the student matches the teacher's class
probabilities (softmax at T = --kd-T, 4 on CIFAR) by relations rather than exact values: one minus
the Pearson correlation per sample across classes (inter-class) and per class across the batch
(intra-class), each times T^2, weighted --dist-beta and --dist-gamma. CIFAR config: CE weight 1,
DIST weight 2 (-b)."""
from .base import HParam, LossWeights, Method


def pearson_rows(a, b, eps=1e-8):
    """Pearson correlation of each row of `a` with the same row of `b` (the authors' eps in the
    denominator)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(logits_s, logits_t, beta, gamma, T):
    y_s, y_t = (logits_s / T).softmax(dim=1), (logits_t / T).softmax(dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.t(), y_t.t()).mean()
    return T ** 2 * (beta * inter + gamma * intra)


class DIST(Method):
    name = "dist"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=2.0)
    hparams = (HParam("dist_beta", 1.0, "DIST's inter-class relation weight"),
               HParam("dist_gamma", 1.0, "DIST's intra-class relation weight"))

    def distill_loss(self, s, t, batch, epoch):
        return dist_loss(s.logits, t.logits, self.hp["dist_beta"], self.hp["dist_gamma"], self.kd_T)
