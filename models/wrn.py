"""Wide ResNets (pre-activation) of RepDistiller: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.
Stage taps are the raw residual stream; `preact=True` passes them through the BatchNorm that
consumes them next."""
from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from .common import init_fan_out_normal


class PreActBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = c_in == c_out
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(
            c_in, c_out, 1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # a width-changing block projects the *activated* input; otherwise the raw input is added
        shortcut = x if self.equal_in_out else self.convShortcut(activated)
        return shortcut + out


class NetworkBlock(nn.Module):
    def __init__(self, n_blocks, c_in, c_out, stride, drop_rate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            PreActBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, drop_rate)
            for i in range(n_blocks)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen_factor, num_classes=100, drop_rate=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)
        self.feat_dim = ch[3]
        init_fan_out_normal(self)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        out = self.relu(self.bn1(f3))
        # the reference flattens with view(-1, C), which silently changes the batch size for
        # non-32x32 inputs; flatten(1) fails loudly instead
        f4 = F.avg_pool2d(out, 8).flatten(1)
        logits = self.fc(f4)
        if not is_feat:
            return logits
        if preact:
            # as the reference: re-run the consuming BNs (in train mode this updates their
            # running statistics a second time)
            f1 = self.block2.layer[0].bn1(f1)
            f2 = self.block3.layer[0].bn1(f2)
            f3 = self.bn1(f3)
        return [f0, f1, f2, f3, f4], logits


BUILDERS = {f"wrn_{d}_{k}": partial(WideResNet, d, k) for d in (16, 40) for k in (1, 2)}
