"""RepDistiller's CIFAR MobileNetV2 (`mobile_half`: expansion 6, width 0.5). Stride-2 stem,
expansion conv even when t = 1, 1280-wide last conv, taps from block groups 1, 2, 4, 6; `preact`
is ignored. Keys follow RepDistiller (`classifier.0.*`); SSKD's
`classifier.*` layout is mapped by models.weights."""
import torch.nn as nn

from .common import init_fan_out_normal


def _conv_bn_relu(c_in, c_out, kernel, stride):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    # (expansion, channels, blocks, stride); expansion None means "use T"
    SETTING = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
               (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]

    def __init__(self, expansion=6, width_mult=0.5, num_classes=100, input_size=32):
        super().__init__()
        c_in = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, c_in, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in self.SETTING:
            c_out = int(c * width_mult)
            group = []
            for stride in [s] + [1] * (n - 1):
                group.append(InvertedResidual(c_in, c_out, stride, expansion if t is None else t))
                c_in = c_out
            self.blocks.append(nn.Sequential(*group))
        self.feat_dim = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(c_in, self.feat_dim, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.feat_dim, num_classes))
        self.avgpool = nn.AvgPool2d(input_size // 16, ceil_mode=True)
        init_fan_out_normal(self, linear_std=0.01)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def get_bn_before_relu(self):
        return [self.blocks[g][-1].conv[-1] for g in (1, 2, 4, 6)]

    def forward(self, x, is_feat=False, preact=False):
        out = self.conv1(x)
        feats = [out]
        for g, group in enumerate(self.blocks):
            out = group(out)
            if g in (1, 2, 4, 6):
                feats.append(out)
        out = self.avgpool(self.conv2(out)).flatten(1)
        feats.append(out)
        logits = self.classifier(out)
        return (feats, logits) if is_feat else logits


BUILDERS = {"MobileNetV2": MobileNetV2}
