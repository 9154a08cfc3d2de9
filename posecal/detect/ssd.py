"""posecal's shipped person detector: MediaPipe's Open Images SSD-MobileNetV2 (Apache-2.0), run by onnxruntime.

The ONNX file (posecal/weights/person_ssd_mobilenetv2.onnx, tools/convert_person_detector.py) holds the network
only; anchors and box decoding live here, with MediaPipe's settings for this model:

* input 1x300x300x3 RGB float, the image stretched to 300x300 (no letterbox), pixels x/127.5 - 1;
* outputs raw box encodings (1, 1917, 4) as (y, x, h, w) and class logits (1, 1917, 24), "Person" = 4;
* anchors: 6 layers, scales 0.2 .. 0.95, strides 16 .. 512, aspect ratios 1, 2, 0.5, 3, 1/3 plus an
  interpolated-scale square one, 3 anchors in the lowest layer: 1,917 anchors as fractions of the input;
* centre = raw / 10 * anchor size + anchor centre, size = exp(raw / 5) * anchor size;
* score = sigmoid(Person logit). Scores run low: 0.3 is the working threshold (MediaPipe's 0.6 misses most
  people in photos like COCO's).

A grey picture reaches the network as three equal channels and its people score lower, so grey pictures are
thresholded at GREY_THRESHOLD_FACTOR x the threshold, where they have as many false persons as colour ones
(CHANGELOG).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from posecal.data.images import is_grey
from posecal.detect.runtime import clip_and_suppress, detector_input, open_session
from posecal.errors import PosecalInputError

SHIPPED_DETECTOR = Path(__file__).parent.parent / "weights" / "person_ssd_mobilenetv2.onnx"
INPUT_SIZE = 300
PERSON_CLASS = 4
NUM_LAYERS, MIN_SCALE, MAX_SCALE = 6, 0.2, 0.95
STRIDES = (16, 32, 64, 128, 256, 512)
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
XY_SCALE, WH_SCALE = 10.0, 5.0
GREY_THRESHOLD_FACTOR = 0.25 / 0.3   # see the module docstring


def _layer_scale(i: int) -> float:
    return MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (NUM_LAYERS - 1)


def ssd_anchors(input_size: int = INPUT_SIZE) -> np.ndarray:
    """(A, 4) anchors (x centre, y centre, w, h) in input fractions, in the network's output order: layer by
    layer, row-major over each feature map, the layer's anchor shapes fastest."""
    out = []
    for layer, stride in enumerate(STRIDES):
        scale = _layer_scale(layer)
        if layer == 0:  # reduce_boxes_in_lowest_layer
            shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            nxt = 1.0 if layer == NUM_LAYERS - 1 else _layer_scale(layer + 1)
            shapes = [(scale, r) for r in ASPECT_RATIOS] + [(math.sqrt(scale * nxt), 1.0)]
        wh = np.array([(s * math.sqrt(r), s / math.sqrt(r)) for s, r in shapes])
        n = math.ceil(input_size / stride)
        gy, gx = np.mgrid[0:n, 0:n]
        centres = (np.stack([gx.ravel(), gy.ravel()], 1) + 0.5) / n
        out.append(np.concatenate([np.repeat(centres, len(shapes), 0), np.tile(wh, (n * n, 1))], 1))
    return np.concatenate(out)


def decode_ssd(raw_boxes: np.ndarray, logits: np.ndarray, anchors: np.ndarray, width: int,
               height: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw encodings (A, 4) as (y, x, h, w) and Person logits (A,) -> boxes (A, 4) top-left x, y, w, h in
    image pixels (the input was the whole image stretched) and scores (A,) in [0, 1]. No thresholding."""
    raw = np.asarray(raw_boxes, np.float64)
    if raw.shape != (len(anchors), 4):
        raise ValueError(f"box encodings of shape {raw.shape} do not fit {len(anchors)} SSD anchors")
    cx = raw[:, 1] / XY_SCALE * anchors[:, 2] + anchors[:, 0]
    cy = raw[:, 0] / XY_SCALE * anchors[:, 3] + anchors[:, 1]
    w = np.exp(raw[:, 3] / WH_SCALE) * anchors[:, 2]
    h = np.exp(raw[:, 2] / WH_SCALE) * anchors[:, 3]
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height], 1)
    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return boxes, scores


class SsdPersonDetector:
    """Person boxes from the shipped SSD: stretch to 300x300 -> onnxruntime -> decode -> threshold -> NMS.

    Called like YoloxPersonDetector: BGR uint8 (H, W, 3) -> boxes (M, 4) x, y, w, h and scores (M,), best first.
    """

    def __init__(self, path=SHIPPED_DETECTOR, score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 threads: int = 2, device: str = "cpu"):
        self.path = Path(path)
        self.session = open_session(self.path, threads, device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.anchors = ssd_anchors()
        shapes = [tuple(o.shape) for o in outputs]
        if (len(inputs) != 1 or tuple(inputs[0].shape) != (1, INPUT_SIZE, INPUT_SIZE, 3)
                or sorted(shapes) != sorted([(1, len(self.anchors), 4), (1, len(self.anchors), 24)])):
            raise PosecalInputError(f"{self.path}: not the MediaPipe SSD person detector (input "
                                    f"{inputs[0].shape if inputs else None}, outputs {shapes})")
        self.input_name = inputs[0].name
        self.box_output = shapes.index((1, len(self.anchors), 4))
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold

    @staticmethod
    def preprocess(bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(cv2.resize(bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR),
                           cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) / 127.5 - 1.0)[None]

    @staticmethod
    def threshold_factor(bgr: np.ndarray) -> float:
        """What this picture's score thresholds are multiplied by: GREY_THRESHOLD_FACTOR for a grey picture (its
        people score lower), else 1. The person policy scales its sure score alike (inference/pipeline.py)."""
        return GREY_THRESHOLD_FACTOR if is_grey(bgr) else 1.0

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bgr = detector_input(bgr)
        out = self.session.run(None, {self.input_name: self.preprocess(bgr)})
        raw, logits = out[self.box_output][0], out[1 - self.box_output][0][:, PERSON_CLASS]
        h, w = bgr.shape[:2]
        boxes, scores = decode_ssd(raw, logits, self.anchors, w, h)
        threshold = self.score_threshold * self.threshold_factor(bgr)
        return clip_and_suppress(boxes, scores, w, h, threshold, self.nms_threshold)
