"""Stacked Hourglass (Newell et al. 2016), 2 or 8 stacks, as in princeton-vl/pytorch_stacked_hourglass.

Module names reproduce that repository's `PoseNet` state_dict (`pre`, `hgs.i.0.up1/low1/low2/low3`,
`features`, `outs`, `merge_features`, `merge_preds`; convolutions wrapped as `<name>.conv` with an optional
`<name>.bn`), so its checkpoints map onto `backbone.*` by prefix alone (posecal/models/official/key_map.py). As there,
every Residual owns a `skip_layer` even when it is unused (in == out channels): the keys must exist for a strict
load, and they cost nothing at run time.

Input layout: NCHW like every posecal network. The reference `forward` takes NHWC RGB in [0, 1] and permutes it,
so its input `x_nhwc` corresponds to `forward_pose(x_nhwc.permute(0, 3, 1, 2))` here; its output
(N, stacks, K, H/4, W/4) is `heatmaps` (the last stack) plus `intermediate_heatmaps` (the earlier ones, which
training supervises too). Upsampling goes to the skip branch's size rather than by a fixed factor, so sizes
that are not multiples of 64 work; at multiples of 64 the two are the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_CHANNELS = 256   # the reference `inp_dim`
DEPTH = 4                # hourglass recursion levels


class ConvUnit(nn.Module):
    """The reference's `Conv`: conv (with bias) [+ BN] [+ ReLU]; keys `conv.*` and `bn.*`."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = False, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1 (out/2), BN-ReLU-conv3x3, BN-ReLU-conv1x1 (out), plus skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = ConvUnit(cin, mid, 1, relu=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = ConvUnit(mid, mid, 3, relu=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = ConvUnit(mid, cout, 1, relu=False)
        self.skip_layer = ConvUnit(cin, cout, 1, relu=False)
        self.need_skip = cin != cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.skip_layer(x) if self.need_skip else x
        y = self.conv1(self.relu(self.bn1(x)))
        y = self.conv2(self.relu(self.bn2(y)))
        y = self.conv3(self.relu(self.bn3(y)))
        return y + residual


class Hourglass(nn.Module):
    """One hourglass level: an upper Residual at this resolution plus pool -> Residual -> (next level or a
    Residual) -> Residual -> upsample, summed."""

    def __init__(self, levels: int, channels: int):
        super().__init__()
        self.up1 = Residual(channels, channels)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.low1 = Residual(channels, channels)
        self.low2 = Hourglass(levels - 1, channels) if levels > 1 else Residual(channels, channels)
        self.low3 = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up1 = self.up1(x)
        low = self.low3(self.low2(self.low1(self.pool1(x))))
        return up1 + F.interpolate(low, size=up1.shape[-2:], mode="nearest")


class Merge(nn.Module):
    """1x1 conv that feeds a stack's features or heatmaps into the next stack (keys `conv.conv.*`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvUnit(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class StackedHourglass(nn.Module):
    """`stacks` hourglasses to stride 4, each predicting heatmaps that the next stack reads back.

    `forward_pyramid` returns [last stack's feature (256 ch), heatmaps of stack 0, ..., of the last stack]:
    the heatmaps are computed inside the trunk (the stacks feed on them), and StackedHeatmapsHead only sorts
    them into final and intermediate.
    """

    def __init__(self, stacks: int = 8, num_keypoints: int = 17, channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.stacks = stacks
        self.pre = nn.Sequential(ConvUnit(3, 64, 7, 2, bn=True, relu=True), Residual(64, 128), nn.MaxPool2d(2, 2),
                                 Residual(128, 128), Residual(128, channels))
        self.hgs = nn.ModuleList(nn.Sequential(Hourglass(DEPTH, channels)) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(channels, channels), ConvUnit(channels, channels, 1, bn=True, relu=True))
            for _ in range(stacks))
        self.outs = nn.ModuleList(ConvUnit(channels, num_keypoints, 1, relu=False) for _ in range(stacks))
        self.merge_features = nn.ModuleList(Merge(channels, channels) for _ in range(stacks - 1))
        self.merge_preds = nn.ModuleList(Merge(num_keypoints, channels) for _ in range(stacks - 1))
        self.PYRAMID_CHANNELS = (channels,)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pre(x)
        preds = []
        for i in range(self.stacks):
            feature = self.features[i](self.hgs[i](x))
            preds.append(self.outs[i](feature))
            if i < self.stacks - 1:
                x = x + self.merge_preds[i](preds[-1]) + self.merge_features[i](feature)
        return [feature, *preds]


class StackedHeatmapsHead(nn.Module):
    """No weights: the last stack's heatmaps are the output, the earlier stacks' are intermediate supervision."""

    def __init__(self, feature_channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.feature_channels = feature_channels

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        feature, *preds = pyramid
        return preds[-1], feature, tuple(preds[:-1])
