"""Heads on the backbone's features. Each is a separate module usable with any backbone."""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout))


class _UpBlock(nn.Module):
    """Deconvolution x2 (SimpleBaseline) plus a lateral 1x1 from the backbone at the new resolution."""

    def __init__(self, cin: int, cout: int, lateral_channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.lateral = _conv_bn(lateral_channels, cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.deconv(x))
        # Odd input sizes (e.g. 144 px -> 9 at stride 16, 5 at stride 32) give one extra row/column.
        y = y[:, :, : skip.shape[2], : skip.shape[3]]
        return self.act(y + self.lateral(skip))


class HeatmapHead(nn.Module):
    """SimpleBaseline-style deconvolution head with FPN laterals, stride 32 -> stride 4.

    The laterals give the stride-4 output fine detail from the backbone at small cost, which matters
    at the small CPU input sizes posecal uses. Returns (heatmaps, pose feature F at stride 4).
    """

    def __init__(self, in_channels=(24, 40, 112, 1280), widths=(128, 128, 64), num_keypoints: int = 17):
        super().__init__()
        c4, c8, c16, c32 = in_channels
        w16, w8, w4 = widths
        self.reduce = nn.Sequential(_conv_bn(c32, w16), nn.ReLU(inplace=True))
        self.up16 = _UpBlock(w16, w16, c16)
        self.up8 = _UpBlock(w16, w8, c8)
        self.up4 = _UpBlock(w8, w4, c4)
        self.final = nn.Conv2d(w4, num_keypoints, 1)
        self.feature_channels = w4
        self._init_weights()

    def _init_weights(self) -> None:
        # SimpleBaseline init: without it the head sits on the all-zero heatmap plateau for a long time.
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f4, f8, f16, f32 = pyramid
        x = self.up16(self.reduce(f32), f16)
        x = self.up8(x, f8)
        feature = self.up4(x, f4)
        return self.final(feature), feature
