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
    from scipy.optimize import isotonic_regression   # fitting only: slow to import, applying needs none
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
    from scipy.optimize import minimize_scalar   # fitting only: slow to import, applying needs none
    p = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    y = np.asarray(labels).ravel().astype(int)
    if len(y) == 0:
        return 1.0

    def nll(log_t):
        q = apply_temperature(p, np.exp(log_t))
        return -np.log(np.clip(q[np.arange(len(y)), y], 1e-12, None)).mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


@dataclass
class LogisticScore:
    """sigmoid(offset + bias + weights · (features - mean) / std): several inputs combined into one score in
    (0, 1), on which an isotonic map then does the calibrating, or a calibrated probability itself. Weights
    whose sign is known are held to it, so the score never falls as, e.g., the raw confidence rises. The offset
    (given at each call, 0 by default) is a logit the features only correct, e.g. that of a quality already
    calibrated on average, so that where every feature is at the value it was fitted at 0 the logit is kept."""

    mean: np.ndarray      # (F,)
    std: np.ndarray       # (F,)
    weights: np.ndarray   # (F,)
    bias: float

    def __call__(self, features, offset=0.0) -> np.ndarray:
        z = (np.asarray(features, np.float64) - self.mean) / self.std
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias + np.asarray(offset, np.float64))))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
                "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticScore":
        mean, std, w = (np.asarray(d[k], np.float64) for k in ("mean", "std", "weights"))
        if mean.ndim != 1 or mean.shape != std.shape or mean.shape != w.shape or np.any(std <= 0):
            raise ValueError("logistic score needs equal-length mean, std > 0 and weights")
        return cls(mean, std, w, float(d["bias"]))


def fit_logistic(features, truth, signs, l2: float = 1e-3, offset=None, anchored: bool = False) -> LogisticScore:
    """Cross-entropy fit of truth in [0, 1] (soft targets allowed) on (M, F) features, with L2 on the weights;
    signs (F,): +1 weight >= 0, -1 weight <= 0, 0 free (scipy's L-BFGS-B with bounds). offset (M,): a logit
    added to the score's (LogisticScore's offset; pass the same when applying). anchored: the features are not
    centred and the bias is held at 0, so where every feature is 0 the score is sigmoid(offset) exactly (a
    correction that leaves the cases it has no feature for as they were)."""
    from scipy.optimize import minimize   # fitting only: slow to import, applying needs none
    x = np.asarray(features, np.float64)
    t = np.asarray(truth, np.float64).ravel()
    off = np.zeros(len(t)) if offset is None else np.asarray(offset, np.float64).ravel()
    mean = x.mean(0) if len(x) and not anchored else np.zeros(x.shape[1])
    std = np.maximum(x.std(0) if len(x) else np.ones(x.shape[1]), 1e-6)
    z = (x - mean) / std

    def loss(theta):
        a = z @ theta[:-1] + theta[-1] + off
        p = 1.0 / (1.0 + np.exp(-a))
        # log(1 + e^a) - t a, stable for large |a|
        value = np.mean(np.logaddexp(0.0, a) - t * a) + l2 * theta[:-1] @ theta[:-1]
        grad = np.r_[z.T @ (p - t) / max(len(t), 1) + 2 * l2 * theta[:-1], np.mean(p - t) if len(t) else 0.0]
        return value, grad

    bounds = [(0, None) if s > 0 else (None, 0) if s < 0 else (None, None) for s in signs] \
        + [(0, 0) if anchored else (None, None)]
    theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    return LogisticScore(mean, std, theta[:-1], float(theta[-1]))
