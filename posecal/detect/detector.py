"""Person detectors for the top-down pipeline: `load_detector` picks the shipped SSD (posecal/detect/ssd.py),
none, or a YOLOX-style ONNX file (YOLOX-Nano, Light Person Detector), decoded here.

The network sees the image resized with its aspect ratio kept (ratio r = min(S/h, S/w)) and pasted at the
top-left of an SxS canvas filled with 114, BGR 0..255 float32, no normalisation. Its raw output rows are
anchor points ordered by stride (8, 16, 32) and row-major over each stride's grid; each row is
(x, y, w, h, objectness, class scores...), the scores already through a sigmoid.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posecal.errors import PosecalInputError, require

STRIDES = (8, 16, 32)
PAD_VALUE = 114

# Whole-image mode: a pose below this predicted OKS, or with no keypoint predicted visible, is nobody. Measured
# (bench/detector_recall.py --pose: the 822 val crops seen whole, each crop twice its person's box; 22 photos
# without people): keeps 72.9% of the crops' people and 2 of the 22 non-people. The OKS head alone (no
# visibility rule) keeps 97.1% and 13 of 22: it cannot tell a cat from a person seen whole. 0 keeps every pose.
MIN_POSE_QUALITY = 0.3


def anchor_grid(input_size: int, strides=STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell (gx, gy) (A, 2) and stride (A,) of every output row, in the head's row order."""
    cells, cell_strides = [], []
    for s in strides:
        n = input_size // s
        gy, gx = np.mgrid[0:n, 0:n]  # row-major: gx varies fastest
        cells.append(np.stack([gx.ravel(), gy.ravel()], 1))
        cell_strides.append(np.full(n * n, s))
    return np.concatenate(cells).astype(np.float64), np.concatenate(cell_strides).astype(np.float64)


def decode_yolox(raw: np.ndarray, input_size: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw head output (A, 5+C) -> person boxes (A, 4) as top-left x, y, w, h in original-image pixels,
    and person scores (A,) = objectness * class-0 score. No thresholding here."""
    raw = np.asarray(raw, dtype=np.float64)
    cells, strides = anchor_grid(input_size)
    if raw.ndim != 2 or raw.shape[1] < 6 or raw.shape[0] != len(cells):
        raise ValueError(f"raw output of shape {raw.shape} does not fit a {input_size}px YOLOX head "
                         f"({len(cells)} anchors x (5 + classes))")
    centre = (raw[:, :2] + cells) * strides[:, None]
    size = np.exp(raw[:, 2:4]) * strides[:, None]
    boxes = np.concatenate([centre - size / 2, size], 1) / ratio
    return boxes, raw[:, 4] * raw[:, 5]


class PersonDetector:
    """Person boxes from a YOLOX-style ONNX model: letterbox -> onnxruntime -> decode -> threshold -> NMS."""

    def __init__(self, path, score_threshold: float = 0.3, nms_threshold: float = 0.5, threads: int = 2):
        path = Path(path)
        self.session = open_session(path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        in_shape = inputs[0].shape if len(inputs) == 1 else None
        out_shape = outputs[0].shape if outputs else None
        ok = (in_shape is not None and out_shape is not None and len(in_shape) == 4 and len(out_shape) == 3
              and all(isinstance(d, int) for d in list(in_shape[1:]) + list(out_shape[1:])))
        if ok:
            size = in_shape[2]
            ok = (in_shape[1] == 3 and in_shape[3] == size and size % max(STRIDES) == 0
                  and out_shape[1] == len(anchor_grid(size)[1]) and out_shape[2] >= 6)
        if not ok:
            raise PosecalInputError(f"{path}: not a YOLOX-style detector (input {in_shape}, output {out_shape}; "
                                    "expected 1x3xSxS and 1xAx(5+classes))")
        self.path = path
        self.input_name = inputs[0].name
        self.input_size = int(size)
        self.num_classes = int(out_shape[2]) - 5
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def preprocess(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """Aspect-kept resize pasted top-left on a 114 canvas; returns (1x3xSxS float32, ratio)."""
        h, w = bgr.shape[:2]
        size = self.input_size
        ratio = min(size / h, size / w)
        nw, nh = max(1, int(w * ratio)), max(1, int(h * ratio))
        canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return canvas.transpose(2, 0, 1)[None].astype(np.float32), ratio

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR uint8 image (H, W, 3) -> boxes (M, 4) top-left x, y, w, h in image pixels and scores (M,),
        best first; (0, 4) and (0,) when nobody is found."""
        bgr = np.asarray(bgr)
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] < 1 or bgr.shape[1] < 1:
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {bgr.shape}")
        if bgr.dtype != np.uint8:
            bgr = np.clip(bgr, 0, 255).astype(np.uint8)
        blob, ratio = self.preprocess(bgr)
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        boxes, scores = decode_yolox(raw, self.input_size, ratio)
        h, w = bgr.shape[:2]
        return clip_and_suppress(boxes, scores, w, h, self.score_threshold, self.nms_threshold)


def open_session(path: Path, threads: int):
    """An onnxruntime CPU session for a detector file; a missing or unloadable file is one clear line."""
    ort = require("onnxruntime")
    if not path.is_file():
        raise PosecalInputError(f"{path}: detector model file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # onnxruntime's own warnings are noise for the user
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise PosecalInputError(f"{path}: not a loadable ONNX model ({first})") from None


def clip_and_suppress(boxes: np.ndarray, scores: np.ndarray, w: int, h: int, score_threshold: float,
                      nms_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Decoded boxes (A, 4) x, y, w, h and scores (A,) -> those above the threshold, clipped to the image,
    without slivers (< 2 px), after box NMS, best first: (M, 4) and (M,)."""
    keep = scores >= score_threshold
    boxes, scores = boxes[keep], scores[keep]
    x0y0 = np.clip(boxes[:, :2], 0, [w, h])
    x1y1 = np.clip(boxes[:, :2] + boxes[:, 2:], 0, [w, h])
    boxes = np.concatenate([x0y0, x1y1 - x0y0], 1)
    keep = (boxes[:, 2] >= 2) & (boxes[:, 3] >= 2)
    boxes, scores = boxes[keep], scores[keep]
    if len(boxes):
        idx = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), score_threshold, nms_threshold),
                         dtype=np.int64).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        boxes, scores = boxes[idx], scores[idx]
    return boxes.reshape(-1, 4), scores.reshape(-1)


def load_detector(spec: str | None, score_threshold: float | None = None, threads: int = 2):
    """The person detector a user asked for: None or "default" = the shipped SSD (posecal/detect/ssd.py),
    "none" = no detector (None: each image is one person box), anything else = a YOLOX-style ONNX file.
    score_threshold None = the detector's own default (0.3 for both)."""
    if spec is not None and str(spec).lower() == "none":
        return None
    kwargs = {"threads": threads} if score_threshold is None else {"threads": threads,
                                                                   "score_threshold": score_threshold}
    if spec is None or str(spec).lower() == "default":
        from posecal.detect.ssd import SsdPersonDetector

        return SsdPersonDetector(**kwargs)
    return PersonDetector(spec, **kwargs)
