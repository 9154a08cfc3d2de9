"""The one pipeline from a picture to people: boxes (given, a person detector's, or the whole picture) -> poses
(the estimator) -> the person rule (pose NMS, and who counts as a person).

The API (`Predictor`), `posecal predict` and `posecal track` (and its live sources) all go through one
`PosePipeline`, so a person found or dropped in one is found or dropped in the others: before it each held its
own copy of these steps, with different NMS settings.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from posecal.detect.detector import MIN_POSE_QUALITY
from posecal.detect.nms import pose_nms

# Where boxes came from: given by the caller (a boxes file, the API's boxes, a tracker's propagated boxes), a
# person detector, or the whole picture (no detector).
GIVEN, DETECTOR, WHOLE = "given", "detector", "whole"
# Trust-guided detection with the shipped SSD (bench/trust_detection.py chose these on half the val crops and
# person-free patches of the train crops, and judges them on the other half and scikit-image's person-free
# photos): the detector runs at TRUST_GUIDED_FLOOR; a box it scores below TRUST_GUIDED_SURE is kept when its
# pose quality is >= TRUST_GUIDED_QUALITY (and the nobody rule's MIN_VISIBLE keypoints are predicted visible).
# TRUST_GUIDED_QUALITY is above the bench's own choice because a lower one lets the vtest sign post in, which the
# photo bench cannot see (CHANGELOG, issue 45).
# Unsure boxes mostly inside a surer one are parts of that person (PersonRule._without_parts).
TRUST_GUIDED_FLOOR = 0.15
TRUST_GUIDED_SURE = 0.3          # the SSD's own working threshold (posecal/detect/ssd.py)
# The detector names trust-guided detection works with: the shipped SSD, and the SSD and NanoDet merged, whose scores
# are on the SSD's scale (each detector's own working threshold at TRUST_GUIDED_SURE, posecal/detect/union.py)
TRUST_GUIDED_DETECTORS = ("default", "ssd", "ssd+nanodet")
TRUST_GUIDED_QUALITY = 0.5
TRUST_GUIDED_CONTAINED = 0.7
# Unsure boxes shorter than this (pixels) are not judged: the trust model, reading a crop blown up from a few dozen
# pixels, called 46-59 px boxes on the empty vtest background people (pose quality 0.53-0.69, many keypoints seen)
TRUST_GUIDED_MIN_HEIGHT = 64
# A pose with fewer keypoints called visible than this is nobody; 2 would also drop a person seen from behind, whose
# other joints the trust model calls occluded (CHANGELOG, issue 45)
MIN_VISIBLE = 1
# Two poses from detector boxes are one person when their OKS over the keypoints both see is above this
# (detect/nms.py); chosen with TRUST_GUIDED_QUALITY by the same bench
DUPLICATE_OKS = 0.6
# p(person) (calibration/person.py) under which a detector box's pose is nobody, and the p(person) an unsure box
# needs, for a model with a person verifier; None: the pose quality and visibility rules above, which did at
# least as well on the photo bench (CHANGELOG, issue 45).
MIN_PERSON: float | None = None
CONFIRM_PERSON: float | None = None


@dataclass(frozen=True)
class PersonRule:
    """Who, among the poses the estimator returns, is reported as a person.

    Detector boxes and the whole picture: a pose whose predicted OKS is below `min_pose_quality`, or with no
    keypoint predicted visible, is nobody (a tripod, a sign post: detector.MIN_POSE_QUALITY says what that
    costs), however sure the detector is. With `sure_score` set (trust-guided detection), a box the detector
    scores below it is a person only when it is at least `unsure_min_height` pixels tall and its pose says so
    more firmly: pose quality >= `confirm_quality` (the detector then runs at a permissive threshold,
    TRUST_GUIDED_FLOOR, so that people it is unsure of are judged by posecal's trust instead of dropped);
    sure_score None keeps every box the detector's threshold let through. Then each person once: poses that
    agree on the keypoints both see (two boxes on one person) are merged by pose NMS (`nms`: oks, soft or none;
    `nms_threshold`: the OKS over shared seen keypoints above which a lower-ranked pose is a duplicate,
    detect/nms.py), keeping the pose ranked first by pose quality times the detector's score. Given boxes are the
    caller's: every pose is kept."""

    nms: str = "oks"
    nms_threshold: float = DUPLICATE_OKS
    min_pose_quality: float = MIN_POSE_QUALITY
    sure_score: float | None = None
    confirm_quality: float = MIN_POSE_QUALITY
    unsure_min_height: float = 0.0
    min_person: float | None = MIN_PERSON
    confirm_person: float | None = CONFIRM_PERSON

    def keep(self, people: list, source: str, mode: str | None = None, sure_factor: float = 1.0) -> list:
        """The people of one picture reported for boxes from `source`; `mode` the pose score NMS ranks by
        (default: oks with quality heads, the heatmap's mean peak without); `sure_factor` scales sure_score for
        this picture as the detector scaled its threshold (a grey picture: posecal/detect/ssd.py)."""
        if source == DETECTOR:
            people = [p for p in people if someone_there(p, self.min_pose_quality, self.min_person)]
        if source == DETECTOR and self.sure_score is not None:
            people = [p for p in people if p.box_score >= self.sure_score * sure_factor
                      or (p.box[3] >= self.unsure_min_height
                          and someone_there(p, self.confirm_quality, self.confirm_person))]
        if source == DETECTOR and len(people) > 1:
            mode = mode or ("oks" if people[0].visibility is not None else "heatmap")
            people = pose_nms(people, self.nms, self.nms_threshold, mode, by_box_score=True)
            if self.sure_score is not None:
                people = self._without_parts(people, self.sure_score * sure_factor)
        if source == WHOLE:
            return [p for p in people if someone_there(p, self.min_pose_quality)]
        return people

    def _without_parts(self, people: list, sure: float) -> list:
        """Unsure boxes (below sure_score) lying mostly (>= TRUST_GUIDED_CONTAINED of their area) inside a box the
        detector scored higher: a part of that person (an upper body, a leg), whose pose pose NMS does not match
        to the whole person's. Order kept."""
        by_score = sorted(people, key=lambda p: -p.box_score)
        kept: list = []
        for p in by_score:
            if p.box_score < sure and any(inside_share(p.box, o.box) >= TRUST_GUIDED_CONTAINED for o in kept):
                continue
            kept.append(p)
        ids = {id(p) for p in kept}
        return [p for p in people if id(p) in ids]


def inside_share(box: np.ndarray, other: np.ndarray) -> float:
    """The share of x, y, w, h `box`'s area that lies inside `other`."""
    x0, y0 = max(box[0], other[0]), max(box[1], other[1])
    x1, y1 = min(box[0] + box[2], other[0] + other[2]), min(box[1] + box[3], other[1] + other[3])
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / max(float(box[2] * box[3]), 1e-9)


def someone_there(person, min_pose_quality: float = MIN_POSE_QUALITY, min_person: float | None = None) -> bool:
    """Do the pose's quality and visibility say a person is there? A whole image or a detector's box on a cup,
    a cat or a tripod gets a pose too; those come out with fewer than MIN_VISIBLE keypoints predicted visible, a
    low p(person) (where the model has one and min_person is given) or else a low predicted OKS
    (bench/detector_recall.py --pose, bench/trust_detection.py measure both sides). min_pose_quality 0 keeps all."""
    if min_pose_quality <= 0:
        return True
    seen = person.visibility is None or int((np.asarray(person.visibility) == 2).sum()) >= MIN_VISIBLE
    if not seen:
        return False
    if min_person is not None and person.person_probability is not None:
        return not person.person_probability < min_person
    return not person.pose_quality < min_pose_quality


def detection_setup(detector, detector_threshold: float | None, quality_heads: bool,
                    rule: PersonRule) -> tuple[float | None, PersonRule]:
    """(the threshold to load `detector` at, the person rule) for a detector spec as the user gave it: the shipped
    SSD (None, "default" or "ssd") or the SSD and NanoDet merged ("ssd+nanodet", on the SSD's score scale) with no
    threshold asked for, on a model with quality heads, is trust-guided (the detector at TRUST_GUIDED_FLOOR, the
    rule confirming its unsure boxes); anything else keeps the threshold asked for (None: the detector's own) and
    the rule as it is. Used by the API, predict and track alike."""
    guided = (detector_threshold is None and str(detector or "default").lower() in TRUST_GUIDED_DETECTORS
              and quality_heads)
    if not guided or rule.sure_score is not None:
        return detector_threshold, rule
    return TRUST_GUIDED_FLOOR, replace(rule, sure_score=TRUST_GUIDED_SURE, confirm_quality=TRUST_GUIDED_QUALITY,
                                       unsure_min_height=TRUST_GUIDED_MIN_HEIGHT)


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
        return [self.rule.keep(people, item[3], mode, self.sure_factor(item[0], item[3]))
                for people, item in zip(estimated, items)]

    def sure_factor(self, bgr: np.ndarray, source: str) -> float:
        """How the detector scaled its threshold for this picture (the shipped SSD lowers it for grey pictures),
        so that trust-guided detection's sure score moves with it; 1 for other detectors and sources."""
        if source != DETECTOR or self.rule.sure_score is None or not hasattr(self.detector, "threshold_factor"):
            return 1.0
        return self.detector.threshold_factor(bgr)

    def __call__(self, bgr: np.ndarray, mode: str | None = None) -> list:
        """The people in one BGR picture, boxes found by the pipeline."""
        return self.people([(bgr, *self.boxes(bgr))], mode)[0]
