"""Places where the detector keeps seeing a person and the tracker never does: a tripod, a lamp post, a bin.

Why: a frame-wise person detector at a threshold low enough to find small and partly hidden people also fires,
frame after frame, on the same few things of a static scene (vtest_pedestrians_20s.avi: a tripod and a lamp post in
most detector frames). Each such box costs a pose-network pass and, when its pose looks good enough once, a
false track. The scene's history says what the threshold alone cannot: a place where detections of low score came
`strikes` detector frames without a pose the tracker took is nobody; later detections there of a score
below `max_score` get no pose, unless a track's box reaches them (a person walking past the tripod is followed as
before). A place is forgotten when the detector stops firing there, and at once when a pose there is taken.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posecal.metrics.boxes import box_iou


@dataclass
class NobodyConfig:
    strikes: int = 3            # detections at a place whose pose the tracker did not take, before it is skipped
    same_place: float = 0.6     # IoU at which two detections are one place
    max_score: float = 0.5      # detections of this score or more always get a pose
    forget: int = 10            # detector frames without a detection there before a place is forgotten
    track_overlap: float = 0.2  # a detection a track's box overlaps by this IoU always gets a pose


@dataclass
class _Place:
    box: np.ndarray
    strikes: int = 1
    last: int = 0               # the detector frame (count) it was last seen


@dataclass
class NobodyPlaces:
    """Per video: `skipped(boxes, scores, held)` before the pose network on a detector frame, `learn(boxes,
    used)` after the tracker."""
    cfg: NobodyConfig = field(default_factory=NobodyConfig)
    places: list = field(default_factory=list)
    frame: int = 0

    def skipped(self, boxes: np.ndarray, scores: np.ndarray, held: np.ndarray) -> np.ndarray:
        """(M,) bool: detector boxes to give no pose (a known place of nobody, low score, no track near)."""
        boxes, held = np.asarray(boxes, float).reshape(-1, 4), np.asarray(held, float).reshape(-1, 4)
        skip = np.zeros(len(boxes), bool)
        known = [p.box for p in self.places if p.strikes >= self.cfg.strikes]
        if not len(boxes) or not known:
            return skip
        at_place = box_iou(boxes, np.array(known)).max(1) >= self.cfg.same_place
        near_track = box_iou(boxes, held).max(1) >= self.cfg.track_overlap if len(held) else np.zeros(len(boxes), bool)
        return at_place & (np.asarray(scores, float) < self.cfg.max_score) & ~near_track

    def learn(self, boxes: np.ndarray, used: np.ndarray) -> None:
        """After a detector frame: `boxes` the detections of low score (all of them, skipped ones too), `used`
        whether the tracker took each one's pose (skipped ones: False)."""
        self.frame += 1
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        for box, took in zip(boxes, used):
            iou = box_iou(box[None], np.array([p.box for p in self.places]))[0] if self.places else np.zeros(0)
            j = int(iou.argmax()) if len(iou) else -1
            if took:
                if j >= 0 and iou[j] >= self.cfg.same_place:
                    del self.places[j]
                continue
            if j >= 0 and iou[j] >= self.cfg.same_place:
                place = self.places[j]
                place.strikes += 1
                place.box, place.last = box, self.frame
            else:
                self.places.append(_Place(box, last=self.frame))
        self.places = [p for p in self.places if self.frame - p.last < self.cfg.forget]
