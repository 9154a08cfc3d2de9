"""HRNet-W32 / W48 (Sun et al. 2019), pose configuration of the reference repository.

Module names reproduce the reference `pose_hrnet` state_dict exactly (stem `conv1/bn1/conv2/bn2`, `layer1`,
`transitionK`, `stageK.M.branches/fuse_layers`, and the 1x1 `final_layer`), so a published checkpoint maps onto
`backbone.*` plus `heatmap_head.final_layer.*` by prefix alone (posecal/models/official/key_map.py). Keys that the
reference leaves out also stay out here: transitions that keep the channel count are `None` and the last module
(only the stride-4 output is used) has only `fuse_layers.0`.

One deliberate difference that does not touch the weights: the fuse step upsamples to the target branch's size
instead of by a fixed factor, so input sizes that are not multiples of 32 (posecal's 144x192) also work; at the
reference sizes both give the same nearest-neighbour result.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posecal.models.backbones.resnet import BN_MOMENTUM, BasicBlock, Bottleneck

# every stage's branches are 4 BasicBlocks (the reference yaml); branch b has width * 2**b channels
STAGE_MODULES = (1, 4, 3)   # modules in stages 2, 3, 4
BLOCKS_PER_BRANCH = 4


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    mods = [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]
    return nn.Sequential(*mods, nn.ReLU(inplace=True)) if relu else nn.Sequential(*mods)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output branch sums all inputs brought to its resolution.

    fuse_layers[i][j] (j != i) brings branch j to branch i: 1x1 conv + BN then upsampling when j > i, a chain of
    stride-2 3x3 conv + BN (ReLU between) when j < i; the `None` at j == i keeps the key numbering of the
    reference. `multi_scale_output=False` keeps only output branch 0.
    """

    def __init__(self, channels: tuple[int, ...], multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(BLOCKS_PER_BRANCH))) for c in channels)
        fuse = []
        for i in range(n if multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:
                    row.append(_conv_bn(channels[j], channels[i], 1, 1, relu=False))
                elif j == i:
                    row.append(None)
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(channels[j], channels[i], 3, 2, relu=False)))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = None
            for j, layer in enumerate(row):  # summed in the reference's order (branch 0 first)
                if j > i:
                    term = F.interpolate(layer(xs[j]), size=xs[i].shape[-2:], mode="nearest")
                else:
                    term = xs[j] if j == i else layer(xs[j])
                y = term if y is None else y + term
            out.append(self.relu(y))
        return out


class HRNet(nn.Module):
    """HRNet trunk; `forward_pyramid` returns [the stride-4 branch], channels PYRAMID_CHANNELS."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256, momentum=BN_MOMENTUM))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, 1, downsample), *(Bottleneck(256, 64) for _ in range(3)))
        c = (width, 2 * width, 4 * width, 8 * width)   # channels per branch
        modules2, modules3, modules4 = STAGE_MODULES
        # Attribute names are the reference's state_dict names; (transition, stage) pairs run in order.
        self.transition1, self.stage2 = self._transition((256,), c[:2]), self._stage(c[:2], modules2)
        self.transition2, self.stage3 = self._transition(c[:2], c[:3]), self._stage(c[:3], modules3)
        self.transition3, self.stage4 = self._transition(c[:3], c), self._stage(c, modules4, last=True)
        self.PYRAMID_CHANNELS = (width,)

    @staticmethod
    def _stage(channels: tuple[int, ...], modules: int, last: bool = False) -> nn.Sequential:
        """`modules` HighResolutionModules; the network's last module keeps only the stride-4 output."""
        return nn.Sequential(*(HighResolutionModule(channels, multi_scale_output=not (last and m == modules - 1))
                               for m in range(modules)))

    @staticmethod
    def _transition(previous: tuple[int, ...], channels: tuple[int, ...]) -> nn.ModuleList:
        """Existing branches change width with a 3x3 conv (or are kept: None); a new branch comes from the
        lowest-resolution one by a stride-2 3x3 conv, nested one Sequential deeper as in the reference."""
        layers: list[nn.Module | None] = []
        for i, c in enumerate(channels):
            if i < len(previous):
                layers.append(None if previous[i] == c else _conv_bn(previous[i], c, 3, 1, relu=True))
            else:
                layers.append(nn.Sequential(_conv_bn(previous[-1], c, 3, 2, relu=True)))
        return nn.ModuleList(layers)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        ys = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # existing branches from their own output, a new branch from the lowest-resolution one
            xs = [ys[i] if layer is None else layer(ys[min(i, len(ys) - 1)]) for i, layer in enumerate(transition)]
            ys = stage(xs)
        return [ys[0]]


class FinalLayerHead(nn.Module):
    """HRNet's head: a 1x1 conv from the stride-4 branch (the pose feature F) to the heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int = 17):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)
        self.feature_channels = in_channels
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        feature = pyramid[-1]
        return self.final_layer(feature), feature, ()
