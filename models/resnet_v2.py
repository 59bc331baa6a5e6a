"""ImageNet-style ResNets adapted to 32x32 CIFAR input (RepDistiller's resnetv2.py): 3x3 stem,
no max-pool, adaptive average pool, classifier named `linear`. ResNet50 is in the registry;
ResNet18/34/101 are built by the same file in the reference and are offered too."""
from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from .common import Stage, init_kaiming, tap_outputs


def _projection(c_in, c_out, stride):
    if stride == 1 and c_in == c_out:
        return nn.Sequential()  # identity, no keys
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                         nn.BatchNorm2d(c_out))


class BasicBlockV2(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(c_in, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(preact), preact


class BottleneckV2(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _projection(c_in, planes * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        preact = self.bn3(self.conv3(out)) + self.shortcut(x)
        return F.relu(preact), preact


class ResNetV2(nn.Module):
    def __init__(self, block, n_blocks, num_classes=100):
        super().__init__()
        self._c_in = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_stage(block, 64, n_blocks[0], 1)
        self.layer2 = self._make_stage(block, 128, n_blocks[1], 2)
        self.layer3 = self._make_stage(block, 256, n_blocks[2], 2)
        self.layer4 = self._make_stage(block, 512, n_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feat_dim = 512 * block.expansion
        self.linear = nn.Linear(self.feat_dim, num_classes)
        init_kaiming(self)

    def _make_stage(self, block, planes, n, stride):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(block(self._c_in, planes, s))
            self._c_in = planes * block.expansion
        return Stage(*blocks)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4])

    def get_bn_before_relu(self):
        last_bn = "bn3" if isinstance(self.layer1[0], BottleneckV2) else "bn2"
        return [getattr(stage[-1], last_bn) for stage in (self.layer1, self.layer2, self.layer3, self.layer4)]

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = self.layer1(f0)
        f2, f2_pre = self.layer2(f1)
        f3, f3_pre = self.layer3(f2)
        f4, f4_pre = self.layer4(f3)
        f5 = self.avgpool(f4).flatten(1)
        logits = self.linear(f5)
        return tap_outputs(logits, is_feat, preact, [f0, f1, f2, f3, f4, f5], [f0, f1_pre, f2_pre, f3_pre, f4_pre, f5])


BUILDERS = {"ResNet50": partial(ResNetV2, BottleneckV2, [3, 4, 6, 3])}
UNREGISTERED = {
    "ResNet18": partial(ResNetV2, BasicBlockV2, [2, 2, 2, 2]),
    "ResNet34": partial(ResNetV2, BasicBlockV2, [3, 4, 6, 3]),
    "ResNet101": partial(ResNetV2, BottleneckV2, [3, 4, 23, 3]),
}
