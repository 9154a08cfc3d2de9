"""Conditional calibration: keypoint and pose quality calibrated on what posecal knows at run time.

Why: the per-keypoint isotonic maps (posecal.calibration.quality) are calibrated on their fitting mixture's average
and off wherever a person is not like it; a person cut by the frame reads low everywhere. What tells such a person
apart is known at run time, so a logistic recalibration on those covariates follows the isotonic maps.

Covariates of a keypoint (KEYPOINT_COVARIATES): the logit of the isotonic quality (weight held >= 0, so the order
never flips); how many box sides touch the picture's edge, and its product with the logit; the keypoint's signed
distance to the nearest edge over the person's scale, clipped; for a box touching the edge only, its aspect
log(h / w), its product with the logit and logit p(not labelled) (inside the picture a detector's box shape would
move quality for no reason); whether the box touches the top, and the bottom edge.

Pose quality (POSE_COVARIATES): logit(out) = logit(isotonic pose quality) + weights · (sides touching the edge, and
its product with the logit), the logit a fixed offset with no bias, so a person inside the picture keeps the
isotonic pose quality exactly (reshaping it cost LSPET more than it gained on the mixture).

Fitted by cross-entropy against the true OPKS / OKS as soft targets (posecal.calibration.maps.fit_logistic).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.calibration.in_frame import in_frame_features
from posecal.calibration.maps import LogisticScore, fit_logistic

FORMAT = "posecal-conditional-quality/1"
KEYPOINT_COVARIATES = ("logit_quality", "edges_touched", "edges_touched_x_logit", "edge_distance",
                       "log_aspect_at_edge", "log_aspect_x_logit_at_edge", "logit_absent_at_edge", "top_edge",
                       "bottom_edge")
KEYPOINT_SIGNS = (1, 0, 0, 0, 0, 0, 0, 0, 0)
POSE_COVARIATES = ("edges_touched", "edges_touched_x_logit")      # offset: logit of the pose quality
POSE_SIGNS = (0, 0)
# a box side within this many pixels of the picture's edge (or past it) touches the edge
EDGE_TOLERANCE = 1.0
QUALITY_CLIP = 1e-3


def edges_touched(boxes, image_wh) -> np.ndarray:
    """(N, 4) bool: does the (x, y, w, h) box reach the picture's left, top, right, bottom edge (within
    EDGE_TOLERANCE pixels, or past it)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    wh = np.asarray(image_wh, np.float64).reshape(-1, 2)
    return np.stack([b[:, 0] <= EDGE_TOLERANCE, b[:, 1] <= EDGE_TOLERANCE,
                     b[:, 0] + b[:, 2] >= wh[:, 0] - EDGE_TOLERANCE,
                     b[:, 1] + b[:, 3] >= wh[:, 1] - EDGE_TOLERANCE], 1)


def _logit(q) -> np.ndarray:
    q = np.clip(np.asarray(q, np.float64), QUALITY_CLIP, 1 - QUALITY_CLIP)
    return np.log(q / (1 - q))


def keypoint_covariates(opks, visibility_probs, keypoints, boxes, image_wh) -> np.ndarray:
    """(N, K, 9) covariates (KEYPOINT_COVARIATES) of N persons: isotonic-calibrated keypoint quality (N, K),
    calibrated visibility probabilities (N, K, 3), keypoints (N, K, 2) and boxes (N, 4) in image pixels, and
    each person's picture size image_wh (N, 2)."""
    lq = _logit(opks)
    touch = edges_touched(boxes, image_wh)
    n_edges = np.broadcast_to(touch.sum(1, dtype=np.float64)[:, None], lq.shape)
    at_edge = n_edges > 0
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    aspect = np.log(np.maximum(b[:, 3], 1.0) / np.maximum(b[:, 2], 1.0))[:, None] * at_edge
    logit_absent, edge = np.moveaxis(in_frame_features(visibility_probs, keypoints, boxes, image_wh), -1, 0)
    top = np.broadcast_to(touch[:, 1:2].astype(np.float64), lq.shape)
    bottom = np.broadcast_to(touch[:, 3:4].astype(np.float64), lq.shape)
    return np.stack([lq, n_edges, n_edges * lq, edge, aspect, aspect * lq, logit_absent * at_edge, top, bottom],
                    -1)


