"""ImageNet backbones for SimReg, as feature extractors: torchvision's ResNet-18 / ResNet-50 /
MobileNet-v2 with the classifier removed (so torchvision-named weights map 1:1), the width-x4
ResNet-50 of SimCLR (every width x4: stem 256, outputs 1024/2048/4096/8192), and BYOL's ResNet-50
with TensorFlow "SAME" padding. Pooled feature dims 512 / 2048 / 1280 / 8192 / 2048.

They share the CIFAR models' call convention: `forward(x)` returns the pooled feature and
`forward(x, is_feat=True)` returns `([pooled], pooled)`, so distillation code treats all alike."""
import math
from functools import partial

import torch.nn as nn
import torch.nn.functional as F
import torchvision


class _FeatureForward:
    """Mixin: the pooled feature is both the only tap and the output."""

    def forward(self, x, is_feat=False, preact=False):
        f = self.features_of(x)
        return ([f], f) if is_feat else f


class ResNetBackbone(_FeatureForward, torchvision.models.ResNet):
    def __init__(self, block, layers, width=1):
        super().__init__(block, layers)
        if width != 1:
            self._widen(block, layers, width)
        self.fc = nn.Identity()
        self.feat_dim = 512 * block.expansion * width

    def _widen(self, block, layers, width):
        """Rebuild stem and stages with every width multiplied (SimCLR's ResNet-50 (4x))."""
        self.inplanes = 64 * width
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.layer1 = self._make_layer(block, 64 * width, layers[0])
        self.layer2 = self._make_layer(block, 128 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512 * width, layers[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features_of(self, x):
        return self._forward_impl(x)


class MobileNetV2Backbone(_FeatureForward, torchvision.models.MobileNetV2):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Identity()
        self.feat_dim = self.last_channel

    def features_of(self, x):
        return torch_flatten_pool(self.features(x))


def torch_flatten_pool(x):
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def same_padding(size, kernel, stride):
    """TensorFlow 'SAME': output ceil(n / s); total pad max((out - 1) s + k - n, 0), extra at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    def forward(self, x):
        top, bottom = same_padding(x.shape[2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(x.shape[3], self.kernel_size[1], self.stride[1])
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


class MaxPool2dSame(nn.MaxPool2d):
    def forward(self, x):
        top, bottom = same_padding(x.shape[2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[3], self.kernel_size, self.stride)
        return F.max_pool2d(F.pad(x, (left, right, top, bottom)), self.kernel_size, self.stride)


def byol_resnet50():
    """torchvision ResNet-50 names and shapes, every conv and the stem max-pool with TF 'SAME'
    padding (zero), as BYOL's Haiku network and SimReg's models/resnet_byol.py."""
    net = ResNetBackbone(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3])
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                same = Conv2dSame(child.in_channels, child.out_channels, child.kernel_size, child.stride, 0,
                                  child.dilation, child.groups, child.bias is not None)
                same.weight = child.weight
                setattr(parent, name, same)
            elif type(child) is nn.MaxPool2d:
                setattr(parent, name, MaxPool2dSame(child.kernel_size, child.stride))
    return net


_Basic, _Bottleneck = torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck
BACKBONES = {
    "resnet18": partial(ResNetBackbone, _Basic, [2, 2, 2, 2]),
    "resnet50": partial(ResNetBackbone, _Bottleneck, [3, 4, 6, 3]),
    "resnet50x4": partial(ResNetBackbone, _Bottleneck, [3, 4, 6, 3], 4),
    "mobilenet_v2": MobileNetV2Backbone,
    "byol_resnet50": byol_resnet50,
}
