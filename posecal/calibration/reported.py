"""Pose quality as reported: the expected OKS of a pose among the other poses of its picture, against the person it
covers one to one (posecal/metrics/reported.py), not only of a pose on a labelled box.

Why: the trust model reads one crop. A detector's boxes add failures no crop shows: a second pose of one person, a
box over two people, a box cut at the waist, a person cut by the picture's edge. What the picture's other poses and
its edges say is read here as a correction that can only lower the crop's quality, fitted on the poses the product
reported on labelled photographs (tools/fit_reported_quality.py):

    Q_reported = Q * (1 - p_failure),   p_failure = sigmoid(bias + w · x / std),   every x >= 0, every w >= 0

so Q_reported <= Q for any features and any fit. The failures are right-as-the-crop-says or about 0, which a
product follows better than a shift of the crop's logit.

Features (FEATURES: each evidence of a failure, 0 where there is none; from what the product reported, no truth):
`shared_with_higher` / `shared_with_lower` (the largest share of keypoints both call there, OPKS >= 0.5, with a
reported pose of higher / lower crop quality), `box_overlap` (largest IoU with another reported box),
`outside_frame` (expected share of keypoints outside the picture), `outside_box` (share of keypoints called there
outside its box grown by 10 %), `absent_share` (mean p(not labelled)), `person_doubt` (1 - p(person)),
`detector_doubt` (1 - the detector's score).

The map is carried inside the model it was fitted for (META_KEY) and keyed by the digest of the network's weights
(models/checkpoint.py network_digest), so a map copied onto other weights is never applied. It records what it was
fitted on (FITTED: `predict` on still pictures with the flip test, the shipped SSD and verifier, upright crops, one
look) and is applied only where a run meets every condition (`applies`); elsewhere a pose's quality is its crop's.
Each pose says which (`quality_from`: "picture" or "crop"; `crop_quality` either way). The caller's boxes are never
rescored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posecal.calibration.maps import LogisticScore
from posecal.calibration.quality import called_present
from posecal.metrics.boxes import box_iou
from posecal.metrics.oks import AREA_PER_BOX, opks

FEATURES = ("shared_with_higher", "shared_with_lower", "box_overlap", "outside_frame", "outside_box", "absent_share",
            "person_doubt", "detector_doubt")
# every weight is held >= 0 (the fit's bounds, and again where the map is applied): more evidence, likelier a failure
SHARED_OPKS = 0.5       # a keypoint two poses share: OPKS at least this between them
META_KEY = "reported_quality"   # where a model file's meta (and its ONNX export's metadata) carries the map
NETWORK_KEY = "network"         # an opened model's meta: its network's weights digest (what a map is keyed by)
# What the shipped maps were fitted on (tools/fit_reported_quality.py from bench/reported_poses.py's rows: `predict`
# with its defaults on still photographs): a run applies a map only where it meets every condition
FITTED = {"pictures": "still", "flip": True, "detector": "ssd", "verifier": "default", "orientations": 1,
          "second_look": False}
BOX_MARGIN = 0.1        # a keypoint outside its box: further out than this share of the box's width or height
EPS = 1e-4


def _sigmoid(a) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(a, np.float64)))


def reported_features(keypoints, boxes, quality, picture_wh, visibility_probs=None, in_frame=None,
                      person_probability=None, box_score=None, keypoint_quality=None) -> np.ndarray:
    """(N, F) features (FEATURES, each >= 0) of the N poses reported in one picture of size picture_wh (w, h):
    keypoints (N, K, 2), boxes (N, 4) x, y, w, h, crop quality (N,) (which of two poses ranks higher);
    visibility_probs (N, K, 3), in_frame (N, K), keypoint_quality (N, K) (a keypoint is there as the
    visibility rule calls it: calibration.quality.called_present),
    person_probability (N,) (NaN or None where none) and box_score (N,) where known."""
    xy = np.asarray(keypoints, np.float64)
    n, k = xy.shape[:2] if xy.ndim == 3 else (0, 17)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    quality = np.asarray(quality, np.float64).reshape(n)
    present = np.ones((n, k), bool) if visibility_probs is None else \
        called_present(np.asarray(visibility_probs, np.float64), keypoint_quality, in_frame)
    if n > 1:
        areas = AREA_PER_BOX * boxes[:, 2] * boxes[:, 3]
        terms = opks(xy[:, None], xy[None], areas[:, None])                      # (N, N, K) at row pose's scale
        shared = ((terms >= SHARED_OPKS) & present[:, None] & present[None]).sum(-1) / k
        np.fill_diagonal(shared, 0.0)
        order = np.arange(n)
        # pose j ranks above pose i: a higher crop quality, or the same and listed first
        above = (quality[None, :] > quality[:, None]) | ((quality[None, :] == quality[:, None])
                                                         & (order[None, :] < order[:, None]))
        out[:, 0] = np.where(above, shared, 0.0).max(1)
        out[:, 1] = np.where(above | np.eye(n, dtype=bool), 0.0, shared).max(1)
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        out[:, 2] = iou.max(1)
    w, h = picture_wh
    if in_frame is not None:
        out[:, 3] = 1.0 - np.asarray(in_frame, np.float64).reshape(n, k).mean(1)
    else:
        inside = (xy[..., 0] >= -0.5) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= h - 0.5)
        out[:, 3] = 1.0 - inside.mean(1)
    x, y, bw, bh = (boxes[:, i, None] for i in range(4))
    mx, my = BOX_MARGIN * bw, BOX_MARGIN * bh
    outside = (xy[..., 0] < x - mx) | (xy[..., 0] > x + bw + mx) | (xy[..., 1] < y - my) | (xy[..., 1] > y + bh + my)
    out[:, 4] = (outside & present).sum(1) / np.maximum(present.sum(1), 1)
    if visibility_probs is not None:
        out[:, 5] = np.asarray(visibility_probs, np.float64)[..., 0].mean(1)
    if person_probability is not None:
        p = np.asarray(person_probability, np.float64).reshape(n)
        out[:, 6] = np.where(np.isfinite(p), 1.0 - np.clip(np.nan_to_num(p, nan=1.0), 0, 1), 0.0)
    if box_score is not None:
        out[:, 7] = 1.0 - np.clip(np.asarray(box_score, np.float64).reshape(n), 0, 1)
    return out


@dataclass
class ReportedQuality:
    """The fitted correction (module docstring): p_failure as `score` over FEATURES (uncentred: mean 0), its
    weights none below 0; `weights`, the digest of the network it was fitted for (network_digest); `conditions`,
    the run settings it was fitted under (FITTED)."""

    score: LogisticScore
    fitted_on: str = ""
    weights: str = ""
    conditions: dict = field(default_factory=lambda: dict(FITTED))

    def failure(self, features) -> np.ndarray:
        """(N,) p_failure of each pose: non-negative weights on non-negative evidence, whatever the file or the
        features say (NaN evidence counts as none). As many features as the map was fitted on (FEATURES for a
        map read from a file; a bench may fit one on more)."""
        x = np.asarray(features, np.float64).reshape(-1, len(self.score.weights))
        x = np.maximum(np.nan_to_num(x), 0.0)
        return _sigmoid((x / self.score.std) @ np.maximum(self.score.weights, 0.0) + self.score.bias)

    def __call__(self, features, quality) -> np.ndarray:
        """The reported quality of each pose from its crop's `quality` (N,): never above it."""
        return np.clip(np.asarray(quality, np.float64).reshape(-1), 0.0, 1.0) * (1.0 - self.failure(features))

    def unmet(self, conditions: dict) -> list[str]:
        """The conditions the map was fitted under that a run's `conditions` (FITTED's keys) do not meet, as
        "name: run's value (fitted: value)"; empty where the map applies."""
        return [f"{k}: {conditions.get(k)!r} (fitted: {v!r})" for k, v in self.conditions.items()
                if conditions.get(k) != v]

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "score": self.score.to_dict(), "fitted_on": self.fitted_on,
                "weights": self.weights, "conditions": dict(self.conditions)}

    @classmethod
    def from_dict(cls, d: dict) -> "ReportedQuality":
        if list(d.get("features", [])) != list(FEATURES):
            raise ValueError(f"reported quality: features {d.get('features')} are not {list(FEATURES)}")
        conditions = d.get("conditions", FITTED)
        if not isinstance(conditions, dict):
            raise ValueError(f"reported quality: conditions {conditions!r} are not a mapping")
        return cls(LogisticScore.from_dict(d["score"]), str(d.get("fitted_on", "")), str(d.get("weights", "")),
                   dict(conditions))

    @classmethod
    def of_model(cls, meta: dict | None, source: str, conditions: dict) -> "tuple[ReportedQuality | None, str]":
        """(the map the model carries in its meta (META_KEY), or None where it carries none, where the map was
        fitted for other weights than the model's network (meta[NETWORK_KEY]), or where the run's `conditions`
        are not those it was fitted under; why not, in words, "" where it applies). A damaged map is one line
        naming the model."""
        from posecal.errors import PosecalInputError

        if not meta or META_KEY not in meta:
            return None, "the model carries no reported-pose map"
        try:
            found = cls.from_dict(meta[META_KEY])
        except (ValueError, KeyError, TypeError) as e:
            raise PosecalInputError(f"{source}: stored reported-pose quality is unreadable ({e})") from None
        network = meta.get(NETWORK_KEY)
        if not found.weights or found.weights != network:
            return None, (f"its reported-pose map was fitted for other weights ({found.weights or 'unnamed'}, the "
                          f"network is {network or 'unknown'})")
        unmet = found.unmet(conditions)
        if unmet:
            return None, "its reported-pose map was fitted on other runs (" + "; ".join(unmet) + ")"
        return found, ""

    @classmethod
    def read(cls, path) -> "ReportedQuality":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: reported quality is unreadable ({e})") from None

    def write(self, path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)


