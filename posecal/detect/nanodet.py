"""posecal's second person detector: RangiLyu's NanoDet-m at 416 x 416 (Apache-2.0), run by onnxruntime.

The ONNX file (posecal/weights/nanodet_m_416.onnx, tools/convert_nanodet.py) holds the network only; its GFL box
decoding lives here, as in NanoDet's own (v0.x) demos:

* input 1x3x416x416 BGR float, (pixel - mean) / std with mean (103.53, 116.28, 123.675) and std (57.375, 57.12,
  58.395); the picture resized with its aspect kept and centred on a black canvas;
* outputs per stride 8, 16, 32 (row-major cells): class scores (1, cells, 80) after a sigmoid (person = 0) and
  box distributions (1, cells, 44): per side 11 logits over distances 0..10 strides, decoded as the expectation;
* box = cell centre ((col + 0.5) * stride, (row + 0.5) * stride) minus left/top, plus right/bottom.

NANODET_THRESHOLD = 0.325 was chosen on half the val crops to keep at least the SSD's recall with no more boxes on
person-free patches, and judged on the other half (CHANGELOG). No grey-picture rule (not measured for NanoDet).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posecal.detect.runtime import clip_and_suppress, detector_input, open_session
from posecal.errors import PosecalInputError

NANODET_FILE = Path(__file__).parent.parent / "weights" / "nanodet_m_416.onnx"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
NUM_CLASSES = 80
PERSON_CLASS = 0
MEAN = np.array([103.53, 116.28, 123.675], np.float32)   # BGR, as NanoDet's configs
STD = np.array([57.375, 57.12, 58.395], np.float32)
NANODET_THRESHOLD = 0.325   # see the module docstring


def cell_centres(input_size: int = INPUT_SIZE, strides=STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) in input pixels (A, 2) and stride (A,) of every cell, strides in order, row-major."""
    centres, cell_strides = [], []
    for s in strides:
        n = input_size // s
        gy, gx = np.mgrid[0:n, 0:n]
        centres.append((np.stack([gx.ravel(), gy.ravel()], 1) + 0.5) * s)
        cell_strides.append(np.full(n * n, s))
    return np.concatenate(centres).astype(np.float64), np.concatenate(cell_strides).astype(np.float64)


def decode_nanodet(scores: np.ndarray, distributions: np.ndarray, centres: np.ndarray, strides: np.ndarray,
                   scale: float, offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Person scores (A,) and box distributions (A, 4 * (REG_MAX + 1)) -> boxes (A, 4) top-left x, y, w, h in
    image pixels (input pixels minus the letterbox `offset` (x, y), divided by `scale`) and scores (A,)."""
    logits = np.asarray(distributions, np.float64)
    if logits.shape != (len(centres), 4 * (REG_MAX + 1)):
        raise ValueError(f"box distributions of shape {logits.shape} do not fit {len(centres)} NanoDet cells "
                         f"x 4 x {REG_MAX + 1} bins")
    logits = logits.reshape(-1, 4, REG_MAX + 1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    dist = (e / e.sum(-1, keepdims=True)) @ np.arange(REG_MAX + 1, dtype=np.float64) * strides[:, None]
    x0y0 = centres - dist[:, :2]
    x1y1 = centres + dist[:, 2:]
    boxes = np.concatenate([x0y0 - offset, x1y1 - x0y0], 1) / scale
    return boxes, np.asarray(scores, np.float64).reshape(-1)


class NanoDetPersonDetector:
    """Person boxes from NanoDet-m: letterbox to 416 -> onnxruntime -> GFL decode -> threshold -> NMS.

    Called like the shipped SSD (posecal/detect/ssd.py): BGR uint8 (H, W, 3) -> boxes (M, 4) x, y, w, h and
    scores (M,), best first.
    """

    def __init__(self, path=NANODET_FILE, score_threshold: float = NANODET_THRESHOLD, nms_threshold: float = 0.6,
                 threads: int = 2, device: str = "cpu"):
        self.path = Path(path)
        self.session = open_session(self.path, threads, device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.centres, self.strides = cell_centres()
        cells = [(INPUT_SIZE // s) ** 2 for s in STRIDES]
        want = {(1, n, c) for n in cells for c in (NUM_CLASSES, 4 * (REG_MAX + 1))}
        shapes = [tuple(o.shape) for o in outputs]
        if (len(inputs) != 1 or tuple(inputs[0].shape) != (1, 3, INPUT_SIZE, INPUT_SIZE)
                or len(shapes) != len(want) or set(shapes) != want):
            raise PosecalInputError(f"{self.path}: not the NanoDet-m 416 detector (input "
                                    f"{inputs[0].shape if inputs else None}, outputs {shapes})")
        self.input_name = inputs[0].name
        # output indices in decoding order: strides ascending (more cells first)
        self.score_outputs = [shapes.index((1, n, NUM_CLASSES)) for n in cells]
        self.box_outputs = [shapes.index((1, n, 4 * (REG_MAX + 1))) for n in cells]
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold

    @staticmethod
    def preprocess(bgr: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """(1x3x416x416 float32 input, scale, (x, y) offset of the picture on the canvas)."""
        h, w = bgr.shape[:2]
        scale = min(INPUT_SIZE / h, INPUT_SIZE / w)
        nw, nh = max(1, min(INPUT_SIZE, round(w * scale))), max(1, min(INPUT_SIZE, round(h * scale)))
        ox, oy = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        canvas[oy:oy + nh, ox:ox + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = ((canvas - MEAN) / STD).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob, np.float32), scale, (float(ox), float(oy))

    @staticmethod
    def threshold_factor(bgr: np.ndarray) -> float:
        """What this picture's score threshold is multiplied by: 1 (NanoDet has no grey-picture rule)."""
        return 1.0

    def raw(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network on an input blob: class scores (A, 80) and box distributions (A, 44), strides in order."""
        out = self.session.run(None, {self.input_name: blob})
        return (np.concatenate([out[i][0] for i in self.score_outputs]),
                np.concatenate([out[i][0] for i in self.box_outputs]))

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bgr = detector_input(bgr)
        blob, scale, offset = self.preprocess(bgr)
        scores, distributions = self.raw(blob)
        person = scores[:, PERSON_CLASS]
        keep = person >= self.score_threshold   # decode only the cells that can pass
        boxes, person = decode_nanodet(person[keep], distributions[keep], self.centres[keep], self.strides[keep],
                                       scale, offset)
        h, w = bgr.shape[:2]
        return clip_and_suppress(boxes, person, w, h, self.score_threshold, self.nms_threshold)
