"""Overlap of person boxes (x, y, w, h), as the tracker's association and the tracking benchmark's scores read it."""
from __future__ import annotations

import numpy as np


def box_iou(a, b) -> np.ndarray:
    """IoU (len(a), len(b)) of x, y, w, h boxes; 0 where both are empty."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    union = a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
