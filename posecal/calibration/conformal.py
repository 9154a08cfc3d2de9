"""Split-conformal keypoint radii: per keypoint a radius in image pixels that holds the true keypoint with
probability `target` (0.9), on data like the calibration set.

The nonconformity score is the keypoint error divided by the person's size (sqrt of the box area), so one
radius table serves people of every size. It is conditioned on the keypoint type and on the calibrated
keypoint quality (quantile bins of it per type), so that trusted keypoints get small radii and doubtful
ones large radii, each bin holding its own coverage (Mondrian split conformal). The finite-sample quantile
ceil((n + 1) * target) / n makes the coverage at least `target` per bin when the data are exchangeable.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_BINS = 4
MIN_PER_BIN = 30
UNUSED_EDGE = 1e9     # quality is at most 1: an edge no keypoint passes (JSON has no inf)
NO_PROMISE = 2.0      # relative radius where too few keypoints were seen to promise the target


def person_scale(boxes) -> np.ndarray:
    """sqrt(w * h) of (N, 4) x, y, w, h boxes: the size the radii are relative to."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.sqrt(np.maximum(b[:, 2] * b[:, 3], 1.0))


def relative_errors(keypoints, gt, boxes) -> np.ndarray:
    """(N, K) distance of each predicted keypoint (N, K, 2) to its truth (gt (N, K, >=2)) over its person's scale
    (person_scale of the (N, 4) boxes): what the radii are fitted on."""
    err = np.linalg.norm(np.asarray(keypoints, np.float64) - np.asarray(gt, np.float64)[..., :2], axis=-1)
    return err / person_scale(boxes)[:, None]


def conformal_quantile(scores, target: float) -> float:
    """The ceil((n+1)·target)-th smallest score (inf when n is too small to promise the target)."""
    s = np.sort(np.asarray(scores, np.float64))
    rank = int(np.ceil((len(s) + 1) * target))
    return float(s[rank - 1]) if 0 < rank <= len(s) else float("inf")


@dataclass
class ConformalRadii:
    """edges[k]: quality bin edges of keypoint type k (N_BINS - 1 inner edges); radii[k, b]: relative radius."""

    target: float
    edges: np.ndarray     # (K, B-1)
    radii: np.ndarray     # (K, B)

    def relative(self, quality) -> np.ndarray:
        """(N, K) keypoint quality -> (N, K) radius / person scale."""
        q = np.asarray(quality, np.float64)
        out = np.empty_like(q)
        for k in range(q.shape[1]):
            out[:, k] = self.radii[k][np.searchsorted(self.edges[k], q[:, k], side="right")]
        return out

    def __call__(self, quality, boxes) -> np.ndarray:
        """(N, K) radii in image pixels for people in (N, 4) boxes."""
        return self.relative(quality) * person_scale(boxes)[:, None]

    def to_dict(self) -> dict:
        return {"target": self.target, "edges": self.edges.tolist(),
                "radii": np.round(self.radii, 5).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ConformalRadii":
        edges, radii = np.asarray(d["edges"], np.float64), np.asarray(d["radii"], np.float64)
        if radii.ndim != 2 or edges.shape != (radii.shape[0], radii.shape[1] - 1):
            raise ValueError("conformal radii: edges must be (K, B-1) and radii (K, B)")
        return cls(float(d["target"]), edges, radii)


def fit_radii(quality, error_rel, labelled, target: float = 0.9, n_bins: int = N_BINS) -> ConformalRadii:
    """quality, error_rel (error / person scale), labelled: (N, K). Only labelled keypoints have an error.

    Bins are quantiles of the quality of the labelled keypoints of each type, as many as keep at least
    MIN_PER_BIN keypoints each (one bin when data are scarce). The bins' radii are made non-increasing in
    quality, so a more trusted keypoint never gets a larger circle (taking the larger neighbour keeps the
    coverage of every bin).
    """
    q, e, lab = (np.asarray(a) for a in (quality, error_rel, labelled))
    k_types = q.shape[1]
    edges = np.full((k_types, n_bins - 1), UNUSED_EDGE)
    radii = np.full((k_types, n_bins), NO_PROMISE)
    for k in range(k_types):
        qk, ek = q[lab[:, k], k], e[lab[:, k], k]
        bins = int(max(1, min(n_bins, len(qk) // MIN_PER_BIN)))
        inner = np.quantile(qk, np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else np.array([])
        idx = np.searchsorted(inner, qk, side="right")
        r = np.array([conformal_quantile(ek[idx == b], target) for b in range(bins)])
        r = np.maximum.accumulate(np.where(np.isfinite(r), r, NO_PROMISE)[::-1])[::-1]
        edges[k, :len(inner)] = inner
        radii[k, :bins] = r
        radii[k, bins:] = r[-1]
    return ConformalRadii(target, edges, radii)


@lru_cache(maxsize=4)
def _rice_quantiles(target: float) -> tuple[np.ndarray, np.ndarray]:
    """(offsets nu, quantiles): the `target` quantile of the distance to a point nu away of a 2-D standard normal
    error (the Rice distribution), on a grid of nu; beyond it the quantile is nu + the normal's quantile."""
    from scipy.stats import rice

    nu = np.linspace(0.0, 30.0, 601)
    return nu, rice.ppf(target, nu)


def moved_radius(radius, moved, target: float = 0.9) -> np.ndarray:
    """Radii (pixels) around keypoints moved by `moved` pixels (a tracker's smoothing) that hold the true keypoint
    with the same probability `target` as `radius` did around the unmoved ones: the error taken as an isotropic 2-D
    Gaussian, whose target radius r gives sigma = r / sqrt(-2 ln(1 - target)), and the new radius is sigma times the
    Rice distribution's target quantile at moved / sigma (r + moved would over-cover, sqrt(r^2 + moved^2) under-)."""
    from scipy.stats import norm

    r, d = np.asarray(radius, np.float64), np.abs(np.asarray(moved, np.float64))
    sigma = np.maximum(r, 1e-9) / np.sqrt(-2.0 * np.log(1.0 - target))
    nu_grid, quantile = _rice_quantiles(float(target))
    nu = d / sigma
    q = np.where(nu <= nu_grid[-1], np.interp(nu, nu_grid, quantile), nu + norm.ppf(target))
    return np.where(np.isfinite(r), sigma * q, r)
