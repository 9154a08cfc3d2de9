"""Online targets for the quality heads: decode the current heatmaps, score them against the GT.

The target is the OKS / OPKS that the model's *own* current prediction achieves, so the heads learn to
predict the quality of exactly what the decoder outputs (OKS-Net, HPCVNet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posecal.codec.heatmap import decode
from posecal.data.topdown import heatmap_to_input
from posecal.metrics.oks import opks


@dataclass
class QualityTargets:
    oks: torch.Tensor        # (N,) OKS of the decoded pose over labelled keypoints (0 if none labelled)
    opks: torch.Tensor       # (N, K) OPKS of each decoded keypoint
    labelled: torch.Tensor   # (N, K) bool: GT v > 0 (OPKS and OKS are defined there only)
    visibility: torch.Tensor  # (N, K) long: GT v in {0, 1, 2}


def heatmaps_to_input_xy(heatmaps: np.ndarray, method: str = "dark") -> np.ndarray:
    xy_hm, _ = decode(heatmaps, method)
    return heatmap_to_input(xy_hm)


def online_targets(heatmaps: np.ndarray, gt_keypoints: torch.Tensor, area: torch.Tensor,
                   method: str = "dark") -> QualityTargets:
    """heatmaps (N, K, h, w) of the crops; GT keypoints (N, K, 3) and areas (N,) in input-crop pixels."""
    pred = heatmaps_to_input_xy(heatmaps, method)
    gt = gt_keypoints.numpy().astype(np.float64)
    ks = opks(pred, gt[..., :2], area.numpy().astype(np.float64))
    labelled = gt[..., 2] > 0
    oks = (ks * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
    return QualityTargets(oks=torch.from_numpy(oks).float(), opks=torch.from_numpy(ks).float(),
                          labelled=torch.from_numpy(labelled), visibility=torch.from_numpy(gt[..., 2]).long())
