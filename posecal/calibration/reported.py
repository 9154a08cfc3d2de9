"""Pose quality as reported: the expected OKS of a pose among the other poses of its picture, against the person it
covers one to one (posecal/metrics/reported.py), not only of a pose on a labelled box.

Why: the trust model reads one crop. On a labelled box that is all there is to know, and its pose quality sits at
the floor of a calibrated predictor. The boxes a detector gives add failures no crop shows: a second pose of one
person (COCO AP, and a tracker, count it wrong), a box over two people whose pose spans both, a box cut at the
waist whose limbs run out of it, a person cut by the picture's edge whose hidden joints the pose guesses (the trust
model calls them "not labelled", as COCO does, and its quality leaves them out). What the picture's other poses and
its edges say is read here, and a logistic correction of the crop's own logit is fitted on the poses the product
reported on labelled photographs (tools/fit_reported_quality.py), one to one:

    Q_reported = min(Q, sigmoid(logit Q + bias + w · (features - mean) / std))

Features (FEATURES, each from what the product reported, no truth):
- `logit_quality`: the crop's own logit again (the correction may steepen or flatten it);
- `shared_keypoints`: the largest share of keypoints it shares with another reported pose (both call the keypoint
  there, OPKS >= 0.5 at this pose's scale): a second pose of one person, or a merge's half;
- `box_overlap`: the largest IoU of its box with another reported pose's;
- `outside_frame`: the expected share of its 17 keypoints outside the picture (1 - in_frame, or its geometry where
  the model gives no in_frame): the joints a cut person's quality forgets;
- `outside_box`: the share of keypoints it calls there that lie outside its box grown by 10 %: limbs running out
  of a box cut at the waist, or a pose reaching to a second person;
- `absent_share`: the mean p(not labelled): a pose that sees little of its person;
- `logit_person`: logit p(person) by the verifier (0 where none judged the box);
- `box_score`: the detector's score.

Signs are held where the failure is known (shared keypoints, overlap, joints outside the frame: never raise Q).
The caller's boxes are never rescored (the person policy reports them as given, and their quality is the crop's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecal.calibration.maps import LogisticScore, fit_logistic
from posecal.metrics.boxes import box_iou
from posecal.metrics.oks import AREA_PER_BOX, opks

FEATURES = ("logit_quality", "shared_keypoints", "box_overlap", "outside_frame", "outside_box", "absent_share",
            "logit_person", "box_score")
# the weight's sign each feature is held to (+1 >= 0, -1 <= 0, 0 free)
SIGNS = (0, -1, -1, -1, -1, 0, 0, 0)
SHARED_OPKS = 0.5       # a keypoint two poses share: OPKS at least this between them
# The picture can show a failure its crop does not (a second pose, a merge, joints outside the frame); it cannot
# vouch for a pose beyond what its crop shows. So the reported quality never exceeds the crop's own: uncapped, the
# fit raised well-separated poses a little (the val photos' mean), which held on val (cross-fitted ECE 0.015 capped
# or not) but not in other worlds (LSPET 0.030 -> 0.020 capped, floor 0.014-0.016; the tracking worlds' vtest room,
# where the uncapped map raised the pose quality of small pasted people: CHANGELOG)
CAP = True
BOX_MARGIN = 0.1        # a keypoint outside its box: further out than this share of the box's width or height
EPS = 1e-4


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def reported_features(keypoints, boxes, quality, picture_wh, visibility_probs=None, in_frame=None,
                      person_probability=None, box_score=None) -> np.ndarray:
    """(N, F) features (FEATURES) of the N poses reported in one picture of size picture_wh (w, h): keypoints
    (N, K, 2), boxes (N, 4) x, y, w, h, quality (N,); visibility_probs (N, K, 3), in_frame (N, K),
    person_probability (N,) (NaN or None where none) and box_score (N,) where known."""
    xy = np.asarray(keypoints, np.float64)
    n, k = xy.shape[:2] if xy.ndim == 3 else (0, 17)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    out[:, 0] = _logit(quality)
    present = np.ones((n, k), bool) if visibility_probs is None else \
        np.asarray(visibility_probs, np.float64)[..., 0] < 0.5
    if n > 1:
        areas = AREA_PER_BOX * boxes[:, 2] * boxes[:, 3]
        terms = opks(xy[:, None], xy[None], areas[:, None])                      # (N, N, K) at row pose's scale
        shared = ((terms >= SHARED_OPKS) & present[:, None] & present[None]).sum(-1) / k
        np.fill_diagonal(shared, 0.0)
        out[:, 1] = shared.max(1)
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
        out[:, 6] = np.where(np.isfinite(p), _logit(np.nan_to_num(p, nan=0.5)), 0.0)
    if box_score is not None:
        out[:, 7] = np.asarray(box_score, np.float64).reshape(n)
    return out


@dataclass
class ReportedQuality:
    """The fitted correction (module docstring): `score` over FEATURES with the crop's logit as offset."""

    score: LogisticScore
    fitted_on: str = ""

    def __call__(self, features) -> np.ndarray:
        """The reported quality of each pose: the correction, never above the crop's own (CAP)."""
        f = np.asarray(features, np.float64).reshape(-1, len(FEATURES))
        rated = self.score(f, offset=f[:, 0])
        return np.minimum(rated, 1.0 / (1.0 + np.exp(-f[:, 0]))) if CAP else rated

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "score": self.score.to_dict(), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "ReportedQuality":
        if list(d.get("features", [])) != list(FEATURES):
            raise ValueError(f"reported quality: features {d.get('features')} are not {list(FEATURES)}")
        return cls(LogisticScore.from_dict(d["score"]), str(d.get("fitted_on", "")))

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


def fit_reported_quality(features, target, l2: float = 1e-3, fitted_on: str = "") -> ReportedQuality:
    """Fit the correction on (M, F) features of reported poses and their one-to-one OKS (M,)."""
    f = np.asarray(features, np.float64)
    return ReportedQuality(fit_logistic(f, target, SIGNS, l2, offset=f[:, 0]), fitted_on)
