"""Both shipped person detectors on one picture, the SSD (detect/ssd.py) and NanoDet-m (detect/nanodet.py), their
boxes merged (`--detector ssd+nanodet`). Why: they miss different people (NanoDet more overall, the SSD more small).

A common score scale: each box's score is mapped piecewise-linearly so that its own detector's working threshold
for this picture (the SSD's lowered for grey pictures) lands on COMMON_SURE: [0, sure] -> [0, COMMON_SURE],
[sure, 1] -> [COMMON_SURE, 1]. COMMON_SURE is the SSD's threshold, so an SSD box on a colour picture keeps its
score, and the person policy's DETECTOR_FLOOR and SURE_SCORE work on merged scores as on the SSD's. The grey rule is
folded into the map, so the union's threshold_factor is 1.

The merge: each detector's own NMS, then one greedy pass, best merged score first, dropping a box that overlaps
(IoU > merge_iou) a kept box of the *other* detector.

Not the default: a few more people found on held-out photos for about twice the pose crops (CHANGELOG).
"""
from __future__ import annotations

import numpy as np

from posecal.detect.nanodet import NANODET_THRESHOLD, NanoDetPersonDetector
from posecal.detect.runtime import detector_input
from posecal.detect.ssd import SsdPersonDetector
from posecal.metrics.boxes import box_iou

COMMON_SURE = 0.3         # the SSD's own working threshold (and person_policy.SURE_SCORE)
SSD_SURE = 0.3            # the SSD's working threshold (ssd.py)
MERGE_IOU = 0.6           # IoU above which the two detectors' boxes are one person (chosen on a tuning photo set)


def to_common(scores, sure: float) -> np.ndarray:
    """A detector's scores -> the common scale: its own sure threshold `sure` -> COMMON_SURE, piecewise linear,
    0 -> 0 and 1 -> 1 (monotone, so each detector's own ranking and NMS are untouched)."""
    s = np.asarray(scores, np.float64)
    return np.where(s < sure, s * (COMMON_SURE / sure),
                    COMMON_SURE + (s - sure) * ((1.0 - COMMON_SURE) / (1.0 - sure)))


def from_common(threshold: float, sure: float) -> float:
    """The threshold on a detector's own scale (sure threshold `sure`) that is `threshold` on the common scale."""
    t = float(threshold)
    return t * sure / COMMON_SURE if t < COMMON_SURE else sure + (t - COMMON_SURE) * (1.0 - sure) / (1.0 - COMMON_SURE)


def merge_detections(parts: list, threshold: float, merge_iou: float = MERGE_IOU
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """parts: per detector (boxes (M, 4) x, y, w, h, scores (M,) on the common scale), each after its own NMS ->
    (boxes, common scores, source (which part), index within its part), best first: the boxes scored >= threshold,
    a box dropped where it overlaps (IoU > merge_iou) a higher-scored kept box of another part (ties: the earlier
    part first)."""
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b, _ in parts]
    scores = [np.asarray(s, np.float64).reshape(-1) for _, s in parts]
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
    source = np.concatenate([np.full(len(s), k) for k, s in enumerate(scores)]).astype(np.int64)
    index = np.concatenate([np.arange(len(s)) for s in scores]).astype(np.int64)
    order = np.lexsort((index, source, -all_scores))   # best first; ties: earlier part, then own order
    order = order[all_scores[order] >= threshold]
    kept: list[int] = []
    for i in order:
        others = [k for k in kept if source[k] != source[i]]
        if others and (box_iou(all_boxes[i], all_boxes[others]) > merge_iou).any():
            continue
        kept.append(int(i))
    keep = np.asarray(kept, np.int64)
    return all_boxes[keep].reshape(-1, 4), all_scores[keep], source[keep], index[keep]


class UnionPersonDetector:
    """The shipped SSD and NanoDet-m on one picture, boxes merged on a common score scale (see the module).

    Called like the other detectors: BGR uint8 (H, W, 3) -> boxes (M, 4) x, y, w, h and scores (M,), best first.
    score_threshold is on the common scale: the default COMMON_SURE keeps each detector's boxes at its own working
    threshold; `merge_iou` is the box IoU above which boxes of the two detectors are one person."""

    def __init__(self, score_threshold: float = COMMON_SURE, merge_iou: float = MERGE_IOU, threads: int = 2,
                 device: str = "cpu"):
        self.score_threshold, self.merge_iou = float(score_threshold), float(merge_iou)
        self.sures = (SSD_SURE, NANODET_THRESHOLD)
        # each runs at the threshold's image on its own scale; the SSD lowers its own for grey pictures, which
        # is at or below the image of the grey sure score (the merge thresholds the common scores exactly)
        self.detectors = (SsdPersonDetector(score_threshold=from_common(self.score_threshold, SSD_SURE),
                                            threads=threads, device=device),
                          NanoDetPersonDetector(score_threshold=from_common(self.score_threshold, NANODET_THRESHOLD),
                                                threads=threads, device=device))

    @property
    def nms_threshold(self) -> float:
        """The box IoU above which two boxes are one person (SecondLook merges its tiles' boxes with it)."""
        return self.merge_iou

    @staticmethod
    def threshold_factor(bgr: np.ndarray) -> float:
        """1: the merged scores already count each detector's grey-picture rule (the module says how)."""
        return 1.0

    def sure_scores(self, bgr: np.ndarray) -> tuple[float, ...]:
        """Each detector's own sure threshold for this picture (the SSD's lowered for a grey one)."""
        return tuple(s * d.threshold_factor(bgr) for s, d in zip(self.sures, self.detectors))

    def merge(self, bgr: np.ndarray, outputs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The detectors' own (boxes, scores) on `bgr` -> merge_detections' (boxes, common scores, source, index)."""
        parts = [(b, to_common(s, sure)) for (b, s), sure in zip(outputs, self.sure_scores(bgr))]
        return merge_detections(parts, self.score_threshold, self.merge_iou)

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bgr = detector_input(bgr)
        boxes, scores, _, _ = self.merge(bgr, [d(bgr) for d in self.detectors])
        return boxes, scores
