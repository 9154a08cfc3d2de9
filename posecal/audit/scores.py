"""How strongly a calibrated estimate contradicts each label, per kind of label error: arrays in, arrays out.

Every score has a stated meaning, so that a person can read one and a threshold is a decision, not a knob:

- position: 1 - p, where p = P(a correct label lies at least this far from the estimate). The error model is
  the one the conformal radius implies: an isotropic Gaussian error (distance ~ Rayleigh) whose scale puts the
  keypoint's radius r at its coverage c (0.9 for posecal's radii), so p = (1 - c) ** ((d / r) ** 2): 0.1 at the
  radius, 0.01 at sqrt(2) r (the radius at coverage 0.99), 1e-4 at 2 r. The radius is an empirical
  (split-conformal) quantile; beyond it the tail is this model's extrapolation.
- swap: P(the left/right pair is swapped) under the same error model and even prior odds: the likelihood of
  the labels under the mirrored assignment over the sum of both assignments' likelihoods. A swap finding also
  needs the mirrored labels to fit the estimate (their joint tail probability at least 0.01): one label
  moved far off can fit the mirrored assignment "better" while fitting neither.
- visibility: the model's calibrated probability of the contradicting class: p(visible) for a keypoint
  labelled occluded, p(occluded) for one labelled visible. A labelled keypoint the model calls absent is not
  a visibility finding: "absent" is what annotators would not have labelled, and COCO's annotators label
  many hidden joints by guessing (on val, 1 - p(labelled class) ranked planted 2 <-> 1 flips far worse,
  because such keypoints crowded the top); its position is still checked against its (wide) radius.
- missing: the model's calibrated probability that an unlabelled (v = 0) keypoint should carry a label,
  p(occluded) + p(visible) = 1 - p(absent) (the occluded / visible split is the weak part of the head; on
  val p(visible) alone ranked planted missing labels worse).
- person: the OKS shortfall, pose quality (the model's own expected OKS) minus the OKS of the labelled pose
  against the model's estimate: how much worse the labels agree with the estimate than the truth is
  expected to. Not a probability; in OKS units.
"""
from __future__ import annotations

import numpy as np

from posecal.metrics.oks import oks
from posecal.skeleton import FLIP_PAIRS

ABSENT, OCCLUDED, VISIBLE = 0, 1, 2


def log10_tail(distance, radius, coverage: float) -> np.ndarray:
    """log10 P(error >= distance) when the error is Rayleigh with P(error <= radius) = coverage (in log space:
    labels far outside the radius have chances below what a float holds)."""
    ratio = np.asarray(distance, np.float64) / np.maximum(np.asarray(radius, np.float64), 1e-9)
    return ratio ** 2 * np.log10(1.0 - coverage)


def _half_chi2(points, keypoints, radius, coverage: float) -> np.ndarray:
    """d^2 / (2 sigma^2) of points against estimates: -log of the Gaussian likelihood up to a constant."""
    d = np.linalg.norm(np.asarray(points, np.float64) - np.asarray(keypoints, np.float64), axis=-1)
    return -log10_tail(d, radius, coverage) * np.log(10.0)


def position_log10_tail(labels, keypoints, radius, coverage: float) -> np.ndarray:
    """(N, K) log10 P(a correct label lies this far or farther from the estimate); NaN where not labelled."""
    labels = np.asarray(labels, np.float64)
    d = np.linalg.norm(labels[..., :2] - np.asarray(keypoints, np.float64), axis=-1)
    return np.where(labels[..., 2] > 0, log10_tail(d, radius, coverage), np.nan)


def _pair_costs(labels, keypoints, radius, coverage: float, pairs):
    """(N, P) summed d^2 / (2 sigma^2) of each pair's labels, as labelled and mirrored, and which pairs count."""
    labels = np.asarray(labels, np.float64)
    keypoints, radius = np.asarray(keypoints, np.float64), np.asarray(radius, np.float64)
    kept, mirrored, both = (np.zeros((len(labels), len(pairs))) for _ in range(3))
    for j, (a, b) in enumerate(pairs):
        la, lb = labels[:, a, :2], labels[:, b, :2]
        kept[:, j] = _half_chi2(la, keypoints[:, a], radius[:, a], coverage) + \
            _half_chi2(lb, keypoints[:, b], radius[:, b], coverage)
        mirrored[:, j] = _half_chi2(la, keypoints[:, b], radius[:, b], coverage) + \
            _half_chi2(lb, keypoints[:, a], radius[:, a], coverage)
        both[:, j] = (labels[:, a, 2] > 0) & (labels[:, b, 2] > 0)
    return kept, mirrored, both.astype(bool)


def swap_log_odds(labels, keypoints, radius, coverage: float, pairs=FLIP_PAIRS) -> np.ndarray:
    """(N, P) natural log odds that pair p's labels are swapped (even prior odds: the log likelihood ratio of
    the mirrored assignment to the labelled one); NaN where the pair is not both labelled."""
    kept, mirrored, both = _pair_costs(labels, keypoints, radius, coverage, pairs)
    return np.where(both, kept - mirrored, np.nan)


def swap_mirrored_log10_tail(labels, keypoints, radius, coverage: float, pairs=FLIP_PAIRS) -> np.ndarray:
    """(N, P) log10 P(two correct labels fit the estimate this badly or worse) of the mirrored labels: under the
    error model their summed d^2 / (2 sigma^2) is Gamma(2, 1), whose tail is (1 + s) exp(-s). A swap finding
    needs the mirrored pair to fit, not only to fit better than two labels that are both far off."""
    _, mirrored, both = _pair_costs(labels, keypoints, radius, coverage, pairs)
    return np.where(both, (np.log1p(mirrored) - mirrored) / np.log(10.0), np.nan)


def probability_of_log_odds(log_odds) -> np.ndarray:
    """The logistic function, without overflow warnings for very large odds."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(log_odds, np.float64), -700, 700)))


def visibility_contradiction(labels, visibility_probs) -> np.ndarray:
    """(N, K) p(the other labelled class) of labelled keypoints: p(visible) where v = 1, p(occluded) where
    v = 2; NaN where not labelled."""
    v = np.asarray(labels)[..., 2]
    p = np.asarray(visibility_probs, np.float64)
    return np.where(v == OCCLUDED, p[..., VISIBLE], np.where(v == VISIBLE, p[..., OCCLUDED], np.nan))


def missing_labelled(labels, visibility_probs) -> np.ndarray:
    """(N, K) 1 - p(absent) of unlabelled keypoints (v = 0); NaN where labelled."""
    v = np.asarray(labels)[..., 2]
    return np.where(v == 0, 1.0 - np.asarray(visibility_probs, np.float64)[..., ABSENT], np.nan)


def person_shortfall(labels, keypoints, area, pose_quality) -> tuple[np.ndarray, np.ndarray]:
    """(shortfall (N,), OKS of the labels against the estimate (N,)); NaN where nothing is labelled."""
    labels = np.asarray(labels, np.float64)
    agree = oks(keypoints, labels[..., :2], labels[..., 2], area)
    return np.asarray(pose_quality, np.float64) - agree, agree
