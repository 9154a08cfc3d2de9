"""What every ONNX person detector here shares: its onnxruntime session, and thresholding, clipping and box
NMS of its decoded boxes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posecal.devices import check_session, providers, session_options
from posecal.errors import PosecalInputError, require


def detector_input(bgr) -> np.ndarray:
    """A picture as every detector here reads it: a (H, W, 3) BGR uint8 array (other dtypes clipped to 0-255);
    another shape is a ValueError naming it."""
    bgr = np.asarray(bgr)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] < 1 or bgr.shape[1] < 1:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {bgr.shape}")
    return bgr if bgr.dtype == np.uint8 else np.clip(bgr, 0, 255).astype(np.uint8)


def open_session(path: Path, threads: int, device: str = "cpu"):
    """An onnxruntime session for a detector file, on the CPU or CUDA (posecal/devices.py: the CPU, said once,
    where CUDA cannot run); a missing or unloadable file is one clear line."""
    ort = require("onnxruntime", extra=None)
    if not path.is_file():
        raise PosecalInputError(f"{path}: detector model file not found")
    where = providers(device)
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=where)
    except Exception as e:  # onnxruntime raises several unrelated types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise PosecalInputError(f"{path}: not a loadable ONNX model ({first})") from None
    check_session(session, where)
    return session


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


class AnotherLook:
    """A person detector that runs `detector` more than once a picture (on tiles, on the picture turned over) and
    merges what it finds: its score threshold, NMS threshold and grey-picture factor are that detector's, so the
    person policy reads its scores as the detector's own."""

    def __init__(self, detector):
        self.detector = detector

    @property
    def score_threshold(self) -> float:
        return self.detector.score_threshold

    @property
    def nms_threshold(self) -> float:
        return self.detector.nms_threshold

    def threshold_factor(self, bgr: np.ndarray) -> float:
        return self.detector.threshold_factor(bgr) if hasattr(self.detector, "threshold_factor") else 1.0
