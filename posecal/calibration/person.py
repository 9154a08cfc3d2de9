"""p(person): the calibrated probability that a box holds a person, from what the trust model saw in it.

Why (issue 45): a detector's score says how much a box looks like its training boxes, not whether posecal found a
person there. A tripod scored 0.5 by the SSD gets a pose too, and a person seen from behind, whose joints the trust
model calls occluded, got no track because births counted visible joints. The trust model's outputs on a box are
better evidence than either: whether its keypoints look like a body's (pose quality, keypoint quality), whether it
sees body parts (visibility) and how the box is shaped. This map combines them into one number with a
meaning, p(the box frames a person), that every path reads the same way: the person rule (a pose that says nobody
is not reported), trust-guided detection (an unsure box is kept when p(person) says so), the second look's extra
boxes and track births (posecal/inference/pipeline.py, posecal/tracking/tracker.py).

It reads no detector score, so it judges a box from any detector, a tracker's predicted box or the whole picture
alike. A logistic score of the features below, fitted on the training split's detector boxes, labelled boxes,
shifted and part-of-a-person boxes and person-free regions (tools/fit_person_verifier.py), then an isotonic map
fitted on the val split turns it into a calibrated probability. "Holds a person" is IoU >= 0.5 with a labelled
person's box: a box shifted half off its person, or framing only a leg, is not a person box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.calibration.maps import IsotonicMap, LogisticScore, fit_isotonic, fit_logistic

# Not the box's size or place in the picture: the crops it is fitted on are cut around their labelled person, so
# those would teach "a big box is a person", which a frame of small walkers contradicts.
FEATURES = ("logit pose quality", "mean p(visible)", "max p(visible)", "share called visible", "mean p(absent)",
            "mean keypoint quality", "top-5 heatmap score", "mean heatmap score", "log box aspect h/w")
# weights whose sign is known (a person shows more of these), held to it so that the map never falls as they rise
SIGNS = (1, 0, 1, 0, 0, 0, 1, 0, 0)
EPS = 1e-4


def person_features(people: list) -> np.ndarray:
    """(N, F) features of N poses (PersonPose with visibility_probs)."""
    n = len(people)
    if not n:
        return np.zeros((0, len(FEATURES)))
    probs = np.stack([np.asarray(p.visibility_probs, np.float64) for p in people])          # (N, K, C)
    quality = np.clip([float(p.pose_quality) for p in people], EPS, 1 - EPS)
    kq = np.stack([np.asarray(p.keypoint_quality, np.float64) for p in people])
    hs = np.sort(np.stack([np.asarray(p.heatmap_scores, np.float64) for p in people]), -1)
    boxes = np.stack([np.asarray(p.box, np.float64) for p in people])
    vis = np.stack([np.asarray(p.visibility) for p in people])
    p_vis, p_absent = probs[..., -1], probs[..., 0]
    return np.stack([np.log(quality / (1 - quality)), p_vis.mean(1), p_vis.max(1), (vis == 2).mean(1),
                     p_absent.mean(1), kq.mean(1), hs[:, -5:].mean(1), hs.mean(1),
                     np.log(np.maximum(boxes[:, 3], 1) / np.maximum(boxes[:, 2], 1))], 1)


@dataclass
class PersonVerifier:
    score: LogisticScore        # features -> an uncalibrated person score
    calibration: IsotonicMap    # that score -> p(person), fitted on other persons than the score
    fit_info: dict

    def __call__(self, people: list) -> np.ndarray:
        """(N,) p(person) of N poses."""
        if not people:
            return np.zeros(0)
        return np.clip(self.calibration(self.score(person_features(people))), 0.0, 1.0)

    def to_dict(self) -> dict:
        return {"score": self.score.to_dict(), "calibration": self.calibration.to_dict(), "fit_info": self.fit_info}

    @classmethod
    def from_dict(cls, d: dict) -> "PersonVerifier":
        score = LogisticScore.from_dict(d["score"])
        if score.weights.shape != (len(FEATURES),):
            raise ValueError(f"person verifier needs {len(FEATURES)} weights, has {score.weights.shape[0]}")
        return cls(score, IsotonicMap.from_dict(d["calibration"]), dict(d.get("fit_info", {})))


def fit_person_score(features, is_person, l2: float = 1e-3) -> LogisticScore:
    """The logistic score on (M, F) features and (M,) 0/1 labels (the training split's boxes)."""
    return fit_logistic(features, np.asarray(is_person, np.float64), SIGNS, l2=l2)


def fit_person_verifier(score: LogisticScore, features, is_person, fit_info: dict | None = None) -> PersonVerifier:
    """The verifier: `score` (fit_person_score on other boxes) calibrated by an isotonic map on these boxes."""
    raw = score(np.asarray(features, np.float64))
    return PersonVerifier(score, fit_isotonic(raw, np.asarray(is_person, np.float64)), dict(fit_info or {}))
