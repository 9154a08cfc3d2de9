"""Pose-score modes, all computed from the same predictions so they can be compared on equal keypoints."""
from __future__ import annotations

import numpy as np

from posecal.calibration.quality import DEFAULT_OCCLUDED_OVER_VISIBLE, called_present, occluded_rule
from posecal.inference.topdown import Predictions

MMPOSE_THRESHOLD = 0.2
OCCLUDED, VISIBLE = 1, 2
# `visibility` says occluded only when p(occluded) >= this x p(visible); see visibility_classes. A calibrated
# model carries its own (QualityCalibration.occluded_over_visible, chosen on val when it was packed).
OCCLUDED_OVER_VISIBLE = DEFAULT_OCCLUDED_OVER_VISIBLE


def keypoint_there(visibility_probs=None, keypoint_quality=None, in_frame=None) -> np.ndarray:
    """(..., K) bool: is the keypoint there (visible or occluded)? posecal's one rule, which `visibility` (0 = absent),
    `c` (0 where not there), eval's --drop-unlabelled and the `opks` pose score all follow, so that no reader
    thresholding one of them hides what another calls there: not there when p(absent) > 0.5 unless the keypoint
    quality says the model places it well inside the picture (calibration.quality.called_present). Without a
    visibility head (None): every keypoint."""
    if visibility_probs is None:
        return np.ones(np.shape(keypoint_quality), bool)
    return called_present(np.asarray(visibility_probs, np.float64), keypoint_quality, in_frame)


def predicted_labelled(pred: Predictions) -> np.ndarray:
    """(N, K) bool: the keypoints posecal calls there (keypoint_there)."""
    return keypoint_there(pred.visibility_probs, pred.opks, pred.in_frame)


def visibility_classes(visibility_probs, occluded_over_visible: float = OCCLUDED_OVER_VISIBLE,
                       keypoint_quality=None, in_frame=None) -> np.ndarray:
    """(..., K, C) visibility probabilities -> (..., K) classes: 0 absent / 1 occluded / 2 visible.

    Absent when more likely than not (calibration.quality.occluded_rule: p(absent) > 0.5) and, where the keypoint
    quality (..., K) is given, the model is not sure where the keypoint lies (under PLACED_AT) or, with in_frame
    (..., K), says it lies outside the picture. A present keypoint is occluded only when p(occluded) >=
    occluded_over_visible x p(visible), else visible. Why not the argmax: the visibility head learns with
    class-weighted cross-entropy (losses.visibility_class_weights) and synthetic occluders, so its p(occluded) runs
    high everywhere and the argmax calls far too many keypoints occluded (CHANGELOG). Binary models (C = 2) keep the
    argmax.
    """
    probs = np.asarray(visibility_probs)
    if probs.shape[-1] != 3:
        return probs.argmax(-1)
    return occluded_rule(probs, occluded_over_visible, keypoint_quality, in_frame)


def opks_pose_score(opks: np.ndarray, visibility_probs: np.ndarray, in_frame=None) -> np.ndarray:
    """Mean predicted OPKS over the keypoints called there (keypoint_there; all keypoints when none is), shape
    (..., K) -> (...).

    The expected OKS, since OKS counts only labelled keypoints.
    """
    lab = keypoint_there(visibility_probs, opks, in_frame)
    lab = np.where(lab.any(-1, keepdims=True), lab, True)
    return (opks * lab).sum(-1) / lab.sum(-1)


SCORE_MODES = ("heatmap", "mmpose", "oks", "opks")


def pose_scores(pred: Predictions) -> dict[str, np.ndarray]:
    return pose_scores_of(pred.heatmap_scores, pred.oks, pred.opks, pred.visibility_probs, pred.in_frame)


def pose_scores_of(heatmap_scores: np.ndarray, oks=None, opks=None, visibility_probs=None,
                   in_frame=None) -> dict[str, np.ndarray]:
    """`heatmap` mean peak; `mmpose` mean of peaks > 0.2; with heads: `oks` (OKS head) and `opks`
    (see opks_pose_score). Arrays (..., K) -> (...)."""
    hs = heatmap_scores
    above = hs > MMPOSE_THRESHOLD
    modes = {"heatmap": hs.mean(-1),
             "mmpose": np.where(above.any(-1), (hs * above).sum(-1) / np.maximum(above.sum(-1), 1), 0.0)}
    if oks is not None:
        modes["oks"] = np.clip(oks, 0.0, 1.0)
        modes["opks"] = opks_pose_score(opks, visibility_probs, in_frame)
    return modes


def present_and_right(keypoint_quality, visibility_probs=None, in_frame=None) -> np.ndarray:
    """COCO's third keypoint value `c` as posecal writes it: the keypoint quality where the keypoint is there by
    posecal's one rule (keypoint_there, which `visibility` follows), 0 where not. So c > 0 exactly where
    `visibility` says visible or occluded, and c >= t keeps those of them placed well enough: nobody thresholding c
    draws a keypoint posecal calls absent (a hip below the picture, whose keypoint quality, the expected OPKS of a
    keypoint that is there, could be 0.8), and what it hides beyond them is only what it judges badly placed.
    Without a visibility head: the keypoint quality (or heatmap peak) as it is."""
    kq = np.asarray(keypoint_quality, np.float64)
    if visibility_probs is None:
        return kq
    return np.where(keypoint_there(visibility_probs, kq, in_frame), kq, 0.0)


def keypoint_confidence(pred: Predictions) -> np.ndarray:
    """Per-keypoint `c` written to results (present_and_right); the heatmap peak for models without heads."""
    return pred.heatmap_scores if pred.opks is None else present_and_right(pred.opks, pred.visibility_probs,
                                                                             pred.in_frame)
