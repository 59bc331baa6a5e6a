"""CIFAR VGGs of RepDistiller. Registry names vgg8 ... vgg19 are the BatchNorm variants; the
BN-free ones are offered as vgg*_nobn. The last ReLU of each block is applied in `forward`, so that
pre-ReLU taps exist."""
from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from .common import init_fan_out_normal

CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def _make_block(widths, c_in, batch_norm):
    layers = []
    for c_out in widths:
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))  # bias kept even with BN
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
    return nn.Sequential(*layers[:-1])  # last ReLU is applied in forward


class VGG(nn.Module):
    def __init__(self, cfg, batch_norm=True, num_classes=100):
        super().__init__()
        c_in = [3] + [widths[-1] for widths in cfg[:-1]]
        self.block0 = _make_block(cfg[0], c_in[0], batch_norm)
        self.block1 = _make_block(cfg[1], c_in[1], batch_norm)
        self.block2 = _make_block(cfg[2], c_in[2], batch_norm)
        self.block3 = _make_block(cfg[3], c_in[3], batch_norm)
        self.block4 = _make_block(cfg[4], c_in[4], batch_norm)
        self.pool0 = nn.MaxPool2d(2, 2)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.pool3 = nn.MaxPool2d(2, 2)  # used only for 64x64 inputs, as the reference
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(512, num_classes)
        self.feat_dim = 512
        init_fan_out_normal(self, conv_bias=True, linear_std=0.01)

    def get_feat_modules(self):
        return nn.ModuleList([self.block0, self.pool0, self.block1, self.pool1, self.block2,
                              self.pool2, self.block3, self.pool3, self.block4, self.pool4])

    def get_bn_before_relu(self):
        return [self.block1[-1], self.block2[-1], self.block3[-1], self.block4[-1]]

    def forward(self, x, is_feat=False, preact=False):
        use_pool3 = x.shape[2] == 64
        f0 = F.relu(self.block0(x))
        pre, post = [], []
        out = self.pool0(f0)
        for i, (block, pool) in enumerate(((self.block1, self.pool1), (self.block2, self.pool2),
                                           (self.block3, self.pool3), (self.block4, None))):
            out = block(out)
            pre.append(out)
            out = F.relu(out)
            post.append(out)
            if pool is not None and (i < 2 or use_pool3):
                out = pool(out)
        f5 = self.pool4(out).flatten(1)
        logits = self.classifier(f5)
        if not is_feat:
            return logits
        return [f0, *(pre if preact else post), f5], logits


BUILDERS = {name: partial(VGG, cfg, True) for name, cfg in CONFIGS.items()}
UNREGISTERED = {f"{name}_nobn": partial(VGG, cfg, False) for name, cfg in CONFIGS.items()}
