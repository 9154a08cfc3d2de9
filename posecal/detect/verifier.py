"""p(person | box, picture): a verifier with eyes of its own, run by onnxruntime.

Why: a person detector's score says how much a box looks like its training boxes, and posecal's pose numbers say
how body-like the keypoints found in it are. Neither tells a tripod or a sign post (few visible joints, middling
pose quality) from a person seen from behind, nor a box on a person's legs from a person cut by the frame. The
verifier looks at the picture itself: an ImageNet EfficientNet-Lite0 reads the box with a ring of context around
it, its features are pooled inside the box and in the ring apart (the ring is what tells a part of a person, whose
body goes on past the box, from a whole or frame-cut one), and a small head trained on labelled people and the
boxes detectors take for people gives a calibrated probability that the box frames a person (IoU >= 0.5 with one).
It reads no detector score and no pose, so it judges boxes of any origin alike: a detector's, a tracker's carried
box, a tile of the second look (tools/train_person_verifier.py trains it; MODEL_CARD.md says on what and how well).

The graph (posecal/weights/person_verifier.onnx) takes the crops made here and a mask of where the box lies in
each crop, and gives p(person) directly (its calibration is inside).
"""
from __future__ import annotations

import json
from functools import lru_cache
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
        self.info = graph_record(self.path)

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


def remapped(p, a: float, b: float) -> np.ndarray:
    """p(person) moved through the map logit' = a * logit(p) + b (what tools/recalibrate_verifier.py folds into the
    graph, and what the person policy's thresholds were moved through)."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return 1 / (1 + np.exp(-(a * np.log(p / (1 - p)) + b)))


def _varint(f) -> int | None:
    """The next protobuf varint of file `f`; None at its end."""
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        shift += 7
        if byte[0] < 0x80:
            return value


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The (field number, bytes) of the length-delimited fields of a small protobuf message."""
    import io

    f, out = io.BytesIO(data), []
    while (tag := _varint(f)) is not None:
        out += _field(f, tag, None)
    return out


def _field(f, tag: int, wanted: int | None) -> list[tuple[int, bytes]]:
    """One field read (length-delimited, numbered `wanted` or any where None: [(number, its bytes)]) or skipped
    ([]); the graph's weights, the bulk of the file, are skipped by seeking past them."""
    kind = tag & 7
    if kind == 2:
        n = _varint(f)
        if wanted is not None and tag >> 3 != wanted:
            f.seek(n, 1)
            return []
        return [(tag >> 3, f.read(n))]
    if kind == 0:
        _varint(f)
    else:
        f.seek({1: 8, 5: 4}[kind], 1)
    return []


ONNX_METADATA_FIELD = 14   # ModelProto.metadata_props (onnx.proto): StringStringEntryProto, key 1, value 2


@lru_cache(maxsize=8)
def graph_record(path: Path | str = SHIPPED_VERIFIER) -> dict:
    """A verifier graph's record (its metadata under METADATA_KEY: what it was trained on, how well it did, the map
    its p(person) was moved through), read from the file's top-level fields without loading the graph (onnx, the
    package, is not a dependency; the person policy reads the map as it is imported); {} where it has none."""
    with open(path, "rb") as f:
        entries = []
        while (tag := _varint(f)) is not None:
            entries += _field(f, tag, ONNX_METADATA_FIELD)
    for _, entry in entries:
        kv = dict(_fields(entry))
        if kv.get(1, b"").decode() == METADATA_KEY:
            return json.loads(kv.get(2, b"{}").decode())
    return {}


def shipped_map() -> tuple[float, float]:
    """(a, b) of the map logit' = a * logit(p) + b that the shipped verifier's graph records it folded in
    (tools/recalibrate_verifier.py: its p(person) moved to the people the product reports); (1, 0), no map, where
    this install has no shipped verifier or its graph records none."""
    record = graph_record(SHIPPED_VERIFIER).get("reported_calibration", {}) if SHIPPED_VERIFIER.is_file() else {}
    return float(record.get("a", 1.0)), float(record.get("b", 0.0))
