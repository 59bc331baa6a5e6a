"""FT (factor transfer): a paraphraser auto-encoder is trained on the teacher's feat[-2] in a
30-epoch init phase, then frozen; a translator maps the student's feat[-2] and the loss is the L1
mean between AT-style spatial 'factor' maps of translator output and paraphraser code."""
import torch.nn as nn
import torch.nn.functional as F

from core.schedule import Schedule

from .base import INIT_EPOCHS, InitPhase, LossWeights, Method, pool_to_smaller


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
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=200.0)
    hparams = (INIT_EPOCHS,)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.paraphraser = Paraphraser(ctx.t_shapes[-2])
        self.translator = Translator(ctx.s_shapes[-2], ctx.t_shapes[-2])
        self.paraphraser.requires_grad_(False)  # frozen outside its init phase

    def distill_loss(self, s, t, batch, epoch):
        code_t, _ = self.paraphraser(t.feats[-2])
        return factor_loss(self.translator(s.feats[-2]), code_t.detach())

    def init_loss(self, s, t, batch):
        f_t = t.feats[-2]
        _, reconstruction = self.paraphraser(f_t)
        return {"paraphraser_mse": F.mse_loss(reconstruction, f_t)}

    def init_phase(self, student, ctx):
        lr = 0.01 if ctx.student_arch in _FT_LOW_INIT_LR else ctx.lr
        return InitPhase("factor", Schedule("constant", lr, self.hp["init_epochs"]), [self.paraphraser],
                         self.init_loss, run_student=False)
