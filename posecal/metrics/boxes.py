"""Overlap of person boxes (x, y, w, h): IoU, as the tracker's association and the tracking benchmark's scores read
it, and the share of one box inside others, as the person policy's parts rule and the second look's merge read it."""
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


def inside_share(box, other) -> float:
    """The share of x, y, w, h `box`'s area that lies inside `other`."""
    return float(inside_shares(box, other)[0]) if np.size(other) else 0.0


def inside_shares(box, others) -> np.ndarray:
    """(M,) shares of `box`'s area inside each of `others` (M, 4)."""
    b, o = np.asarray(box, float).reshape(4), np.asarray(others, float).reshape(-1, 4)
    lo, hi = np.maximum(b[:2], o[:, :2]), np.minimum(b[:2] + b[2:], o[:, :2] + o[:, 2:])
    return np.clip(hi - lo, 0, None).prod(-1) / max(float(b[2] * b[3]), 1e-9)
