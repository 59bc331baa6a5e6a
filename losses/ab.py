"""AB (activation boundaries): distils only in a 30-epoch init phase on the pre-activation taps
feat[1:-1], training a connector and the student's feature modules; afterwards the student trains
with CE (plus KD if alpha > 0) and the connector is unused, exactly as the reference."""
import torch.nn as nn

from core.schedule import Schedule

from .adaptors import ConvReg
from .base import INIT_EPOCHS, InitPhase, LossWeights, Method


def ab_terms(feats_s, feats_t, margin=1.0):
    """Per-layer AB losses with the reference's weights 2^(l-n+1), / B and x 3/1000."""
    n, b = len(feats_s), feats_s[0].shape[0]
    terms = []
    for l, (s, t) in enumerate(zip(feats_s, feats_t)):
        loss = ((s + margin) ** 2 * ((s > -margin) & (t <= 0)).to(s.dtype)
                + (s - margin) ** 2 * ((s <= margin) & (t > 0)).to(s.dtype)).abs().sum()
        terms.append(2 ** (l - n + 1) * loss / b / 1000 * 3)
    return terms


class Connector(nn.Module):
    """Per tap: identity when the student map already has the teacher's shape, else ConvReg
    without ReLU (module list `connectors`)."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        self.connectors = nn.ModuleList(
            nn.Identity() if s[1:3] == t[1:3] else ConvReg(s, t, use_relu=False)
            for s, t in zip(s_shapes, t_shapes))

    def forward(self, feats):
        return [c(f) for c, f in zip(self.connectors, feats)]


class AB(Method):
    name = "abound"
    preact = True  # also in phase 2, as the reference (WRN students re-run BNs there)
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)
    distills_in_main_phase = False
    hparams = (INIT_EPOCHS,)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.margin = 1.0
        self.connector = Connector(ctx.s_shapes_pre[1:-1], ctx.t_shapes_pre[1:-1])
        self.connector.requires_grad_(False)  # trained in the init phase only, then unused (in eval)

    def init_loss(self, s, t, batch):
        return {"ab": sum(ab_terms(self.connector(s.feats[1:-1]), t.feats[1:-1], self.margin))}

    def init_phase(self, student, ctx):
        return InitPhase("abound", Schedule("constant", ctx.lr, self.hp["init_epochs"]),
                         [self.connector, student.get_feat_modules()], self.init_loss)
