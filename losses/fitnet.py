"""FitNet (hint): MSE between a regressed student map and the teacher map at `--hint-layer`."""
import torch.nn.functional as F

from .adaptors import ConvReg
from .base import Method, MethodError, Weights


class FitNet(Method):
    name = "hint"
    standard_weights = Weights(ce=1.0, kd=0.0, distill=100.0)

    def __init__(self, ctx, weights):
        super().__init__(ctx, weights)
        self.layer = int(ctx.get("hint_layer", 2))
        if not 0 <= self.layer < len(ctx.s_shapes) - 1:
            raise MethodError(f"--hint-layer {self.layer} is not a feature map of {ctx.student_arch}")
        self.regressor = ConvReg(ctx.s_shapes[self.layer], ctx.t_shapes[self.layer])

    def distill_loss(self, s, t, batch):
        return F.mse_loss(self.regressor(s.feats[self.layer]), t.feats[self.layer])
