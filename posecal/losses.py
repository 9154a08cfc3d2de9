"""Training losses."""
from __future__ import annotations

import torch


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-keypoint-weighted MSE (unlabelled or out-of-crop keypoints do not count), as in SimpleBaseline."""
    w = weight[:, :, None, None]
    return 0.5 * ((pred - target) ** 2 * w).mean()
