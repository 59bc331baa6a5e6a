"""ReviewKD (Distilling Knowledge via Knowledge Review, Chen et al., CVPR 2021; dvlab-research/
ReviewKD and mdistiller's ReviewKD).

The student's taps feat[1:] (its maps after their ReLU, the pooled feature as a 1x1 map) are
fused from the deepest to the shallowest by attention-based fusion (ABF) modules: each maps its
tap to a common width (1x1 conv + BN), mixes in the fused result of the level below (resized by
nearest neighbour, two sigmoid attention maps from a 1x1 conv over both), and predicts the
teacher's tap at that level (resize, 3x3 conv + BN). The hierarchical context loss (HCL) compares
each prediction with the teacher's pre-activation tap by MSE at full size and after average
pooling to 4x4, 2x2, 1x1 (weights 1, 1/2, 1/4, 1/8, normalised). The shapes come from the probe:
ABF widths from the student's taps, outputs from the teacher's; for every CIFAR pair of the SSKD
tables this equals what dvlab's build_review_kd writes out per architecture. The loss ramps in
over `reviewkd_warmup` epochs (epoch / 20, epochs counted from 1, as mdistiller) and is weighted
by `reviewkd_weight` (per pair as dvlab's scripts); CE weight 1, no KD."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import HParam, LossWeights, Method, MethodError, warmup_factor

MAX_MID_CHANNELS = 512
POOLED_SIZES = (4, 2, 1)


def as_map(f):
    """A tap as an (N, C, H, W) map: the pooled feature (N, C) becomes 1x1."""
    return f if f.dim() == 4 else f[:, :, None, None]


def hcl_loss(preds, targets):
    """Sum over levels of the MSE at full size and at the pooled sizes smaller than the map, with
    weights halving from 1, divided by the sum of the weights used."""
    total = 0.0
    for p, t in zip(preds, targets):
        loss, weight, weights = F.mse_loss(p, t), 1.0, 1.0
        for size in POOLED_SIZES:
            if size >= p.shape[2]:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(p, size), F.adaptive_avg_pool2d(t, size))
            weights += weight
        total = total + loss / weights
    return total


class ABF(nn.Module):
    """One attention-based fusion level: `conv1` (1x1, no bias, BN) to the common width,
    `att_conv` (1x1 with bias over both inputs, sigmoid: two maps) where a deeper level is fused
    in, `conv2` (3x3, no bias, BN) to the teacher's width. The authors' initialisation: Kaiming
    uniform with a=1 on both convolution weights."""

    def __init__(self, in_channels, mid_channels, out_channels, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, deeper=None, size=None, out_size=None):
        """(prediction of the teacher's tap, fused map passed to the next shallower level)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            deeper = F.interpolate(deeper, (size, size), mode="nearest")
            att = self.att_conv(torch.cat([x, deeper], dim=1))
            x = x * att[:, 0:1] + deeper * att[:, 1:2]
        if x.shape[-1] != out_size:
            x = F.interpolate(x, (out_size, out_size), mode="nearest")
        return self.conv2(x), x


def _side(shapes):
    """(channels, square sizes) of the taps feat[1:] (1 for the pooled feature)."""
    taps = shapes[1:]
    return [s[1] for s in taps], [s[2] if len(s) == 4 else 1 for s in taps]


class ReviewKD(Method):
    name = "reviewkd"
    teacher_preact = True   # the student's taps after their ReLU, the teacher's before it
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=1.0)
    hparams = (
        HParam("reviewkd_weight", 1.0, "ReviewKD's loss weight (the authors' --kd-loss-weight); -b multiplies it. "
               "Per pair as dvlab's scripts: 5 for wrn_40_2:wrn_16_2, wrn_40_2:wrn_40_1, wrn_40_2:ShuffleV1, "
               "resnet32x4:resnet8x4 and resnet32x4:ShuffleV1, 8 for resnet32x4:ShuffleV2, 0.6 for "
               "resnet56:resnet20"),
        HParam("reviewkd_warmup", 20, "epochs over which ReviewKD's loss ramps in linearly", "int",
               bounds="positive"),
    )
    pair_defaults = {"reviewkd_weight": {("wrn_40_2", "wrn_16_2"): 5.0, ("wrn_40_2", "wrn_40_1"): 5.0,
                                         ("wrn_40_2", "ShuffleV1"): 5.0, ("resnet32x4", "resnet8x4"): 5.0,
                                         ("resnet32x4", "ShuffleV1"): 5.0, ("resnet32x4", "ShuffleV2"): 8.0,
                                         ("resnet56", "resnet20"): 0.6}}

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        if self.hp["reviewkd_warmup"] < 1:
            raise MethodError(f"--reviewkd-warmup {self.hp['reviewkd_warmup']}: give at least 1 epoch")
        in_channels, self.sizes = _side(ctx.s_shapes)
        out_channels, self.out_sizes = _side(ctx.t_shapes_pre)
        if len(in_channels) != len(out_channels):
            raise MethodError(f"ReviewKD pairs the taps level by level: {ctx.student_arch} has {len(in_channels)}, "
                              f"{ctx.teacher_arch} has {len(out_channels)}")
        mid = min(MAX_MID_CHANNELS, in_channels[-1])
        levels = [ABF(c_in, mid, c_out, fuse=i < len(in_channels) - 1)
                  for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels))]
        self.abfs = nn.ModuleList(levels[::-1])   # abfs.0: the deepest level (the pooled feature), as the authors'

    def predictions(self, student_feats):
        """The ABF predictions of the teacher's taps, shallowest first."""
        taps = [as_map(f) for f in student_feats[1:]][::-1]
        sizes, out_sizes = self.sizes[::-1], self.out_sizes[::-1]
        pred, fused = self.abfs[0](taps[0], out_size=out_sizes[0])
        preds = [pred]
        for tap, abf, size, out_size in zip(taps[1:], self.abfs[1:], sizes[1:], out_sizes[1:]):
            pred, fused = abf(tap, fused, size, out_size)
            preds.insert(0, pred)
        return preds

    def distill_loss(self, s, t, batch, epoch):
        loss = hcl_loss(self.predictions(s.feats), [as_map(f) for f in t.feats[1:]])
        return self.hp["reviewkd_weight"] * warmup_factor(epoch, self.hp["reviewkd_warmup"], loss) * loss
