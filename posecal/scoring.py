"""Pose-score modes, all computed from the same predictions so they can be compared on equal keypoints."""
from __future__ import annotations

import numpy as np

from posecal.inference import Predictions

MMPOSE_THRESHOLD = 0.2
NOT_LABELLED = 0


def predicted_labelled(pred: Predictions) -> np.ndarray:
    """(N, K) bool: keypoints whose most likely visibility class is not 'not labelled'."""
    return pred.visibility_probs.argmax(-1) != NOT_LABELLED


def opks_pose_score(opks: np.ndarray, visibility_probs: np.ndarray) -> np.ndarray:
    """Mean predicted OPKS over keypoints predicted labelled (all keypoints when none is), shape (..., K) -> (...).

    The expected OKS, since OKS counts only labelled keypoints.
    """
    lab = visibility_probs.argmax(-1) != NOT_LABELLED
    lab = np.where(lab.any(-1, keepdims=True), lab, True)
    return (opks * lab).sum(-1) / lab.sum(-1)


SCORE_MODES = ("heatmap", "mmpose", "oks", "opks")


def pose_scores(pred: Predictions) -> dict[str, np.ndarray]:
    return pose_scores_of(pred.heatmap_scores, pred.oks, pred.opks, pred.visibility_probs)


def pose_scores_of(heatmap_scores: np.ndarray, oks=None, opks=None, visibility_probs=None) -> dict[str, np.ndarray]:
    """`heatmap` mean peak; `mmpose` mean of peaks > 0.2; with heads: `oks` (OKS head) and `opks`
    (see opks_pose_score). Arrays (..., K) -> (...)."""
    hs = heatmap_scores
    above = hs > MMPOSE_THRESHOLD
    modes = {"heatmap": hs.mean(-1),
             "mmpose": np.where(above.any(-1), (hs * above).sum(-1) / np.maximum(above.sum(-1), 1), 0.0)}
    if oks is not None:
        modes["oks"] = np.clip(oks, 0.0, 1.0)
        modes["opks"] = opks_pose_score(opks, visibility_probs)
    return modes


def keypoint_confidence(pred: Predictions) -> np.ndarray:
    """Per-keypoint confidence written to results: predicted OPKS when the model has heads, else the peak."""
    return pred.opks if pred.opks is not None else pred.heatmap_scores
