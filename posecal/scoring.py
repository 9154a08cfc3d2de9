"""Pose-score modes, all computed from the same predictions so they can be compared on equal keypoints."""
from __future__ import annotations

import numpy as np

from posecal.inference import Predictions

MMPOSE_THRESHOLD = 0.2
NOT_LABELLED = 0


def predicted_labelled(pred: Predictions) -> np.ndarray:
    """(N, K) bool: keypoints whose most likely visibility class is not 'not labelled'."""
    return pred.visibility_probs.argmax(-1) != NOT_LABELLED


def pose_scores(pred: Predictions) -> dict[str, np.ndarray]:
    """`heatmap` mean peak; `mmpose` mean of peaks > 0.2; with heads: `oks` (OKS head) and `opks`
    (mean predicted OPKS over keypoints predicted labelled: the expected OKS, since OKS counts only
    labelled keypoints; all keypoints when none is predicted labelled)."""
    hs = pred.heatmap_scores
    above = hs > MMPOSE_THRESHOLD
    modes = {"heatmap": hs.mean(1),
             "mmpose": np.where(above.any(1), (hs * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)}
    if pred.oks is not None:
        modes["oks"] = np.clip(pred.oks, 0.0, 1.0)
        lab = predicted_labelled(pred)
        lab = np.where(lab.any(1, keepdims=True), lab, True)
        modes["opks"] = (pred.opks * lab).sum(1) / lab.sum(1)
    return modes


def keypoint_confidence(pred: Predictions) -> np.ndarray:
    """Per-keypoint confidence written to results: predicted OPKS when the model has heads, else the peak."""
    return pred.opks if pred.opks is not None else pred.heatmap_scores
