"""`in_frame`: the calibrated probability that a keypoint lies inside the picture.

Why beside visibility: "not labelled" covers a joint hidden behind a wall and one cut off by the picture's edge
alike; a webcam user needs them apart (step back, or hidden?). The map is a logistic score of two features, fitted
on persons whose truth is known (cut keypoints outside: posecal.data.conditions.cut_by_frame): logit p(not
labelled), weight <= 0; the signed distance to the nearest edge (negative outside) over sqrt(box area), clipped to
+-0.5, weight >= 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.calibration.conformal import person_scale
from posecal.calibration.maps import LogisticScore, fit_logistic

EDGE_CLIP = 0.5


def in_frame_features(visibility_probs, keypoints, boxes, image_wh) -> np.ndarray:
    """(N, K, 2) features of N persons: keypoints (N, K, 2) image pixels, boxes (N, 4), image_wh (N, 2)."""
    p_absent = np.clip(np.asarray(visibility_probs, np.float64)[..., 0], 1e-6, 1 - 1e-6)
    xy = np.asarray(keypoints, np.float64)
    wh = np.asarray(image_wh, np.float64).reshape(-1, 1, 2)
    edge = np.minimum(xy + 0.5, wh - 0.5 - xy).min(-1)        # pixel edges at -0.5 and W - 0.5
    edge = np.clip(edge / person_scale(boxes)[:, None], -EDGE_CLIP, EDGE_CLIP)
    return np.stack([np.log(p_absent / (1 - p_absent)), edge], -1)


@dataclass
class InFrameMap:
    score: LogisticScore

    def __call__(self, visibility_probs, keypoints, boxes, image_wh) -> np.ndarray:
        """(N, K) probability that each keypoint lies inside its picture."""
        f = in_frame_features(visibility_probs, keypoints, boxes, image_wh)
        return self.score(f.reshape(-1, 2)).reshape(f.shape[:2])

    def to_dict(self) -> dict:
        return self.score.to_dict()

    @classmethod
    def from_dict(cls, d: dict) -> "InFrameMap":
        score = LogisticScore.from_dict(d)
        if score.weights.shape != (2,):
            raise ValueError("in_frame needs 2 weights")
        return cls(score)


def in_frame_truth(gt, cut_off) -> tuple[np.ndarray, np.ndarray]:
    """(known (N, K), inside (N, K)): labelled keypoints are inside, cut-off ones outside, others unknown."""
    labelled = np.asarray(gt)[..., 2] > 0
    cut = np.asarray(cut_off, bool)
    return labelled | cut, labelled & ~cut


def fit_in_frame(visibility_probs, keypoints, boxes, image_wh, gt, cut_off) -> InFrameMap | None:
    """The map fitted on keypoints whose side of the edge is known; None without both kinds among them."""
    known, inside = in_frame_truth(gt, cut_off)
    if inside[known].all() or not inside[known].any():
        return None
    f = in_frame_features(visibility_probs, keypoints, boxes, image_wh)[known]
    return InFrameMap(fit_logistic(f, inside[known].astype(float), signs=(-1, 1)))
