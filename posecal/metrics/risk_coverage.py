"""Risk-coverage: how good are the items a score lets you keep?

Keep the top 10 %, 20 %, ..., 100 % of items (persons by pose score, or keypoints by keypoint quality) and
report the mean true OKS (or OPKS) of those kept. The area under the curve is the mean over every
coverage k/n, k = 1..n, of the mean truth of the top k (the full-resolution curve, not only the ten
printed points); the oracle ranks by the truth itself, so `aurc / oracle_aurc` says how much of the
achievable ordering a score delivers. Higher is better for both (it is a quality, not a risk, curve).
"""
from __future__ import annotations

import numpy as np

COVERAGES = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _curve(score: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean truth of the top k by score, k = 1..n (ties broken by input order, stable)."""
    order = np.argsort(-score, kind="mergesort")
    return np.cumsum(truth[order]) / np.arange(1, len(truth) + 1)


def risk_coverage(score, truth, coverages=COVERAGES) -> dict:
    """{"coverage": [...], "mean_oks": [...], "aurc": a, "oracle_aurc": o} over finite (score, truth) pairs."""
    s, t = np.asarray(score, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    ok = np.isfinite(s) & np.isfinite(t)
    s, t = s[ok], t[ok]
    if len(t) == 0:
        return {"coverage": list(coverages), "mean_oks": [None] * len(coverages), "aurc": None, "oracle_aurc": None}
    curve, oracle = _curve(s, t), _curve(t, t)
    keep = [max(1, int(np.ceil(c * len(t) - 1e-9))) for c in coverages]
    return {"coverage": list(coverages), "mean_oks": [round(float(curve[k - 1]), 4) for k in keep],
            "aurc": round(float(curve.mean()), 4), "oracle_aurc": round(float(oracle.mean()), 4)}
