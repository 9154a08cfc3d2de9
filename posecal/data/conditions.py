"""Labelled persons under the conditions users run posecal in, made from a labelled set.

Why: a calibration fitted on whole, upright people with their annotators' boxes says nothing of a person the
frame cuts at the waist or of a detector's box. These builders turn labelled persons into such cases with the
truth still exact, so the trust model can be judged (posecal/evaluation/conditions.py) and calibrated over them:

- `cut_by_frame`: the picture ends inside the person (keep the top, the bottom or one side at 35-70 % of the
  labelled keypoints' extent). The image is really cropped there (no black band: the picture ends, as a webcam's
  does), the box is clipped to what is left, keypoints beyond the edge become not labelled (v = 0) and are
  returned as `cut_off`, and `area` stays the whole person's (COCO's OKS scale of the person, not of the part
  that is left).
- `jittered_boxes`: each box moved and rescaled as a detector's differs from an annotator's.

Everything is seeded per person (its annotation id), so a condition is the same set on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from posecal.data.coco import PersonRecord, read_image
from posecal.data.transforms import jitter_box

# (kept part, odds): a webcam or a tight shot keeps the top of a person far more often than anything else
CUT_KEEPS = (("top", 0.5), ("bottom", 0.1), ("left", 0.2), ("right", 0.2))
CUT_KEEP_RANGE = (0.35, 0.70)
BOX_JITTER = 0.1


@dataclass
class CutPerson:
    record: PersonRecord      # the cut person: its own image file, clipped box, keypoints in the cut picture
    cut_off: np.ndarray       # (K,) bool: labelled before the cut, beyond the picture's edge now
    keep: str                 # which part of the person the picture keeps
    fraction: float           # the kept share of the labelled keypoints' extent


def cut_geometry(keypoints: np.ndarray, keep: str, fraction: float) -> tuple[int, int, int, int] | None:
    """The kept window (x0, y0, x1, y1) of an image as rows/columns to slice, in whole pixels, for keeping
    `fraction` of the labelled keypoints' extent on side `keep`; None when fewer than two keypoints are
    labelled. x1/y1 None-like values are returned as -1 (to the image's end)."""
    lab = keypoints[:, 2] > 0
    if lab.sum() < 2:
        return None
    lo, hi = keypoints[lab, :2].min(0), keypoints[lab, :2].max(0)
    ext = hi - lo
    if keep == "top":
        return 0, 0, -1, int(round(lo[1] + fraction * ext[1]))
    if keep == "bottom":
        return 0, int(round(hi[1] - fraction * ext[1])), -1, -1
    if keep == "left":
        return 0, 0, int(round(lo[0] + fraction * ext[0])), -1
    if keep == "right":
        return int(round(hi[0] - fraction * ext[0])), 0, -1, -1
    raise ValueError(f"keep must be top/bottom/left/right, got {keep!r}")


def cut_person(image: np.ndarray, rec: PersonRecord, keep: str, fraction: float):
    """(cut image, keypoints (K, 3) in it, clipped box, cut_off mask), or None when nothing sensible is left.
    Integer coordinates are pixel centres: a keypoint is in the picture when it lies within the kept pixels'
    edges (-0.5 .. size - 0.5)."""
    win = cut_geometry(rec.keypoints, keep, fraction)
    if win is None:
        return None
    h, w = image.shape[:2]
    x0, y0, x1, y1 = win
    x1, y1 = (w if x1 < 0 else x1), (h if y1 < 0 else y1)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    kp = rec.keypoints.astype(np.float64).copy()
    kp[:, 0] -= x0
    kp[:, 1] -= y0
    nw, nh = x1 - x0, y1 - y0
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] < nw - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] < nh - 0.5)
    cut_off = (kp[:, 2] > 0) & ~inside
    kp[cut_off] = 0.0
    bx, by, bw, bh = (float(v) for v in rec.bbox)
    bx0, by0 = max(bx - x0, 0.0), max(by - y0, 0.0)
    bx1, by1 = min(bx + bw - x0, float(nw)), min(by + bh - y0, float(nh))
    if bx1 - bx0 < 4 or by1 - by0 < 4 or not (kp[:, 2] > 0).any():
        return None
    return image[y0:y1, x0:x1].copy(), kp, np.array([bx0, by0, bx1 - bx0, by1 - by0]), cut_off


def cut_by_frame(records: list[PersonRecord], out_dir, seed: int = 0, keeps=CUT_KEEPS,
                 keep_range: tuple[float, float] = CUT_KEEP_RANGE) -> list[CutPerson]:
    """Each person cut by the frame as a seeded draw of (kept side, kept share): the side from keeps ((side,
    odds), ...), the share uniform in keep_range. The cut pictures are written to out_dir as PNG (lossless: the
    cut adds no compression of its own) and reused when already there, so each draw needs its own out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sides, odds = zip(*keeps)
    people = []
    for rec in records:
        rng = np.random.default_rng((seed, int(rec.ann_id) & 0x7FFFFFFF))
        keep = sides[rng.choice(len(sides), p=np.array(odds) / sum(odds))]
        fraction = float(rng.uniform(*keep_range))
        image = read_image(rec.image_path)
        made = cut_person(image, rec, keep, fraction)
        if made is None:
            continue
        cut, kp, box, cut_off = made
        path = out / f"cut_{rec.ann_id}_{keep}_{int(fraction * 100)}.png"
        if not path.is_file():
            tmp = path.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), cut)
            tmp.replace(path)
        people.append(CutPerson(replace(rec, image_path=str(path), bbox=box, keypoints=kp,
                                        file_name=path.name), cut_off, keep, fraction))
    return people


def jittered_boxes(records: list[PersonRecord], seed: int = 0, strength: float = BOX_JITTER) -> list[PersonRecord]:
    """The same persons with detector-like boxes (posecal.data.transforms.jitter_box); a box reaching past the
    picture is kept as it is (posecal pads crops, as it does for a detector's box at the edge)."""
    out = []
    for rec in records:
        rng = np.random.default_rng((seed, 1, int(rec.ann_id) & 0x7FFFFFFF))
        out.append(replace(rec, bbox=jitter_box(rec.bbox, strength, rng)))
    return out
