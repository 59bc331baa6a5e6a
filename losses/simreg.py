"""SimReg: regress the teacher's feature with a prediction head on the student's pooled feature.
Normalised (default, the reference): mean over the batch of ||q/|q| - t/|t|||^2 = 2 - 2 cos(q, t).
Un-normalised (`normalize=False`): mean over the batch of ||q - t||^2 -- the reference's
`--mse_nonorm` normalises anyway (a no-op); this option really skips the normalisation."""
import torch.nn.functional as F


def simreg_loss(pred, target, normalize=True):
    if normalize:
        return (2 - 2 * (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)).mean()
    return (pred - target).pow(2).sum(1).mean()
