"""OKS and per-keypoint OPKS exactly as pycocotools' COCOeval.computeOks defines them.

KS_i = exp(-d_i^2 / (2 s^2 kappa_i^2)), kappa_i = 2 sigma_i, s^2 = area (+ eps, as pycocotools adds
np.spacing(1)); OKS = mean of KS_i over labelled GT keypoints (v > 0).
"""
from __future__ import annotations

import numpy as np

from posecal.skeleton import COCO_SIGMAS

EPS = np.spacing(1)


def opks(pred_xy: np.ndarray, gt_xy: np.ndarray, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Per-keypoint OKS terms, shape (..., K), for predictions and GT of shape (..., K, 2) and area (...)."""
    kappa2 = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((np.asarray(pred_xy, dtype=np.float64) - np.asarray(gt_xy, dtype=np.float64)) ** 2).sum(-1)
    area = np.asarray(area, dtype=np.float64)[..., None]
    return np.exp(-d2 / kappa2 / (area + EPS) / 2)


def oks(pred_xy, gt_xy, gt_vis, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Pose OKS (...) over labelled keypoints; NaN where the GT has no labelled keypoint."""
    ks = opks(pred_xy, gt_xy, area, sigmas)
    labelled = np.asarray(gt_vis) > 0
    n = labelled.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (ks * labelled).sum(-1) / np.maximum(n, 1), np.nan)

