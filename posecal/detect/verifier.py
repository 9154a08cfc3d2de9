"""p(person | box, picture): a verifier with eyes of its own, run by onnxruntime.

Why: neither a detector's score nor the pose's numbers tell a tripod from a person seen from behind, nor a box on
a person's legs from a person cut by the frame. The verifier looks at the picture: an ImageNet EfficientNet-Lite0
reads the box with a ring of context, pooled inside the box and in the ring apart (the ring tells a part of a
person from a whole one), and a small head gives a calibrated probability that the box frames a person (IoU >= 0.5
with one). It reads no detector score and no pose, so it judges boxes of any origin alike
(tools/train_person_verifier.py; MODEL_CARD.md).

The graph (posecal/weights/person_verifier.onnx) takes the crops made here and a mask of the box in each crop, and
gives p(person) directly (its calibration is inside).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from posecal.data.crops import crops_to_batch
from posecal.detect.runtime import open_session
from posecal.errors import PosecalInputError

SHIPPED_VERIFIER = Path(__file__).parent.parent / "weights" / "person_verifier.onnx"
METADATA_KEY = "posecal_verifier"   # the graph's record: what it was trained on, how well it did
# the crop: the box grown by CONTEXT in width and height about its centre, then widened or heightened to the
# input's aspect (a lying person stays undistorted), warped to INPUT_HW; outside the picture is black, as the
# crops of people cut by the frame that it learned from
CONTEXT = 1.3
INPUT_HW = (192, 128)
STRIDE = 32
MASK_HW = (INPUT_HW[0] // STRIDE, INPUT_HW[1] // STRIDE)
BATCH = 32


def crop_regions(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, w, h boxes -> (N, 4) x, y, w, h regions the verifier reads."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    w, h = np.maximum(boxes[:, 2], 2) * CONTEXT, np.maximum(boxes[:, 3], 2) * CONTEXT
    aspect = INPUT_HW[0] / INPUT_HW[1]
    w, h = np.maximum(w, h / aspect), np.maximum(h, w * aspect)
    return np.stack([cx - w / 2, cy - h / 2, w, h], 1)


def box_masks(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, 1, MH, MW) share of each feature cell that lies inside the box (the region's grid)."""
    n = len(boxes)
    mh, mw = MASK_HW
    x0 = (boxes[:, 0] - regions[:, 0]) / regions[:, 2] * mw
    x1 = (boxes[:, 0] + boxes[:, 2] - regions[:, 0]) / regions[:, 2] * mw
    y0 = (boxes[:, 1] - regions[:, 1]) / regions[:, 3] * mh
    y1 = (boxes[:, 1] + boxes[:, 3] - regions[:, 1]) / regions[:, 3] * mh
    cols, rows = np.arange(mw)[None], np.arange(mh)[None]
    fx = np.clip(np.minimum(cols + 1, x1[:, None]) - np.maximum(cols, x0[:, None]), 0, 1)     # (N, MW)
    fy = np.clip(np.minimum(rows + 1, y1[:, None]) - np.maximum(rows, y0[:, None]), 0, 1)     # (N, MH)
    return (fy[:, :, None] * fx[:, None, :]).reshape(n, 1, mh, mw).astype(np.float32)


def verifier_crops(bgr: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The (INPUT_HW) BGR uint8 crops the verifier reads for (N, 4) boxes of one picture."""
    regions = crop_regions(boxes)
    out = []
    for rx, ry, rw, rh in regions:
        s = INPUT_HW[0] / rh
        m = np.array([[s, 0, -rx * s], [0, s, -ry * s]], np.float32)
        out.append(cv2.warpAffine(bgr, m, (INPUT_HW[1], INPUT_HW[0]), flags=cv2.INTER_AREA if s < 1 else
                                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)))
    return out


def verifier_inputs(bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised crops (N, 3, H, W) float32, box masks (N, 1, MH, MW)) for (N, 4) boxes of one picture."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros((0, 3, *INPUT_HW), np.float32), np.zeros((0, 1, *MASK_HW), np.float32)
    return crops_to_batch(verifier_crops(bgr, boxes)), box_masks(boxes, crop_regions(boxes))


class PersonVerifier:
    """p(person) of boxes in a picture. `verifier(bgr, boxes)` -> (N,) probabilities."""

    def __init__(self, path: Path | str = SHIPPED_VERIFIER, threads: int = 2):
        self.path = Path(path)
        if not self.path.is_file():
            raise PosecalInputError(f"{self.path}: person verifier file not found (--verifier default|none|FILE.onnx)")
        self.session = open_session(self.path, threads)
        self.info = graph_record(self.session, self.path)
        # the map logit' = a * logit(p) + b its graph folded into p(person) (tools/recalibrate_verifier.py): the
        # person policy's thresholds, chosen on the verifier's own scale, are moved through it (PersonPolicy.on_scale)
        calibration = self.info.get("reported_calibration", {})
        self.scale_map = (float(calibration.get("a", 1.0)), float(calibration.get("b", 0.0)))

    def __call__(self, bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, masks = verifier_inputs(bgr, boxes)
        out = [self.session.run(None, {"crops": crops[i:i + BATCH], "masks": masks[i:i + BATCH]})[0].reshape(-1)
               for i in range(0, len(crops), BATCH)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def open_verifier(spec, threads: int = 2) -> PersonVerifier | None:
    """The verifier a user asked for: "default" = the shipped one (None where this install has none: a source
    tree before it was trained), a path = that ONNX file, None or "none" = none."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return None
    if isinstance(spec, PersonVerifier):
        return spec
    if str(spec) == "default":
        return PersonVerifier(SHIPPED_VERIFIER, threads) if SHIPPED_VERIFIER.is_file() else None
    return PersonVerifier(spec, threads)


def graph_record(session, path: Path) -> dict:
    """A verifier graph's record, from the opened session's model metadata under METADATA_KEY (what it was trained
    on, how well it did, the map its p(person) was moved through); {} where it has none. An unreadable record is
    one PosecalInputError line naming the file."""
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        return {}
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise PosecalInputError(f"{path}: metadata {METADATA_KEY!r} is not JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise PosecalInputError(f"{path}: metadata {METADATA_KEY!r} is not a JSON object")
    return record


def remapped(p, a: float, b: float) -> np.ndarray:
    """p(person) moved through the map logit' = a * logit(p) + b (what tools/recalibrate_verifier.py folds into the
    graph, and what the person policy's thresholds were moved through)."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return 1 / (1 + np.exp(-(a * np.log(p / (1 - p)) + b)))
