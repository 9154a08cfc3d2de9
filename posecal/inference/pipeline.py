"""The one pipeline from a picture to people: boxes (given, a person detector's, carried from a track, or the whole
picture) -> the person verifier's screen -> poses (the estimator) -> the person policy (inference/person_policy.py).

The API (`Predictor`), `posecal predict`, `PoseTracker` and `posecal track` (and its live sources) all go through
one `PosePipeline`, so a person found or dropped in one is found or dropped in the others.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from posecal.calibration.reported import ReportedQuality, reported_features
from posecal.inference.person_policy import CARRIED, DETECTED, GIVEN, STILL, WHOLE, PersonPolicy

# The detector names that run permissively with the policy judging their unsure boxes: the shipped SSD, and the SSD
# and NanoDet merged, whose scores are on the SSD's scale (posecal/detect/union.py)
GUIDED_DETECTORS = ("default", "ssd", "ssd+nanodet")

__all__ = ["CARRIED", "DETECTED", "GIVEN", "WHOLE", "PosePipeline", "detection_setup"]


def detection_setup(detector, detector_threshold: float | None, judged: bool,
                    policy: PersonPolicy) -> tuple[float | None, PersonPolicy]:
    """(the threshold to load `detector` at, the policy) for a detector spec as the user gave it. The shipped SSD
    (None, "default" or "ssd") or "ssd+nanodet" with no threshold asked for, where posecal can judge unsure boxes
    (`judged`: a person verifier, or a model with quality heads), runs at the policy's detector_floor and the policy
    judges the boxes below its sure score. Anything else keeps the threshold asked for (None: the detector's own),
    every box it gives counting as sure (the verifier still judges each). Used by the API, predict and track alike."""
    guided = (detector_threshold is None and str(detector or "default").lower() in GUIDED_DETECTORS and judged)
    if guided:
        return policy.detector_floor, policy
    return detector_threshold, replace(policy, sure_score=None)


class PosePipeline:
    """detector -> verifier -> estimator -> person policy, for a batch of pictures.

    `estimate` is the estimator's batch call: [(BGR image, (N, 4) boxes, (N,) scores), ...] -> people per
    picture (Predictor.estimate). `detector` (None: no detector) maps a BGR image to (boxes, scores). `verifier`
    (None: none) maps (BGR image, (N, 4) boxes) to (N,) p(person) (posecal/detect/verifier.py). `reported`
    (None: none) rates the pose quality of each reported person whose box posecal found (detected or carried)
    among the picture's other people (posecal/calibration/reported.py); the caller's boxes keep their crop's.
    `refine` (None: none) is the estimator's second stage (Estimator.refine): where given, `estimate` gives looks
    (Estimator.look: one pose pass a crop), the policy's per-person rule (PersonPolicy.somebody) decides on them,
    and only those it takes are refined (the mirror pass), so a candidate it rejects costs one pass; the rules of
    place (duplicates, merges, parts) then judge the refined poses, as without stages. `evidence` (None: none) gives
    looks their `second_person` (Estimator.second_person), asked only where a picture has two boxes waiting."""

    def __init__(self, estimate: Callable, detector=None, policy: PersonPolicy | None = None, verifier=None,
                 reported: ReportedQuality | None = None, refine: Callable | None = None,
                 evidence: Callable | None = None):
        self.estimate, self.detector, self.policy, self.verifier = estimate, detector, policy or STILL, verifier
        self.reported, self.refine, self.evidence = reported, refine, evidence

    def boxes(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(boxes, scores, origin) for a picture without given boxes: the detector's, or the whole picture."""
        if self.detector is not None:
            boxes, scores = self.detector(bgr)
            return boxes, scores, DETECTED
        h, w = bgr.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1), WHOLE

    def people(self, items: list[tuple], mode: str | None = None, carried: list | None = None) -> list:
        """[(BGR image, boxes, scores, origin or (N,) origins), ...] -> the people reported per picture.

        Decide, then pose: the network runs only where its answer can change who is reported. A box the detector
        is unsure of that lies mostly inside a box it is sure of (PersonPolicy.part_candidates) waits; the other
        boxes are screened by the verifier and estimated, all the pictures' crops in one batch (what makes folders
        of one-person photos fast). A waiting box whose sure person came out kept and ranked above anything it
        could be (PersonPolicy.decided_parts) is a part of that person, as the policy would rule after posing it,
        so neither the verifier nor the network is spent on it; the others are screened and estimated in a second
        batch. Then the policy's decisions on every pose, in the boxes' own order.

        carried: per picture, poses made before this frame and carried into it by a tracker (optical flow), to be
        judged with the fresh ones by the one policy (two poses of one person, a pose over two); they keep their
        numbers, and the fresh poses are rated among all of them."""
        prepared = []
        for bgr, boxes, scores, origins in items:
            boxes, scores = np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
            origins = np.array(np.broadcast_to(np.asarray(origins, object), (len(boxes),)))
            factor = self.sure_factor(bgr, origins)
            prepared.append((bgr, boxes, scores, origins, factor))
        waiting = [self.policy.part_candidates(boxes, scores, origins, factor)
                   for _, boxes, scores, origins, factor in prepared]
        first = self._screened_people(prepared, [~w for w in waiting])
        later_rows = []
        for (_, boxes, scores, _, factor), w, posed in zip(prepared, waiting, first):
            rows = np.flatnonzero(w)
            if self.evidence is not None and len(rows) >= 2:   # a box holding two of them may frame two people
                self.evidence([p for _, p in posed])
            decided = self.policy.decided_parts(boxes[rows], scores[rows], [p for _, p in posed], factor)
            later = np.zeros(len(boxes), bool)
            later[rows[~decided]] = True
            later_rows.append(later)
        second = self._screened_people(prepared, later_rows) if any(r.any() for r in later_rows) else \
            [[] for _ in prepared]
        posed, extra = [], iter(carried or [])
        for (_, _, _, _, factor), a, b in zip(prepared, first, second):
            people = [p for _, p in sorted(a + b, key=lambda row: row[0])] + list(next(extra, []))
            if self.refine is not None:   # looks: who is somebody by their own pose goes on to the refinement
                people = self.policy.somebody(people, [p.box_origin for p in people], factor)
            posed.append(people)
        if self.refine is not None:       # every picture's in one batch
            self.refine([p for people in posed for p in people])
        # the rules of place (one person once, merges, parts) on the poses as reported, refined where staged
        kept = [self.policy.keep(people, [p.box_origin for p in people], mode, factor)
                for people, (*_, factor) in zip(posed, prepared)]
        return [self.rated(people, bgr.shape[1::-1]) for people, (bgr, *_) in zip(kept, prepared)]

    def _screened_people(self, prepared: list, rows: list) -> list[list[tuple[int, object]]]:
        """The boxes chosen by `rows` ((N,) bool per picture) screened by the verifier and estimated in one batch:
        (box index, person) pairs per picture for the boxes that passed the screen, each person with its origin
        and p(person)."""
        screened = []
        for (bgr, boxes, scores, origins, factor), chosen in zip(prepared, rows):
            index = np.flatnonzero(chosen)
            b, s, o = boxes[index], scores[index], origins[index]
            judged = (o == DETECTED) | (o == CARRIED)
            p = None
            if self.verifier is not None and judged.any():
                p = np.full(len(b), np.nan)
                p[judged] = self.verifier(bgr, b[judged])
            keep = self.policy.screen(o, s, p, factor)
            screened.append((bgr, b[keep], s[keep], o[keep], None if p is None else p[keep], index[keep]))
        estimated = self.estimate([(bgr, b, s) for bgr, b, s, *_ in screened])
        out = []
        for people, (_, _, _, origins, p, index) in zip(estimated, screened):
            for j, person in enumerate(people):
                person.box_origin = origins[j]
                if p is not None and np.isfinite(p[j]):
                    person.person_probability = float(p[j])
            out.append(list(zip(index.tolist(), people)))
        return out

    def rated(self, people: list, picture_wh) -> list:
        """The people with the pose quality of each found box (is_found) rated among the picture's people
        (`reported`), the crop's own kept as crop_quality; the caller's boxes (given, the whole picture) and poses
        carried in as they were."""
        found = [p for p in people if self.is_found(p)]
        if self.reported is None or not found:
            return people
        every = lambda name: None if any(getattr(p, name) is None for p in people) else \
            np.stack([np.asarray(getattr(p, name), float) for p in people])  # noqa: E731
        crop = [p.pose_quality if p.crop_quality is None else p.crop_quality for p in people]
        features = reported_features(every("keypoints"), every("box"), crop,
                                     picture_wh, every("visibility_probs"), every("in_frame"),
                                     [np.nan if p.person_probability is None else p.person_probability
                                      for p in people], [p.box_score for p in people], every("keypoint_quality"))
        quality = self.reported(features, crop)
        for p, c, q in zip(people, crop, quality):
            if self.is_found(p):
                p.crop_quality, p.pose_quality, p.quality_from = float(c), float(q), "picture"
                if "oks" in p.scores:          # the results' score in its default mode is the pose quality
                    p.scores["oks"] = float(q)
        return people

    @staticmethod
    def is_found(person) -> bool:
        """A pose the network made this frame on a box posecal found (detected, or carried from a track): what the
        reported-pose map rates. The caller's boxes keep their crop's quality, and a pose carried in by optical
        flow keeps the numbers it was rated with."""
        return person.box_origin in (DETECTED, CARRIED) and person.pose_source == "detected"

    def sure_factor(self, bgr: np.ndarray, origins) -> float:
        """How the detector scaled its threshold for this picture (the shipped SSD lowers it for grey pictures),
        so that the policy's sure score moves with it; 1 for other detectors and for pictures without detections."""
        if self.detector is None or not hasattr(self.detector, "threshold_factor") or \
                not np.any(np.asarray(origins, object) == DETECTED):
            return 1.0
        return self.detector.threshold_factor(bgr)

    def __call__(self, bgr: np.ndarray, mode: str | None = None) -> list:
        """The people in one BGR picture, boxes found by the pipeline."""
        return self.people([(bgr, *self.boxes(bgr))], mode)[0]
