"""TopDownEstimator = backbone + heads, by plain composition."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posecal.models.efficientnet_lite import EfficientNetLite0, load_imagenet
from posecal.models.heads import HeatmapHead


@dataclass
class PoseOutput:
    heatmaps: torch.Tensor          # (N, K, H/4, W/4)
    feature: torch.Tensor           # shared pose feature F (N, C, H/4, W/4) for the quality heads


class TopDownEstimator(nn.Module):
    def __init__(self, backbone: nn.Module, heatmap_head: HeatmapHead):
        super().__init__()
        self.backbone = backbone
        self.heatmap_head = heatmap_head

    def forward(self, images: torch.Tensor) -> PoseOutput:
        heatmaps, feature = self.heatmap_head(self.backbone.forward_pyramid(images))
        return PoseOutput(heatmaps=heatmaps, feature=feature)


def build_estimator(head_widths=(128, 128, 64), num_keypoints: int = 17, imagenet: bool = True) -> TopDownEstimator:
    backbone = EfficientNetLite0()
    if imagenet:
        load_imagenet(backbone)
    head = HeatmapHead(backbone.PYRAMID_CHANNELS, tuple(head_widths), num_keypoints)
    return TopDownEstimator(backbone, head)
