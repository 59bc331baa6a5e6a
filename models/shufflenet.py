"""ShuffleNet v1 (groups 3) and v2 (1x) of RepDistiller, adapted to 32x32 input with a 1x1 stem.
Pre-activation taps follow the reference exactly, including ShuffleV2's unshuffled pre taps."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Stage, tap_outputs


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(x, self.groups)


class V1Bottleneck(nn.Module):
    """Group conv - shuffle - depthwise (with ReLU, as the reference) - group conv.
    Stride 2 concatenates an average-pooled shortcut, stride 1 adds the identity."""

    def __init__(self, c_in, c_branch, stride, groups):
        super().__init__()
        self.stride = stride
        mid = int(c_branch / 4)
        g = 1 if c_in == 24 else groups  # the very first block sees the 24-channel stem
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shuffle1 = ShuffleBlock(g)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_branch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c_branch)
        self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)) if stride == 2 else nn.Sequential()

    def forward(self, x):
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        preact = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return F.relu(preact), preact


class ShuffleNetV1(nn.Module):
    def __init__(self, out_planes=(240, 480, 960), n_blocks=(4, 8, 4), groups=3, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        c_in = 24
        stages = []
        for c_out, n in zip(out_planes, n_blocks):
            blocks = []
            for i in range(n):
                stride = 2 if i == 0 else 1
                c_branch = c_out - c_in if i == 0 else c_out  # stride-2 blocks concatenate
                blocks.append(V1Bottleneck(c_in, c_branch, stride, groups))
                c_in = c_out
            stages.append(Stage(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.feat_dim = out_planes[2]
        self.linear = nn.Linear(out_planes[2], num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError("ShuffleNet currently is not supported for \"Overhaul\" teacher")

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = self.layer1(f0)
        f2, f2_pre = self.layer2(f1)
        f3, f3_pre = self.layer3(f2)
        f4 = F.avg_pool2d(f3, 4).flatten(1)
        logits = self.linear(f4)
        return tap_outputs(logits, is_feat, preact, [f0, f1, f2, f3, f4], [f0, f1_pre, f2_pre, f3_pre, f4])


class V2BasicBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, stride=1, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)
        self.shuffle = ShuffleBlock(2)

    def forward(self, x):
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        branch_pre = self.bn3(self.conv3(out))
        out = self.shuffle(torch.cat([x1, F.relu(branch_pre)], 1))
        # the reference's pre tap is the concatenation *without* the channel shuffle
        return out, torch.cat([x1, branch_pre], 1)


class V2DownBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        mid = c_out // 2
        self.conv1 = nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv2 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ShuffleBlock(2)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, out_channels=(116, 232, 464, 1024), n_blocks=(3, 7, 3), num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        c_in = 24
        stages = []
        for c_out, n in zip(out_channels[:3], n_blocks):
            stages.append(Stage(V2DownBlock(c_in, c_out), *[V2BasicBlock(c_out) for _ in range(n)]))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], 1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.feat_dim = out_channels[3]
        self.linear = nn.Linear(out_channels[3], num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError("ShuffleNetV2 currently is not supported for \"Overhaul\" teacher")

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = self.layer1(f0)
        f2, f2_pre = self.layer2(f1)
        f3, f3_pre = self.layer3(f2)
        out = F.relu(self.bn2(self.conv2(f3)))
        f4 = F.avg_pool2d(out, 4).flatten(1)
        logits = self.linear(f4)
        return tap_outputs(logits, is_feat, preact, [f0, f1, f2, f3, f4], [f0, f1_pre, f2_pre, f3_pre, f4])


BUILDERS = {"ShuffleV1": ShuffleNetV1, "ShuffleV2": ShuffleNetV2}
