"""Online targets for the quality heads: the current prediction, decoded as at test time, scored against the GT.

The target is the OKS / OPKS that the model's *own* current prediction achieves, so the heads learn to
predict the quality of exactly what the decoder outputs (OKS-Net, HPCVNet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posecal.metrics.oks import opks


@dataclass
class QualityTargets:
    oks: torch.Tensor        # (N,) OKS of the decoded pose over labelled keypoints (0 if none labelled)
    opks: torch.Tensor       # (N, K) OPKS of each decoded keypoint
    labelled: torch.Tensor   # (N, K) bool: GT v > 0 (OPKS and OKS are defined there only)
    visibility: torch.Tensor  # (N, K) long: GT v in {0, 1, 2}


def online_targets(pred: np.ndarray, gt_keypoints: torch.Tensor, area: torch.Tensor) -> QualityTargets:
    """pred (N, K, 2): the model's decoded keypoints, as it decodes them at test time; GT keypoints (N, K, 3)
    and areas (N,); all in input-crop pixels."""
    gt = gt_keypoints.numpy().astype(np.float64)
    ks = opks(pred, gt[..., :2], area.numpy().astype(np.float64))
    labelled = gt[..., 2] > 0
    oks = (ks * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
    return QualityTargets(oks=torch.from_numpy(oks).float(), opks=torch.from_numpy(ks).float(),
                          labelled=torch.from_numpy(labelled), visibility=torch.from_numpy(gt[..., 2]).long())
