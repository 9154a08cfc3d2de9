"""Trust-guided fusion: the trust model's predicted keypoint quality picks, per keypoint, which of several
candidate keypoints to report (issue 30).

Why: a pose network's gross errors (a wrist on the wrong arm, a knee on the other leg, a joint on a passer-by)
are where its keypoints lose OKS, and another estimate often has that joint right. The trust model judges any
keypoint set on the crop (posecal.models.trust.network), so it can say which candidate to believe. Measured on
val (822 persons, GT boxes; `python bench/fusion_candidates.py`, on MoveNet as published): picking the better
candidate per keypoint by true OPKS (the oracle) would lift Thunder's AP from 48.4 to 54.9 with the flip test's
two passes as candidates and to 58.4 with the `fast` network's keypoints, so much is there to take. Picking by the
trust model's predicted OPKS takes a part of it, and only with a margin: the candidate replaces the current
keypoint when its OPKS logit is higher by more than the margin (the trust model tells right from grossly wrong
well, close from closer less well, so a small lead is noise that costs Thunder's precision).

The candidates, in the order they are tried:
1. MoveNet's keypoints as shipped (the flip test's two passes merged, posecal.codec.movenet.merge_flip);
2. the crop's pass alone and 3. the mirror's pass alone (free: the flip test computed them; model.fusion);
4. with model.second_opinion: posecal's `fast` pose network (EfficientNet-Lite0 + heatmap head, trained here) on
   the same crop resized to 192x192, with its own flip test and arg-max decode (SecondOpinion).
On the published network, 2-3 gave val AP 48.4 -> 50.0 and 4 50.4 (+37 % per crop). On the fine-tuned network
that `accurate` ships since, they give 53.1 and 52.8 against its 53.3, so no fusing model ships
(MODEL_CARD.md); posecal.models.assemble builds one from the shipped parts.
Without the flip test there is one candidate of MoveNet's, and a model without a second opinion reports
MoveNet's keypoints unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from posecal.codec.heatmap import decode_argmax_torch, flip_back
from posecal.models.backbones import EfficientNetLite
from posecal.models.heads import HeatmapHead

SECOND_OPINION_INPUT = 192     # the second opinion's square input side (its heatmaps: 48 x 48)
HEATMAP_STRIDE = 4
# Logit margins a candidate must lead the current pick by (candidates 2-3: the flip passes; 4: the second
# opinion). Chosen on val with the published network, with 2-fold cross-checking (split by image: the margins
# chosen on one half gave +1.8 and +1.9 AP on the other; MODEL_CARD.md).
PASS_MARGIN = 0.5
SECOND_OPINION_MARGIN = 2.0
# The fused pose's quality: the trust model's judgement of the fused pose, blended with its judgement of MoveNet's
# own pose. Why: the pick used the same judge, so where it chose a candidate the judge overrated, the judgement of
# the fused pose is overrated too (the winner's curse); the unfused pose's judgement is free of that. On val
# (pose Pearson with the fused pose's true OKS / AP), with the second opinion: MoveNet's pose alone 0.784 / 50.4,
# fused alone 0.810 / 50.3, this blend 0.820 / 50.4; the flip passes only: fused alone 0.863 / 50.0, this blend
# 0.861 / 50.0 (unfused MoveNet: 0.876 / 48.4).
FUSED_POSE_WEIGHT = 0.7


class SecondOpinion(nn.Module):
    """posecal's `fast` pose network as a fusion candidate: keypoints in the pixels of the crops it is given."""

    def __init__(self, num_keypoints: int = 17, head_widths=(128, 128, 64)):
        super().__init__()
        self.backbone = EfficientNetLite(0)
        self.heatmap_head = HeatmapHead(self.backbone.PYRAMID_CHANNELS, tuple(head_widths), num_keypoints)

    def forward(self, images: torch.Tensor, flip_test: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, 3, H, W) posecal-normalised crops -> keypoints (N, K, 2) in those crops' pixels and their
        heatmap peak values (N, K)."""
        h, w = images.shape[-2:]
        x = F.interpolate(images, size=(SECOND_OPINION_INPUT, SECOND_OPINION_INPUT), mode="bilinear",
                          align_corners=False)
        if flip_test:
            n = x.shape[0]
            both = self.heatmap_head(self.backbone.forward_pyramid(torch.cat([x, torch.flip(x, dims=[3])])))[0]
            maps = 0.5 * (both[:n] + flip_back(both[n:]))
        else:
            maps = self.heatmap_head(self.backbone.forward_pyramid(x))[0]
        cells, peaks = decode_argmax_torch(maps)
        scale = torch.tensor([w / SECOND_OPINION_INPUT, h / SECOND_OPINION_INPUT], dtype=cells.dtype,
                             device=cells.device)
        return (cells + 0.5) * HEATMAP_STRIDE * scale - 0.5, peaks


def fuse_by_trust(logits: torch.Tensor, margins) -> torch.Tensor:
    """Per keypoint, which candidate to report: logits (C, N, K) the trust model's OPKS logits of C candidates;
    margins: C - 1 numbers, candidate c's lead needed over the pick so far (c = 1..C-1; candidate 0 is the
    first pick). Candidates are tried in order. Returns the chosen index (N, K), int64."""
    choice = torch.zeros(logits.shape[1:], dtype=torch.int64, device=logits.device)
    best = logits[0]
    for c in range(1, logits.shape[0]):
        take = logits[c] - best > margins[c - 1]
        choice = torch.where(take, torch.full_like(choice, c), choice)
        best = torch.where(take, logits[c], best)
    return choice


def pick(values: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """values (C, N, K, ...) -> (N, K, ...): each keypoint's value from its chosen candidate."""
    index = choice[None].reshape(1, *choice.shape, *([1] * (values.dim() - 3)))
    return values.gather(0, index.expand(1, *values.shape[1:]))[0]


def fused_pose_quality(fused: torch.Tensor, unfused: torch.Tensor) -> torch.Tensor:
    """Predicted pose OKS of a fused pose from the trust model's judgements of it and of the unfused pose."""
    return FUSED_POSE_WEIGHT * fused + (1 - FUSED_POSE_WEIGHT) * unfused
