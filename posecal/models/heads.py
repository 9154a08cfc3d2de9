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

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """(heatmaps, pose feature F, intermediate heatmaps: none here), the contract of every heatmap head."""
        f4, f8, f16, f32 = pyramid
        x = self.up16(self.reduce(f32), f16)
        x = self.up8(x, f8)
        feature = self.up4(x, f4)
        return self.final(feature), feature, ()


def adaptive_pool(x: torch.Tensor, grid: tuple[int, int], reduce: str) -> torch.Tensor:
    """Adaptive max/avg pooling (PyTorch's bins) written with slices, so it exports to ONNX.

    torch.onnx cannot export adaptive pooling to a grid that does not divide the input; the map size is
    fixed for a given model, so the slices unroll into static ops.
    """
    h, w = x.shape[-2:]
    gh, gw = grid
    if (h, w) == (gh, gw):
        return x
    op = torch.amax if reduce == "max" else torch.mean
    rows = []
    for i in range(gh):
        r0, r1 = (i * h) // gh, -((-(i + 1) * h) // gh)
        cols = [op(x[:, :, r0:r1, (j * w) // gw: -((-(j + 1) * w) // gw)], dim=(2, 3)) for j in range(gw)]
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


def heatmap_statistics(heatmaps: torch.Tensor) -> torch.Tensor:
    """Per-keypoint (peak, spread) of heatmaps (N, K, h, w) -> (N, 2K).

    The peak is the classic confidence; the spread (RMS distance of the positive heatmap mass from its
    centroid, as a fraction of the map diagonal) says how sharply the evidence is localised. Both are read
    by the quality heads' FC layers directly, so they need not rediscover them through strided convolutions.
    """
    n, k, h, w = heatmaps.shape
    peak = heatmaps.amax(dim=(2, 3))
    mass = torch.relu(heatmaps).flatten(2)
    p = mass / mass.sum(-1, keepdim=True).clamp(min=1e-6)
    ys = torch.arange(h, dtype=heatmaps.dtype, device=heatmaps.device).repeat_interleave(w)
    xs = torch.arange(w, dtype=heatmaps.dtype, device=heatmaps.device).repeat(h)
    mx, my = (p * xs).sum(-1, keepdim=True), (p * ys).sum(-1, keepdim=True)
    var = (p * ((xs - mx) ** 2 + (ys - my) ** 2)).sum(-1)
    spread = torch.sqrt(var + 1e-6) / ((h * h + w * w) ** 0.5)
    return torch.cat([peak, spread], 1)


class ChannelAttention(nn.Module):
    """OKS-Net channel attention: global max-pool -> FC -> ReLU -> FC -> sigmoid, rescaling the channels."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(torch.amax(x, dim=(2, 3)))
        return x * w[:, :, None, None]


class QualityTrunk(nn.Module):
    """Shared shape of the OKS and OPKS heads: attention, three stride-2 conv-BN-ReLU, flatten.

    Pooled to a fixed grid so the FC layers do not depend on the input size. The first conv is narrow
    because it runs at the largest resolution, where almost all of the head's FLOPs are.
    """

    def __init__(self, in_channels: int, widths=(16, 32, 32), grid=(3, 3)):
        super().__init__()
        self.attention = ChannelAttention(in_channels)
        layers, c = [], in_channels
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            c = width
        self.convs = nn.Sequential(*layers)
        self.grid = grid
        self.out_features = c * grid[0] * grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_pool(self.convs(self.attention(x)), self.grid, "avg").flatten(1)


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class OksHead(nn.Module):
    """OKS-Net: predicted OKS of the pose (one value per person; trained with hard-mined L1).

    `x` is the pose feature map, `stats` optional per-person features (here: heatmap_statistics).
    """

    def __init__(self, in_channels: int, hidden: int = 256, stats_features: int = 0):
        super().__init__()
        self.trunk = QualityTrunk(in_channels)
        self.fc = _mlp((self.trunk.out_features + stats_features, hidden, hidden, 1))

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(_with_stats(self.trunk(x), stats))[:, 0]


class OpksHead(nn.Module):
    """HPCVNet: predicted OPKS per keypoint; returns logits (sigmoid gives the expected OPKS)."""

    def __init__(self, in_channels: int, num_keypoints: int = 17, hidden: int = 256, stats_features: int = 0):
        super().__init__()
        self.trunk = QualityTrunk(in_channels)
        self.fc = _mlp((self.trunk.out_features + stats_features, hidden, hidden, num_keypoints))

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(_with_stats(self.trunk(x), stats))


class VisibilityHead(nn.Module):
    """Visibility metamodel: bottleneck residual block -> 1x1 conv-BN -> max-pool -> FC stack -> K x classes.

    classes = 3 (not labelled / occluded / visible) or 2 (binary labelled-vs-not mode). The residual block is a
    1x1-3x3-1x1 bottleneck (the paper's 3x3-1x1-3x3 costs 8x more at this width), the FC stack is smaller than
    the paper's 4096-2048-1024 and the map is pooled to a fixed grid, all for CPU speed.
    """

    def __init__(self, in_channels: int, num_keypoints: int = 17, num_classes: int = 3, width: int = 16,
                 grid=(6, 5), hidden: int = 256, stats_features: int = 0, bottleneck: int = 24):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, bottleneck, 1, bias=False), nn.BatchNorm2d(bottleneck), nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False), nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck, in_channels, 1, bias=False), nn.BatchNorm2d(in_channels))
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.grid = grid
        self.fc = _mlp((width * grid[0] * grid[1] + stats_features, hidden, hidden, num_keypoints * num_classes))
        self.num_keypoints, self.num_classes = num_keypoints, num_classes

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.relu(x + self.block(x))
        pooled = adaptive_pool(self.reduce(x), self.grid, "max")
        logits = self.fc(_with_stats(pooled.flatten(1), stats))
        return logits.view(-1, self.num_keypoints, self.num_classes)


def _with_stats(features: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
    return features if stats is None else torch.cat([features, stats], 1)
