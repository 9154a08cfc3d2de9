"""OKS and per-keypoint OPKS exactly as pycocotools' COCOeval.computeOks defines them.

KS_i = exp(-d_i^2 / (2 s^2 kappa_i^2)), kappa_i = 2 sigma_i, s^2 = area (+ eps, as pycocotools adds
np.spacing(1)); OKS = mean of KS_i over labelled GT keypoints (v > 0).
"""
from __future__ import annotations

import numpy as np

from posecal.skeleton import COCO_SIGMAS, flip_permutation

EPS = np.spacing(1)


def opks(pred_xy: np.ndarray, gt_xy: np.ndarray, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Per-keypoint OKS terms, shape (..., K), for predictions and GT of shape (..., K, 2) and area (...)."""
    kappa2 = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((np.asarray(pred_xy, dtype=np.float64) - np.asarray(gt_xy, dtype=np.float64)) ** 2).sum(-1)
    area = np.asarray(area, dtype=np.float64)[..., None]
    return np.exp(-d2 / kappa2 / (area + EPS) / 2)


# A person's OKS area (COCO's segmentation area) per unit of box area: the median on COCO val2017's persons is 0.50.
AREA_PER_BOX = 0.5


def moved_opks(quality, moved2, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Expected OPKS (..., K) of keypoints moved by a known offset (squared length moved2, (..., K), pixels^2) away
    from where their expected OPKS was `quality`: q * exp(-q * d^2 / (2 s^2 kappa^2)).

    Exact when a keypoint's error is an isotropic 2-D Gaussian of variance sigma^2: then q = c^2 / (c^2 + sigma^2)
    with c = s * kappa, and moving the keypoint by d gives E[KS] = c^2 / (c^2 + sigma^2) * exp(-d^2 / (2 (c^2 +
    sigma^2))). A tracker's smoothing moves keypoints it reports away from what the trust model judged (behind a
    moving person, by a few pixels); this says what that costs without a map fitted on some room's speeds."""
    q = np.clip(np.asarray(quality, np.float64), 0.0, 1.0)
    kappa2 = (2 * np.asarray(sigmas, np.float64)) ** 2
    c2 = kappa2 * (np.asarray(area, np.float64)[..., None] + EPS)
    return q * np.exp(-q * np.asarray(moved2, np.float64) / (2 * c2))


def oks(pred_xy, gt_xy, gt_vis, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Pose OKS (...) over labelled keypoints; NaN where the GT has no labelled keypoint."""
    ks = opks(pred_xy, gt_xy, area, sigmas)
    labelled = np.asarray(gt_vis) > 0
    n = labelled.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (ks * labelled).sum(-1) / np.maximum(n, 1), np.nan)


def oks_either_side(pred_xy, gt_xy, gt_vis, area, sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """The OKS against the labels or against the same labels with left and right exchanged, whichever is higher.

    Why: crowd-sourced labels often give the viewer's sides, not the person's (LSPET's Mechanical Turk labels;
    bench/results/lspet_sides.txt). A benchmark on such labels prints this beside the OKS, so that a label's swap
    is told apart from the pose's; it forgives a pose's own swap too, so it is a bound, never a figure to report
    alone."""
    gt_xy, gt_vis = np.asarray(gt_xy), np.asarray(gt_vis)
    mirror = flip_permutation(gt_xy.shape[-2])
    return np.fmax(oks(pred_xy, gt_xy, gt_vis, area, sigmas),
                   oks(pred_xy, gt_xy[..., mirror, :], gt_vis[..., mirror], area, sigmas))
