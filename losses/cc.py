"""CC (correlation congruence) as RepDistiller ships it: trainable linear embeddings of both pooled
features and the mean over consecutive samples of sum_k |d_b,k| |d_b+1,k| (batch-order dependent;
not the kernel correlation of the paper)."""
from .adaptors import LinearEmbed
from .base import HParam, LossWeights, Method


def correlation_loss(e_s, e_t):
    delta = (e_s - e_t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


class CC(Method):
    name = "correlation"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=0.02)
    hparams = (HParam("feat_dim", 128, "embedding width", "int", bounds="positive"),)

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        dim = self.hp["feat_dim"]
        self.embed_s = LinearEmbed(ctx.s_shapes[-1][1], dim)
        self.embed_t = LinearEmbed(ctx.t_shapes[-1][1], dim)  # trained too, as in the reference

    def distill_loss(self, s, t, batch, epoch):
        return correlation_loss(self.embed_s(s.feats[-1]), self.embed_t(t.feats[-1]))
