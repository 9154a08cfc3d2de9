"""SimpleBaseline (Xiao et al. 2018): a ResNet-18/50/101/152 and three 4x4 deconvolutions to stride 4.

Module names follow torchvision's ResNet (`conv1`, `bn1`, `layer1..4`, `downsample.0/1`, no `avgpool`/`fc`) and
the SimpleBaseline head (`deconv_layers.{0,1,3,4,6,7}`, `final_layer`), so the published `pose_resnet_*`
state_dicts map onto `backbone.*` / `heatmap_head.*` by prefix alone (posecal/models/official/key_map.py). The stride
sits on the 3x3 conv of each Bottleneck (torchvision v1.5), as in the published checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.1


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + residual)


# depth -> (block, blocks per stage)
DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
          101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}


class ResNet(nn.Module):
    """ResNet trunk to stride 32. `forward_pyramid` returns [C5] only: the SimpleBaseline head upsamples that
    one map (no laterals), which is what makes the published weights usable unchanged."""

    def __init__(self, depth: int = 50):
        super().__init__()
        block, counts = DEPTHS[depth]
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.inplanes = 64
        self.layer1 = self._stage(block, 64, counts[0], 1)
        self.layer2 = self._stage(block, 128, counts[1], 2)
        self.layer3 = self._stage(block, 256, counts[2], 2)
        self.layer4 = self._stage(block, 512, counts[3], 2)
        self.PYRAMID_CHANNELS = (512 * block.expansion,)

    def _stage(self, block, planes: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return [x]


class DeconvHead(nn.Module):
    """SimpleBaseline head: 3 x (ConvTranspose 4x4 s2, BN, ReLU) with 256 channels, then a 1x1 conv.

    The pose feature F is the last deconvolution's output (256 channels at stride 4). Returns
    (heatmaps, F, no intermediate heatmaps) like every heatmap head.
    """

    def __init__(self, in_channels: int, num_keypoints: int = 17, width: int = 256, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods += [nn.ConvTranspose2d(in_channels, width, 4, stride=2, padding=1, output_padding=0, bias=False),
                     nn.BatchNorm2d(width, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
            in_channels = width
        self.deconv_layers = nn.Sequential(*mods)
        self.final_layer = nn.Conv2d(width, num_keypoints, 1)
        self.feature_channels = width
        for m in self.modules():  # SimpleBaseline init (matters when training from scratch)
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        feature = self.deconv_layers(pyramid[-1])
        return self.final_layer(feature), feature, ()
