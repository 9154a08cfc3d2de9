"""A turned look for people upside down: the detector again on the picture turned half a turn.

Why: person detectors learn upright people. A gymnast on the bars or a handstand is found by no box at all, and
`--orientations 4|auto`, which turns a person's crop until the pose network trusts it, had nothing to turn. Run on
the picture turned 180 degrees, the same detector sees that person upright; its boxes, turned back, join the
upright look's under the detector's own NMS. It is asked for with the orientations (the cost the user accepted
there for people lying or upside down): one more detector run a picture.
"""
from __future__ import annotations

import cv2
import numpy as np

from posecal.detect.runtime import AnotherLook, clip_and_suppress


def turned_back(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Boxes (x, y, w, h) found in a W x H picture turned 180 degrees -> the same boxes in the picture itself."""
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.stack([w - b[:, 0] - b[:, 2], h - b[:, 1] - b[:, 3], b[:, 2], b[:, 3]], 1)


class TurnedLook(AnotherLook):
    """A person detector (BGR picture -> boxes x, y, w, h and scores) that runs `detector` on the picture and on the
    picture turned half a turn, and merges both looks' boxes by the detector's NMS (best score first)."""

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = bgr.shape[:2]
        boxes, scores = self.detector(bgr)
        turned, turned_scores = self.detector(cv2.rotate(bgr, cv2.ROTATE_180))
        if not len(turned_scores):
            return boxes, scores
        every = np.concatenate([np.asarray(boxes, float).reshape(-1, 4), turned_back(turned, w, h)])
        every_scores = np.concatenate([np.asarray(scores, float).reshape(-1), np.asarray(turned_scores, float)])
        # both looks' scores passed the detector's threshold already: 0 keeps them all
        return clip_and_suppress(every, every_scores, w, h, 0.0, self.nms_threshold)
