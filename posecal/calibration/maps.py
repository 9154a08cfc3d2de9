"""Monotone maps from a raw confidence to the quantity it should mean, fitted on held-out data.

Isotonic regression (scipy's pool-adjacent-violators) is stored as the block means at the block centres
and applied by linear interpolation between them: a few dozen numbers per map, monotone, and smooth
enough between blocks not to turn every small score difference into a step. Temperature scaling is the
map for class probabilities: it keeps each keypoint's most likely class (so visibility F1 does not move)
and only makes the probabilities honest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression, minimize_scalar

MIN_BLOCK = 1e-9


@dataclass
class IsotonicMap:
    """Non-decreasing piecewise-linear map through (x, y) knots; constant beyond the ends."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, values) -> np.ndarray:
        return np.interp(np.asarray(values, np.float64), self.x, self.y)

    def to_dict(self) -> dict:
        # Unrounded: close knots would merge into a jump, and calibrated values sit exactly on radius bin edges.
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}

    @classmethod
    def from_dict(cls, d: dict) -> "IsotonicMap":
        x, y = np.asarray(d["x"], np.float64), np.asarray(d["y"], np.float64)
        if x.ndim != 1 or x.shape != y.shape or len(x) == 0 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise ValueError("isotonic map needs equal-length non-decreasing x and y")
        return cls(x, y)


def fit_isotonic(score, truth, max_knots: int = 64) -> IsotonicMap:
    """Least-squares non-decreasing fit of truth on score; identity-like when there is nothing to fit.

    Blocks of the isotonic solution become knots at their mean score, so interpolation stays inside the
    data; when there are more blocks than max_knots, neighbouring knots are merged by count-weighted
    averaging (still monotone) to keep the stored map small.
    """
    s = np.asarray(score, np.float64).ravel()
    t = np.asarray(truth, np.float64).ravel()
    if len(s) == 0:
        return IsotonicMap(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    order = np.argsort(s, kind="mergesort")
    s, t = s[order], t[order]
    fitted = isotonic_regression(t).x
    # Blocks: runs of equal fitted value.
    starts = np.flatnonzero(np.r_[True, np.abs(np.diff(fitted)) > MIN_BLOCK])
    counts = np.diff(np.r_[starts, len(s)])
    xs = np.add.reduceat(s, starts) / counts
    ys = fitted[starts]
    if len(xs) > max_knots:
        groups = np.array_split(np.arange(len(xs)), max_knots)
        xs = np.array([np.average(xs[g], weights=counts[g]) for g in groups])
        ys = np.array([np.average(ys[g], weights=counts[g]) for g in groups])
    # Weighted averages of equal neighbours can differ in the last bit: keep both sequences non-decreasing.
    return IsotonicMap(np.maximum.accumulate(xs), np.maximum.accumulate(ys))


def apply_temperature(probs, temperature) -> np.ndarray:
    """Class probabilities (..., C) with their logits divided by temperature (broadcast over leading dims)."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / np.asarray(temperature, np.float64)[..., None]
    logp -= logp.max(-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(-1, keepdims=True)


def fit_temperature(probs, labels) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of labels under softmax(log p / T)."""
    p = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    y = np.asarray(labels).ravel().astype(int)
    if len(y) == 0:
        return 1.0

    def nll(log_t):
        q = apply_temperature(p, np.exp(log_t))
        return -np.log(np.clip(q[np.arange(len(y)), y], 1e-12, None)).mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))
