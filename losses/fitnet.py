"""FitNet (hint): MSE between a regressed student map and the teacher map at `--hint-layer`."""
import torch.nn.functional as F

from .adaptors import ConvReg
from .base import HParam, LossWeights, Method, MethodError


class FitNet(Method):
    name = "hint"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=100.0)
    hparams = (HParam("hint_layer", 2, "feature tap regressed", "int", choices=(0, 1, 2, 3, 4)),)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.layer = self.hp["hint_layer"]
        if not 0 <= self.layer < len(ctx.s_shapes) - 1:
            raise MethodError(f"--hint-layer {self.layer} is not a feature map of {ctx.student_arch}")
        self.regressor = ConvReg(ctx.s_shapes[self.layer], ctx.t_shapes[self.layer])

    def distill_loss(self, s, t, batch, epoch):
        return F.mse_loss(self.regressor(s.feats[self.layer]), t.feats[self.layer])