def pose_covariates(oks, boxes, image_wh) -> np.ndarray:
    """(N, 2) covariates (POSE_COVARIATES) of N persons from their isotonic-calibrated pose quality (N,)."""
    n_edges = edges_touched(boxes, image_wh).sum(1, dtype=np.float64)
    return np.stack([n_edges, n_edges * _logit(oks)], -1)


@dataclass
class ConditionalQuality:
    """The two logistic maps: keypoint quality and pose quality given their covariates."""
    keypoint: LogisticScore
    pose: LogisticScore

    def __call__(self, oks, opks, visibility_probs, keypoints, boxes, image_wh) -> tuple[np.ndarray, np.ndarray]:
        """(pose quality (N,), keypoint quality (N, K)) from the isotonic-calibrated ones and the covariates'
        sources (see keypoint_covariates)."""
        f = keypoint_covariates(opks, visibility_probs, keypoints, boxes, image_wh)
        opks_out = self.keypoint(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])
        g = pose_covariates(oks, boxes, image_wh)
        oks = np.asarray(oks, np.float64)
        # no edge touched: every covariate is 0 and the quality stays as it is (exactly, not through the logit)
        return np.where(g[:, 0] > 0, self.pose(g, offset=_logit(oks)), oks), opks_out

    def to_dict(self) -> dict:
        return {"format": FORMAT, "keypoint_covariates": list(KEYPOINT_COVARIATES),
                "pose_covariates": list(POSE_COVARIATES), "keypoint": self.keypoint.to_dict(),
                "pose": self.pose.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionalQuality":
        """Raises ValueError on a map of other covariates than this code computes."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"conditional quality map is not {FORMAT}")
        if tuple(d.get("keypoint_covariates", ())) != KEYPOINT_COVARIATES \
                or tuple(d.get("pose_covariates", ())) != POSE_COVARIATES:
            raise ValueError("conditional quality map was fitted on other covariates than this posecal computes")
        m = cls(LogisticScore.from_dict(d["keypoint"]), LogisticScore.from_dict(d["pose"]))
        if m.keypoint.weights.shape != (len(KEYPOINT_COVARIATES),) or m.pose.weights.shape != (len(POSE_COVARIATES),):
            raise ValueError("conditional quality map has the wrong number of weights")
        return m


def fit_conditional_quality(oks, opks, visibility_probs, keypoints, boxes, image_wh, true_opks, labelled,
                            true_oks) -> ConditionalQuality:
    """Both maps fitted on N labelled persons: isotonic-calibrated oks (N,) and opks (N, K), calibrated
    visibility probabilities (N, K, 3), keypoints (N, K, 2), boxes (N, 4), image_wh (N, 2); the truth as
    posecal.calibration.quality.truth_of gives it (true OPKS (N, K), labelled (N, K), true OKS (N,; NaN for a
    person without labelled keypoints))."""
    f = keypoint_covariates(opks, visibility_probs, keypoints, boxes, image_wh)
    lab = np.asarray(labelled, bool)
    keypoint = fit_logistic(f[lab], np.clip(np.asarray(true_opks)[lab], 0, 1), KEYPOINT_SIGNS)
    has = np.isfinite(true_oks)
    g = pose_covariates(oks, boxes, image_wh)[has]
    pose = fit_logistic(g, np.clip(np.asarray(true_oks)[has], 0, 1), POSE_SIGNS, offset=_logit(oks)[has],
                        anchored=True)
    return ConditionalQuality(keypoint, pose)