def fit_reported_quality(features, quality, target, l2: float = 1e-3, fitted_on: str = "") -> ReportedQuality:
    """Fit the correction on (M, F) features of reported poses, their crops' quality (M,) and their one-to-one OKS
    (M,): the cross-entropy of Q * (1 - p_failure) against the OKS (soft targets), L2 on the weights, every weight
    bounded to >= 0 (scipy's L-BFGS-B), the features uncentred (no evidence: p_failure = sigmoid(bias))."""
    from scipy.optimize import minimize   # fitting only: slow to import, applying needs none

    x = np.maximum(np.nan_to_num(np.asarray(features, np.float64)), 0.0)
    q = np.clip(np.asarray(quality, np.float64).ravel(), 0.0, 1.0)
    t = np.asarray(target, np.float64).ravel()
    std = np.maximum(x.std(0) if len(x) else np.ones(x.shape[1]), 1e-6)
    z, n = x / std, max(len(t), 1)

    def loss(theta):
        pi = _sigmoid(z @ theta[:-1] + theta[-1])
        p = np.clip(q * (1.0 - pi), EPS, 1.0 - EPS)
        value = -np.sum(t * np.log(p) + (1.0 - t) * np.log(1.0 - p)) / n + l2 * theta[:-1] @ theta[:-1]
        d_a = (t / p - (1.0 - t) / (1.0 - p)) * q * pi * (1.0 - pi) / n   # d loss / d (bias + w · z)
        return value, np.r_[z.T @ d_a + 2 * l2 * theta[:-1], d_a.sum()]

    start = np.r_[np.zeros(x.shape[1]), -3.0]   # no failure likely where the picture shows nothing
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0, None)] * x.shape[1] + [(None, None)]).x
    return ReportedQuality(LogisticScore(np.zeros(x.shape[1]), std, theta[:-1], float(theta[-1])), fitted_on)
