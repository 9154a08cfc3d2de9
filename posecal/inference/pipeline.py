"""The one pipeline from a picture to people: boxes (given, a person detector's, or the whole picture) -> poses
(the estimator) -> the person rule (pose NMS, and who counts as a person).

The API (`Predictor`), `posecal predict` and `posecal track` (and its live sources) all go through one
`PosePipeline`, so a person found or dropped in one is found or dropped in the others: before it each held its
own copy of these steps, with different NMS settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from posecal.detect.detector import MIN_POSE_QUALITY
from posecal.detect.nms import pose_nms

# Where boxes came from: given by the caller (a boxes file, the API's boxes, a tracker's propagated boxes), a
# person detector, or the whole picture (no detector).
GIVEN, DETECTOR, WHOLE = "given", "detector", "whole"


@dataclass(frozen=True)
class PersonRule:
    """Who, among the poses the estimator returns, is reported as a person.

    Detector boxes: near-identical poses (two boxes on one person) are merged by pose NMS (`nms`: oks, soft or
    none; `nms_threshold`: the OKS above which a lower-scored pose is a duplicate). Whole picture: a pose whose
    predicted OKS is below `min_pose_quality`, or with no keypoint predicted visible, is nobody
    (detector.MIN_POSE_QUALITY says what that costs). Given boxes are the caller's: every pose is kept."""

    nms: str = "oks"
    nms_threshold: float = 0.9
    min_pose_quality: float = MIN_POSE_QUALITY

    def keep(self, people: list, source: str, mode: str | None = None) -> list:
        """The people of one picture reported for boxes from `source`; `mode` the pose score NMS ranks by
        (default: oks with quality heads, the heatmap's mean peak without)."""
        if source == DETECTOR and len(people) > 1:
            mode = mode or ("oks" if people[0].visibility is not None else "heatmap")
            return pose_nms(people, self.nms, self.nms_threshold, mode)
        if source == WHOLE:
            return [p for p in people if someone_there(p, self.min_pose_quality)]
        return people


def someone_there(person, min_pose_quality: float = MIN_POSE_QUALITY) -> bool:
    """Whole-image mode: do the pose's quality and visibility say a person is there? Without a detector every
    image gets a pose, a cup's or a cat's too; those come out with a low predicted OKS or with no keypoint
    predicted visible (bench/detector_recall.py --pose measures both sides). min_pose_quality 0 keeps all."""
    if min_pose_quality <= 0:
        return True
    seen = person.visibility is None or bool((np.asarray(person.visibility) == 2).any())
    return seen and not person.pose_quality < min_pose_quality


class PosePipeline:
    """detector -> estimator -> person rule, for a batch of pictures.

    `estimate` is the estimator's batch call: [(BGR image, (N, 4) boxes, (N,) scores), ...] -> people per
    picture (Predictor.estimate). `detector` (None: no detector) maps a BGR image to (boxes, scores)."""

    def __init__(self, estimate: Callable, detector=None, rule: PersonRule | None = None):
        self.estimate, self.detector, self.rule = estimate, detector, rule or PersonRule()

    def boxes(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(boxes, scores, source) for a picture without given boxes: the detector's, or the whole picture."""
        if self.detector is not None:
            boxes, scores = self.detector(bgr)
            return boxes, scores, DETECTOR
        h, w = bgr.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1), WHOLE

    def people(self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], mode: str | None = None) -> list:
        """[(BGR image, boxes, scores, source), ...] -> the people reported per picture, batched through the
        estimator together (what makes folders of one-person photos fast)."""
        estimated = self.estimate([item[:3] for item in items])
        return [self.rule.keep(people, item[3], mode) for people, item in zip(estimated, items)]

    def __call__(self, bgr: np.ndarray, mode: str | None = None) -> list:
        """The people in one BGR picture, boxes found by the pipeline."""
        return self.people([(bgr, *self.boxes(bgr))], mode)[0]
