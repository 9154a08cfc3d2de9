"""YOLOX-style ONNX person detectors (YOLOX-Nano, Light Person Detector), given by file.

The network sees the image resized with its aspect ratio kept (ratio r = min(S/h, S/w)) and pasted at the
top-left of an SxS canvas filled with 114, BGR 0..255 float32, no normalisation. Its raw output rows are
anchor points ordered by stride (8, 16, 32) and row-major over each stride's grid; each row is
(x, y, w, h, objectness, class scores...), the scores already through a sigmoid.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posecal.detect.runtime import clip_and_suppress, detector_input, open_session
from posecal.errors import PosecalInputError

STRIDES = (8, 16, 32)
PAD_VALUE = 114


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


class YoloxPersonDetector:
    """Person boxes from a YOLOX-style ONNX model: letterbox -> onnxruntime -> decode -> threshold -> NMS."""

    def __init__(self, path, score_threshold: float = 0.3, nms_threshold: float = 0.5, threads: int = 2,
                 device: str = "cpu"):
        path = Path(path)
        self.session = open_session(path, threads, device)
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
        bgr = detector_input(bgr)
        blob, ratio = self.preprocess(bgr)
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        boxes, scores = decode_yolox(raw, self.input_size, ratio)
        h, w = bgr.shape[:2]
        return clip_and_suppress(boxes, scores, w, h, self.score_threshold, self.nms_threshold)

