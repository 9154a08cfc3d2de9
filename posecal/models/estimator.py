"""TopDownEstimator = backbone + heads, by plain composition."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posecal.codec import flip_back
from posecal.errors import PosecalInputError
from posecal.models.backbones import EfficientNetLite, load_imagenet
from posecal.models.heads import HeatmapHead, OksHead, OpksHead, VisibilityHead, heatmap_statistics


@dataclass
class PoseOutput:
    heatmaps: torch.Tensor                 # (N, K, H/4, W/4)
    feature: torch.Tensor                  # shared pose feature F (N, C, H/4, W/4)
    oks: torch.Tensor | None = None        # (N,) predicted pose OKS
    opks_logits: torch.Tensor | None = None  # (N, K) sigmoid -> predicted OPKS per keypoint
    vis_logits: torch.Tensor | None = None   # (N, K, classes) visibility logits


class TopDownEstimator(nn.Module):
    """Backbone -> heatmap head; the quality heads read F plus the (detached) heatmaps.

    The heatmaps tell the quality heads how peaked each keypoint's evidence is; detaching them keeps the
    quality losses from bending the heatmaps themselves. The heads run at stride 8 (2x2 max-pool of the
    stride-4 map), which keeps their cost a few percent of the pose network's, and also get each keypoint's
    heatmap peak and spread computed at full resolution.
    """

    def __init__(self, backbone: nn.Module, heatmap_head: HeatmapHead, oks_head: OksHead | None = None,
                 opks_head: OpksHead | None = None, visibility_head: VisibilityHead | None = None):
        super().__init__()
        self.backbone = backbone
        self.heatmap_head = heatmap_head
        self.oks_head = oks_head
        self.opks_head = opks_head
        self.visibility_head = visibility_head

    @property
    def has_quality_heads(self) -> bool:
        return self.oks_head is not None

    def forward(self, images: torch.Tensor, flip_test: bool = False) -> PoseOutput:
        """flip_test: heatmaps are the mean of the crop's and its mirror's (one batch of 2N), and the quality
        heads read those merged heatmaps, whose peaks and spreads also show where the two passes disagree."""
        out = self.forward_flip_test(images) if flip_test else self.forward_pose(images)
        return self.forward_heads(out) if self.has_quality_heads else out

    def forward_flip_test(self, images: torch.Tensor) -> PoseOutput:
        n = images.shape[0]
        both = self.forward_pose(torch.cat([images, torch.flip(images, dims=[3])]))
        merged = 0.5 * (both.heatmaps[:n] + flip_back(both.heatmaps[n:]))
        return PoseOutput(heatmaps=merged, feature=both.feature[:n])

    def forward_pose(self, images: torch.Tensor) -> PoseOutput:
        """Backbone and heatmap head only (the frozen part in strategy S3)."""
        heatmaps, feature = self.heatmap_head(self.backbone.forward_pyramid(images))
        return PoseOutput(heatmaps=heatmaps, feature=feature)

    def forward_heads(self, out: PoseOutput) -> PoseOutput:
        heatmaps = out.heatmaps.detach()
        x = torch.nn.functional.max_pool2d(torch.cat([out.feature, heatmaps], 1), 2)
        stats = heatmap_statistics(heatmaps)
        out.oks = self.oks_head(x, stats)
        out.opks_logits = self.opks_head(x, stats)
        out.vis_logits = self.visibility_head(x, stats)
        return out


BACKBONES = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}  # model.backbone -> variant


def build_estimator(head_widths=(128, 128, 64), num_keypoints: int = 17, imagenet: bool = True,
                    quality_heads: bool = False, visibility_classes: int = 3, head_hidden: int = 256,
                    backbone: str = "efficientnet_lite0") -> TopDownEstimator:
    if backbone not in BACKBONES:
        raise PosecalInputError(f"model.backbone: unknown backbone {backbone!r} "
                                f"(expected one of {', '.join(BACKBONES)})")
    net = EfficientNetLite(BACKBONES[backbone])
    if imagenet:
        load_imagenet(net)
    head = HeatmapHead(net.PYRAMID_CHANNELS, tuple(head_widths), num_keypoints)
    if not quality_heads:
        return TopDownEstimator(net, head)
    c, s = head.feature_channels + num_keypoints, 2 * num_keypoints
    return TopDownEstimator(net, head, OksHead(c, head_hidden, s), OpksHead(c, num_keypoints, head_hidden, s),
                            VisibilityHead(c, num_keypoints, visibility_classes, hidden=head_hidden,
                                           stats_features=s))
