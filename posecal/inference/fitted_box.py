"""The box a person is reported with, fitted to their pose: where a detector's box is loose (a partly hidden
person, a box carried from an earlier frame) the keypoints say where the person is."""
from __future__ import annotations

import numpy as np

BOX_PAD = (0.08, 0.12, 0.06)   # sides, above the top keypoint, below the lowest, x the keypoints' height


def fitted_box(person, width: int, height: int) -> np.ndarray:
    """The mean of the box the pose was estimated in (a detector's, or one carried from it) and the box around the
    keypoints the model sees (visibility > 0; all of them when fewer than 3), padded by BOX_PAD for the head's top
    above the eyes and the soles below the ankles, both clipped to the picture (x, y, w, h). Why the mean: a
    detector box is loose around a partly hidden person and a carried box keeps the detector's size and place from
    frames before, while the keypoints follow the person but miss the head's top and the feet; the mean fits the
    true box better than either (docs/tracking.md, "Reported box")."""
    xy = np.asarray(person.keypoints, float)
    seen = np.ones(len(xy), bool) if person.visibility is None else np.asarray(person.visibility) > 0
    xy = xy[seen] if seen.sum() >= 3 else xy
    lo, hi = xy.min(0), xy.max(0)
    tall = hi[1] - lo[1]
    lo, hi = lo - [BOX_PAD[0] * tall, BOX_PAD[1] * tall], hi + [BOX_PAD[0] * tall, BOX_PAD[2] * tall]
    box = np.asarray(person.box, float)
    lo, hi = 0.5 * (lo + box[:2]), 0.5 * (hi + box[:2] + box[2:])
    lo, hi = np.clip(lo, 0, [width, height]), np.clip(hi, 0, [width, height])
    return np.r_[lo, np.maximum(hi - lo, 1.0)]
