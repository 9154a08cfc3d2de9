"""How alike a new pose and a track are: OKS over the keypoints both trust, box IoU where too few are
trusted, and colours (the tracker pairs them one-to-one by the Hungarian method: tracker.py).

Why OKS over the keypoints predicted present only: a keypoint predicted absent is a guess, and a guess that lands
on the neighbour would pull the match towards them. Box IoU is the fallback for small
or mostly hidden people, where fewer than MIN_SHARED keypoints are trusted in both poses.
"""
from __future__ import annotations

import cv2
import numpy as np

from posecal.metrics.boxes import box_iou
from posecal.metrics.oks import opks

MIN_SHARED = 3


# Keypoint quality from which a keypoint counts in the association, for models that predict no visibility.
NO_VISIBILITY_QUALITY = 0.3


def trusted(keypoint_quality: np.ndarray, visibility: np.ndarray | None) -> np.ndarray:
    """(K,) bool: the keypoints that count in the association: those the model predicts present (visibility 1 or
    2), or, for a model that predicts no visibility, those of quality >= NO_VISIBILITY_QUALITY. Occluded keypoints
    count: keeping only visible ones, or adding a quality floor, won IDF1 on the tracking bench's tuning scenes
    and lost it on its held-out scenes (docs/tracking.md)."""
    if visibility is None:
        return np.asarray(keypoint_quality) >= NO_VISIBILITY_QUALITY
    return np.asarray(visibility) > 0


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


HIST_BINS = (16, 8)      # hue x saturation


def colour_histogram(image_bgr: np.ndarray, box) -> np.ndarray | None:
    """The person's colours: a normalised hue-saturation histogram (HIST_BINS) of the box's centre (the middle
    60 % of its width, 10 % to 90 % of its height: mostly the person, little background), or None when that
    region is empty or outside the image."""
    h, w = image_bgr.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0, x1 = int(max(x + 0.2 * bw, 0)), int(min(x + 0.8 * bw, w))
    y0, y1 = int(max(y + 0.1 * bh, 0)), int(min(y + 0.9 * bh, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image_bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256]).reshape(-1)
    total = hist.sum()
    return hist / total if total > 0 else None


def appearance_similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two normalised histograms in [0, 1] (1 = same colours); 0.5 when unknown."""
    if a is None or b is None:
        return 0.5
    return float(np.sqrt(np.asarray(a) * np.asarray(b)).sum())


def reid_scores(pred_boxes, new_boxes, max_distance: np.ndarray, max_scale: float) -> np.ndarray:
    """(T, N) nearness in [0, 1] of new boxes to where lost tracks are predicted to be: 1 - (centre distance /
    (max_distance x the predicted box height)), or -inf beyond it or when the heights differ by more than a
    factor max_scale. max_distance is per track (T,): a track lost longer is looked for farther."""
    p, n = np.asarray(pred_boxes, float).reshape(-1, 4), np.asarray(new_boxes, float).reshape(-1, 4)
    pc, nc = p[:, :2] + p[:, 2:] / 2, n[:, :2] + n[:, 2:] / 2
    hp = np.maximum(p[:, 3], 1.0)[:, None]
    d = np.linalg.norm(pc[:, None] - nc[None], axis=-1) / (np.asarray(max_distance, float)[:, None] * hp)
    ratio = np.maximum(n[None, :, 3], 1.0) / hp
    ok = (d <= 1) & (ratio <= max_scale) & (ratio >= 1 / max_scale)
    return np.where(ok, 1 - d, -np.inf)
