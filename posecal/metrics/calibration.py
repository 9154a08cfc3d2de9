"""Correlation and calibration of confidences against the truth they claim to predict."""
from __future__ import annotations

import numpy as np


def pearson(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def rankdata(x) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata's default)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x, y) -> float:
    return pearson(rankdata(x), rankdata(y))


def auroc(score, positive) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count half),
    by the rank-sum (Mann-Whitney) formula; NaN without both classes."""
    s, y = np.asarray(score, np.float64).ravel(), np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_bins(confidence, truth, n_bins: int = 15):
    """Equal-width bins on [0, 1]: (bin edges, count, mean confidence, mean truth) per bin."""
    c = np.clip(np.asarray(confidence, np.float64), 0, 1)
    t = np.asarray(truth, np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_c = np.bincount(idx, weights=c, minlength=n_bins) / count
        mean_t = np.bincount(idx, weights=t, minlength=n_bins) / count
    return edges, count, mean_c, mean_t


def ece(confidence, truth, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of |mean confidence - mean truth| weighted by bin share."""
    _, count, mean_c, mean_t = reliability_bins(confidence, truth, n_bins)
    n = count.sum()
    if n == 0:
        return float("nan")
    nonempty = count > 0
    return float((count[nonempty] / n * np.abs(mean_c[nonempty] - mean_t[nonempty])).sum())


def binary_ece_floor(confidence, n_bins: int = 15, draws: int = 100, seed: int = 0) -> tuple[float, float]:
    """(mean, 90th percentile) of the ECE that a perfectly calibrated predictor of these confidences shows on a
    set of this size: each 0/1 truth redrawn as Bernoulli(confidence), `draws` times. An ECE at its floor
    cannot be told from calibrated on this many samples."""
    c = np.clip(np.asarray(confidence, np.float64).ravel(), 0, 1)
    rng = np.random.default_rng(seed)
    values = np.array([ece(c, rng.random(len(c)) < c, n_bins) for _ in range(draws)])
    return float(values.mean()), float(np.quantile(values, 0.9))
