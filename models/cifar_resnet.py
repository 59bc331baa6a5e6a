"""CIFAR ResNets of RepDistiller / SSKD: resnet8 ... resnet110, resnet8x4, resnet32x4 and SSKD's thin
variants. Module names, registration order and initialisation follow the reference so that its
checkpoints load strictly."""
from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from .common import Stage, init_kaiming, tap_outputs


def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus shortcut, then ReLU. Returns (output, pre-ReLU sum)."""

    def __init__(self, c_in, c_out, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = out + shortcut
        return F.relu(preact), preact


class CifarResNet(nn.Module):
    def __init__(self, depth, widths, num_classes=100):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n_blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self._c_in = widths[0]
        self.layer1 = self._make_stage(widths[1], n_blocks, 1)
        self.layer2 = self._make_stage(widths[2], n_blocks, 2)
        self.layer3 = self._make_stage(widths[3], n_blocks, 2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(widths[3], num_classes)
        self.feat_dim = widths[3]
        init_kaiming(self)

    def _make_stage(self, c_out, n_blocks, stride):
        downsample = None
        if stride != 1 or self._c_in != c_out:  # 1x1 projection ("option B")
            downsample = nn.Sequential(
                nn.Conv2d(self._c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out))
        blocks = [BasicBlock(self._c_in, c_out, stride, downsample)]
        blocks += [BasicBlock(c_out, c_out) for _ in range(1, n_blocks)]
        self._c_in = c_out
        return Stage(*blocks)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        return [self.layer1[-1].bn2, self.layer2[-1].bn2, self.layer3[-1].bn2]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = self.layer1(f0)
        f2, f2_pre = self.layer2(f1)
        f3, f3_pre = self.layer3(f2)
        f4 = self.avgpool(f3).flatten(1)
        logits = self.fc(f4)
        return tap_outputs(logits, is_feat, preact, [f0, f1, f2, f3, f4], [f0, f1_pre, f2_pre, f3_pre, f4])


_PLAIN = [16, 16, 32, 64]
_X4 = [32, 64, 128, 256]  # stem 2x, stages 4x

BUILDERS = {f"resnet{d}": partial(CifarResNet, d, _PLAIN) for d in (8, 14, 20, 32, 44, 56, 110)}
BUILDERS.update({
    "resnet8x4": partial(CifarResNet, 8, _X4),
    "resnet32x4": partial(CifarResNet, 32, _X4),
    # SSKD's thin students
    "resnet14x05": partial(CifarResNet, 14, [8, 8, 16, 32]),
    "resnet20x05": partial(CifarResNet, 20, [8, 8, 16, 32]),
    "resnet20x0375": partial(CifarResNet, 20, [6, 6, 12, 24]),
})
