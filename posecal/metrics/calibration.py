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


def bin_index(confidence, n_bins: int = 15) -> np.ndarray:
    """The reliability bin (0 .. n_bins - 1, equal width on [0, 1]) of each confidence."""
    c = np.clip(np.asarray(confidence, np.float64), 0, 1)
    return np.clip(np.digitize(c, np.linspace(0, 1, n_bins + 1)[1:-1], right=False), 0, n_bins - 1)


def reliability_bins(confidence, truth, n_bins: int = 15):
    """Equal-width bins on [0, 1]: (bin edges, count, mean confidence, mean truth) per bin."""
    c = np.clip(np.asarray(confidence, np.float64), 0, 1)
    t = np.asarray(truth, np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = bin_index(c, n_bins)
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


def ece_floor(confidence, truth, n_bins: int = 15, draws: int = 100, seed: int = 0) -> tuple[float, float]:
    """(mean, 90th percentile) of the ECE that a perfectly calibrated predictor of these confidences shows on a
    set of this size when the truth is continuous (a true OPKS or OKS in [0, 1]), as binary_ece_floor does for
    0/1 truth. The truth's spread around a prediction is what sets the floor, and it differs from bin to bin (a
    keypoint predicted 0.95 is rarely far off, one predicted 0.5 may be anywhere), so it is measured per
    reliability bin: the bin's residuals truth - confidence, centred to mean 0 (the predictor made calibrated),
    are resampled with replacement and added to the bin's confidences, clipped to [0, 1], `draws` times. An ECE
    at or under the 90th percentile cannot be told from calibrated on this many samples."""
    c = np.clip(np.asarray(confidence, np.float64).ravel(), 0, 1)
    t = np.asarray(truth, np.float64).ravel()
    if len(c) == 0:
        return float("nan"), float("nan")
    idx = bin_index(c, n_bins)
    order = np.argsort(idx, kind="stable")
    c, t, idx = c[order], t[order], idx[order]
    count = np.bincount(idx, minlength=n_bins)
    start = np.r_[0, np.cumsum(count)[:-1]]
    residual = t - c
    residual -= (np.bincount(idx, weights=residual, minlength=n_bins) / np.maximum(count, 1))[idx]
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for d in range(draws):
        pick = start[idx] + (rng.random(len(c)) * count[idx]).astype(np.int64)   # a residual of the same bin
        values[d] = ece(c, np.clip(c + residual[pick], 0, 1), n_bins)
    return float(values.mean()), float(np.quantile(values, 0.9))


def bootstrap_by_group(statistic, groups, *arrays, draws: int = 200, seed: int = 0) -> np.ndarray:
    """statistic(*arrays) over `draws` resamplings of whole groups with replacement (e.g. photographs: persons
    and keypoints of one photo are not independent, so resampling them one by one would understate the spread).
    arrays share their first axis with groups (N,)."""
    g = np.asarray(groups).ravel()
    uniq, inverse = np.unique(g, return_inverse=True)
    if len(uniq) == 0:
        return np.full(draws, np.nan)
    members = np.argsort(inverse, kind="stable")
    count = np.bincount(inverse, minlength=len(uniq))
    start = np.r_[0, np.cumsum(count)[:-1]]
    arrays = [np.asarray(a) for a in arrays]
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for d in range(draws):
        chosen = rng.integers(len(uniq), size=len(uniq))
        size = count[chosen]
        # the members of each chosen group, one after the other: position within the draw minus where the
        # chosen group begins in it, plus where that group begins in `members`
        begin = np.cumsum(size) - size
        take = members[np.arange(size.sum()) + np.repeat(start[chosen] - begin, size)]
        values[d] = statistic(*(a[take] for a in arrays))
    return values


def ece_interval(confidence, truth, groups, draws: int = 200, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float]:
    """A `level` interval of the ECE by bootstrap over groups (bootstrap_by_group). Every resampling adds its own
    sampling noise, and an ECE (a sum of absolute gaps) only grows with noise, so the resampled ECEs sit above
    the estimate; their percentiles are moved down by that bias (their median minus the estimate) to be an
    interval around it, and clipped at 0."""
    c, t = np.asarray(confidence, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    if len(c) == 0:
        return float("nan"), float("nan")
    values = bootstrap_by_group(ece, groups, c, t, draws=draws, seed=seed)
    bias = np.nanmedian(values) - ece(c, t)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) - bias
    return float(max(lo, 0.0)), float(max(hi, 0.0))
