"""Visibility classification metrics: per-class precision/recall/F1, macro/weighted F1, confusion."""
from __future__ import annotations

import numpy as np


def confusion(truth, pred, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    t, p = np.asarray(truth).ravel().astype(int), np.asarray(pred).ravel().astype(int)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def classification_report(truth, pred, num_classes: int) -> dict:
    cm = confusion(truth, pred, num_classes)
    tp = np.diag(cm)
    precision = _safe_div(tp, cm.sum(0))
    recall = _safe_div(tp, cm.sum(1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    support = cm.sum(1)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.tolist(), "f1_macro": float(f1.mean()),
            "f1_weighted": float((f1 * support).sum() / max(support.sum(), 1)),
            "accuracy": float(tp.sum() / max(cm.sum(), 1)), "confusion": cm.tolist()}


def binary_report(truth_positive, pred_positive) -> dict:
    """Labelled (v > 0) is the positive class."""
    t, p = np.asarray(truth_positive, bool).ravel(), np.asarray(pred_positive, bool).ravel()
    tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
    precision = float(_safe_div(tp, tp + fp))
    recall = float(_safe_div(tp, tp + fn))
    f1 = float(_safe_div(2 * precision * recall, precision + recall))
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float((t == p).mean()) if len(t) else 0.0}
