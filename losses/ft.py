"""FT (factor transfer): a paraphraser auto-encoder is trained on the teacher's feat[-2] in a
30-epoch init phase, then frozen; a translator maps the student's feat[-2] and the loss is the L1
mean between AT-style spatial 'factor' maps of translator output and paraphraser code."""
import torch.nn as nn
import torch.nn.functional as F

from engine.schedule import make_schedule
from .base import InitPhase, Method, Weights, pool_to_smaller


class Paraphraser(nn.Module):
    """Conv encoder C -> C -> C/2 -> C/2 and transposed-conv decoder back; LeakyReLU(0.1) after
    every conv; no BatchNorm (empty slots keep the reference's indices 0, 3, 6)."""

    def __init__(self, t_shape, k=0.5):
        super().__init__()
        c, c_mid = t_shape[1], int(t_shape[1] * k)
        act = lambda: nn.LeakyReLU(0.1, inplace=True)  # noqa: E731
        self.encoder = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1), nn.Sequential(), act(),
            nn.Conv2d(c, c_mid, 3, 1, 1), nn.Sequential(), act(),
            nn.Conv2d(c_mid, c_mid, 3, 1, 1), nn.Sequential(), act())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c_mid, c_mid, 3, 1, 1), nn.Sequential(), act(),
            nn.ConvTranspose2d(c_mid, c, 3, 1, 1), nn.Sequential(), act(),
            nn.ConvTranspose2d(c, c, 3, 1, 1), nn.Sequential(), act())

    def forward(self, f):
        code = self.encoder(f)
        return code, self.decoder(code)


class Translator(nn.Module):
    def __init__(self, s_shape, t_shape, k=0.5):
        super().__init__()
        c_s, c_mid = s_shape[1], int(t_shape[1] * k)
        act = lambda: nn.LeakyReLU(0.1, inplace=True)  # noqa: E731
        self.encoder = nn.Sequential(
            nn.Conv2d(c_s, c_s, 3, 1, 1), nn.BatchNorm2d(c_s), act(),
            nn.Conv2d(c_s, c_mid, 3, 1, 1), nn.BatchNorm2d(c_mid), act(),
            nn.Conv2d(c_mid, c_mid, 3, 1, 1), nn.BatchNorm2d(c_mid), act())

    def forward(self, f):
        return self.encoder(f)


def factor_map(f, p=2):
    return F.normalize(f.pow(p).mean(1).flatten(1))


def factor_loss(factor_s, factor_t):
    factor_s, factor_t = pool_to_smaller(factor_s, factor_t)
    return (factor_map(factor_s) - factor_map(factor_t)).abs().mean()


# the reference trains the paraphraser at lr 0.01 when the *student* is one of these
_FT_LOW_INIT_LR = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                   "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2")


class FT(Method):
    name = "factor"
    standard_weights = Weights(ce=1.0, kd=0.0, distill=200.0)

    def __init__(self, ctx, weights):
        super().__init__(ctx, weights)
        self.paraphraser = Paraphraser(ctx.t_shapes[-2])
        self.translator = Translator(ctx.s_shapes[-2], ctx.t_shapes[-2])
        self.paraphraser.requires_grad_(False)  # frozen outside its init phase

    def distill_loss(self, s, t, batch):
        code_t, _ = self.paraphraser(t.feats[-2])
        return factor_loss(self.translator(s.feats[-2]), code_t.detach())

    def init_loss(self, s, t, batch):
        f_t = t.feats[-2]
        _, reconstruction = self.paraphraser(f_t)
        return {"paraphraser_mse": F.mse_loss(reconstruction, f_t)}

    def init_phase(self, student, ctx):
        lr = 0.01 if ctx.student_arch in _FT_LOW_INIT_LR else ctx.get("lr", 0.05)
        lr_at, _ = make_schedule("constant", lr)

        def on_end():
            self.paraphraser.requires_grad_(False)
            self.paraphraser.eval()

        self.paraphraser.requires_grad_(True)
        return InitPhase("factor", int(ctx.get("init_epochs", 30)), lr_at, list(self.paraphraser.parameters()),
                         self.init_loss, run_student=False, aux_modules=[self.paraphraser], on_end=on_end)

    def train(self, mode=True):
        super().train(mode)
        if not any(p.requires_grad for p in self.paraphraser.parameters()):
            self.paraphraser.eval()
        return self
