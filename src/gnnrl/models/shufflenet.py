"""ShuffleNet-v1 (Zhang et al. 2018) and ShuffleNet-v2 (Ma et al. 2018) with CIFAR stems (no max-pool)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenet import conv_bn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels of `groups` groups: N×(g·k)×H×W → view N×g×k×H×W → transpose → flatten."""
    n, c, h, w = x.size()
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnitV1(nn.Module):
    """Grouped 1×1 → shuffle → depthwise 3×3 → grouped 1×1; add (stride 1) or concat with avg-pooled input."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        branch_out = out_ch - in_ch if stride == 2 else out_ch
        mid = out_ch // 4
        g1 = 1 if in_ch == 24 else groups  # the first unit's input (the stem) is too narrow to group
        self.conv1 = nn.Conv2d(in_ch, mid, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.shuffle_groups = g1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.shuffle_groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(out + x)


class ShuffleNetV1(nn.Module):
    """ShuffleNet-v1 with g groups (default 3: widths 240/480/960), stages of 4/8/4 units."""

    WIDTHS: ClassVar[dict[int, tuple[int, int, int]]] = {
        1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536),
    }

    def __init__(self, num_classes: int = 10, groups: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        units: list[nn.Module] = []
        c = 24
        for out, n in zip(self.WIDTHS[groups], (4, 8, 4), strict=True):
            for i in range(n):
                units.append(ShuffleUnitV1(c, out, 2 if i == 0 else 1, groups))
                c = out
        self.stages = nn.Sequential(*units)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.adaptive_avg_pool2d(self.stages(out), 1).flatten(1)
        return self.linear(out)


class ShuffleUnitV2(nn.Module):
    """Stride 1: split channels, transform one half, concat, shuffle. Stride 2: two branches, concat, shuffle."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        mid = out_ch // 2
        if stride == 2:
            self.branch1 = nn.Sequential(*conv_bn(in_ch, in_ch, 3, 2, groups=in_ch), *conv_bn(in_ch, mid, 1),
                                         nn.ReLU(inplace=True))
        b2_in = in_ch if stride == 2 else mid
        self.branch2 = nn.Sequential(*conv_bn(b2_in, mid, 1), nn.ReLU(inplace=True),
                                     *conv_bn(mid, mid, 3, stride, groups=mid), *conv_bn(mid, mid, 1),
                                     nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet-v2 1.0×: 3×3 stem (24), stages 116/232/464 of 4/8/4 units, 1×1 conv to 1024, pool, linear."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = (116, 232, 464, 1024)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*conv_bn(3, 24, 3), nn.ReLU(inplace=True))
        units: list[nn.Module] = []
        c = 24
        for out, n in zip(widths[:3], (4, 8, 4), strict=True):
            for i in range(n):
                units.append(ShuffleUnitV2(c, out, 2 if i == 0 else 1))
                c = out
        self.stages = nn.Sequential(*units)
        self.conv5 = nn.Sequential(*conv_bn(c, widths[3], 1), nn.ReLU(inplace=True))
        self.linear = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv5(self.stages(self.conv1(x)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
