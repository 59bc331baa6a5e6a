"""FSP (flow of solution procedure): distils only in a 30-epoch init phase on feat[:-1], training
the student's feature modules; afterwards CE only (plus KD if alpha > 0), as the reference.
Needs equal channel counts at every tap."""
from core.schedule import Schedule

from .base import INIT_EPOCHS, InitPhase, LossWeights, Method, MethodError, pool_to_smaller


def fsp_matrices(feats):
    out = []
    for bottom, top in zip(feats[:-1], feats[1:]):
        bottom, top = pool_to_smaller(bottom, top)
        b, c_bot = bottom.shape[:2]
        c_top = top.shape[1]
        out.append(top.reshape(b, c_top, 1, -1).mul(bottom.reshape(b, 1, c_bot, -1)).mean(-1))
    return out


def fsp_terms(feats_s, feats_t):
    return [(g_s - g_t).pow(2).mean() for g_s, g_t in zip(fsp_matrices(feats_s), fsp_matrices(feats_t))]


class FSP(Method):
    name = "fsp"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=50.0)
    distills_in_main_phase = False
    hparams = (INIT_EPOCHS,)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        s_ch = [s[1] for s in ctx.s_shapes[:-1]]
        t_ch = [t[1] for t in ctx.t_shapes[:-1]]
        if len(s_ch) != len(t_ch) or s_ch != t_ch:
            raise MethodError(f"FSP needs equal channel counts at every tap: {ctx.student_arch} has {s_ch}, "
                              f"{ctx.teacher_arch} has {t_ch}")

    def init_loss(self, s, t, batch):
        return {"fsp": sum(fsp_terms(s.feats[:-1], t.feats[:-1]))}

    def init_phase(self, student, ctx):
        return InitPhase("fsp", Schedule("constant", ctx.lr, self.hp["init_epochs"]), [student.get_feat_modules()],
                         self.init_loss)
