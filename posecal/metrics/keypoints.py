"""Keypoint-level metrics: mAPK (keypoint AP) and the Ronchi & Perona error breakdown.

mAPK rule used here (after Guesdon et al. 2021): for each keypoint type, every predicted keypoint (one per
person, or only those kept by --drop-unlabelled) is ranked by its confidence. At a KS threshold t it is a
true positive when its GT keypoint is labelled (v > 0) and KS >= t, else a false positive (predictions on
unlabelled GT keypoints are false positives). The number of positives is the number of labelled GT keypoints
of that type, so a dropped labelled keypoint is a false negative. AP is COCO's 101-point interpolated
precision; it is averaged over t = 0.50:0.05:0.95, then over keypoint types.
"""
from __future__ import annotations

import numpy as np

from posecal.metrics.oks import opks
from posecal.skeleton import COCO_KEYPOINTS, flip_permutation

THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
RECALL_POINTS = np.linspace(0, 1, 101)


def average_precision(confidence, is_tp, num_positives: int) -> float:
    """COCO-style 101-point interpolated AP of a ranked list."""
    if num_positives == 0:
        return float("nan")
    if len(confidence) == 0:
        return 0.0
    order = np.argsort(-np.asarray(confidence), kind="mergesort")
    tp = np.asarray(is_tp, bool)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / num_positives
    precision = ctp / np.maximum(ctp + cfp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(q.mean())


def mapk(ks: np.ndarray, confidence: np.ndarray, gt_labelled: np.ndarray, keep: np.ndarray | None = None) -> dict:
    """ks, confidence, gt_labelled: (N, K); keep: (N, K) bool of predictions that are reported."""
    keep = np.ones_like(gt_labelled, bool) if keep is None else keep
    per_type = {}
    for k, name in enumerate(COCO_KEYPOINTS[: ks.shape[1]]):
        sel = keep[:, k]
        aps = [average_precision(confidence[sel, k], gt_labelled[sel, k] & (ks[sel, k] >= t),
                                 int(gt_labelled[:, k].sum())) for t in THRESHOLDS]
        per_type[name] = float(np.nanmean(aps)) * 100 if not np.all(np.isnan(aps)) else float("nan")
    vals = [v for v in per_type.values() if not np.isnan(v)]
    return {"per_keypoint": per_type, "mean": float(np.mean(vals)) if vals else float("nan")}


def error_breakdown(pred_xy: np.ndarray, gt: np.ndarray, area: np.ndarray) -> dict:
    """Counts of good (KS >= .85) / jitter (.5-.85) / inversion / miss per keypoint type, labelled GT only.

    Inversion: KS < .5 but KS >= .5 against the mirrored joint of the same person (left<->right).
    Swaps (confusion with another person) need the other people's annotations, which single-person
    crops do not carry, so they are not counted here (reported as 0).
    """
    ks = opks(pred_xy, gt[..., :2], area)
    perm = flip_permutation(gt.shape[1])
    ks_inv = opks(pred_xy, gt[:, perm, :2], area)
    inv_labelled = gt[:, perm, 2] > 0
    labelled = gt[..., 2] > 0
    good = labelled & (ks >= 0.85)
    jitter = labelled & (ks >= 0.5) & (ks < 0.85)
    inversion = labelled & (ks < 0.5) & inv_labelled & (ks_inv >= 0.5) & (perm != np.arange(len(perm)))
    miss = labelled & ~good & ~jitter & ~inversion
    out = {}
    for k, name in enumerate(COCO_KEYPOINTS[: gt.shape[1]]):
        out[name] = {"good": int(good[:, k].sum()), "jitter": int(jitter[:, k].sum()),
                     "inversion": int(inversion[:, k].sum()), "swap": 0, "miss": int(miss[:, k].sum())}
    out["total"] = {key: sum(v[key] for v in out.values()) for key in ("good", "jitter", "inversion", "swap", "miss")}
    return out
