"""Which new pose continues which track: OKS over the keypoints both trust, box IoU where too few are
trusted, one-to-one by the Hungarian method (scipy.optimize.linear_sum_assignment).

Why OKS over trusted keypoints only: a keypoint predicted absent or with low predicted quality is a guess,
and a guess that lands on the neighbour would pull the match towards them. Box IoU is the fallback for small
or mostly hidden people, where fewer than MIN_SHARED keypoints are trusted in both poses.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from posecal.metrics.oks import opks

MIN_SHARED = 3


def trusted(keypoint_quality: np.ndarray, visibility: np.ndarray | None, min_quality: float) -> np.ndarray:
    """(K,) bool: predicted present (visibility > 0, when the model predicts it) with quality >= min_quality."""
    ok = np.asarray(keypoint_quality) >= min_quality
    return ok if visibility is None else ok & (np.asarray(visibility) > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of x, y, w, h boxes."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    union = a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def similarity(prev_xy, prev_trust, prev_boxes, new_xy, new_trust, new_boxes) -> np.ndarray:
    """(T, N) similarity in [0, 1]: OKS over mutually trusted keypoints (area = the previous box's area x
    0.53, COCO's mean segment-to-box ratio), or box IoU where fewer than MIN_SHARED keypoints are shared."""
    prev_xy, new_xy = np.asarray(prev_xy, float), np.asarray(new_xy, float)
    iou = box_iou(prev_boxes, new_boxes)
    if len(prev_xy) == 0 or len(new_xy) == 0:
        return iou
    shared = np.asarray(prev_trust)[:, None] & np.asarray(new_trust)[None]           # (T, N, K)
    area = 0.53 * np.asarray(prev_boxes, float)[:, 2:].prod(-1)
    ks = opks(prev_xy[:, None], new_xy[None], area[:, None])                         # (T, N, K)
    n = shared.sum(-1)
    oks = (ks * shared).sum(-1) / np.maximum(n, 1)
    return np.where(n >= MIN_SHARED, oks, iou)


def match(sim: np.ndarray, min_similarity: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching maximising total similarity; pairs below min_similarity are not matches.
    Returns (pairs (row, col), unmatched rows, unmatched cols)."""
    sim = np.asarray(sim, float)
    rows, cols = linear_sum_assignment(-sim) if sim.size else (np.zeros(0, int), np.zeros(0, int))
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if sim[r, c] >= min_similarity]
    matched_r, matched_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(sim.shape[0]) if r not in matched_r],
            [c for c in range(sim.shape[1]) if c not in matched_c])
