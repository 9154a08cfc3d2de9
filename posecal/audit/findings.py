"""Label errors found: the labels of N annotations held against their calibrated estimates (Estimates), one
finding per contradicted label, kinds and score meanings as in posecal/audit/scores.py.

A finding is a JSON object (the findings.json contract, tests/audit/test_audit.py checks it):
`id` (string "ANNOTATION_ID:KIND:KEYPOINT", KEYPOINT "-" for person findings: what `posecal audit apply
--accept` names), `annotation_id`, `keypoint` (0-16, or null for a person finding), `keypoint_name`, `kind`,
`score` (the kind's probability or shortfall), `strength` (log10 odds of `score` for the probability kinds,
the shortfall for person: it orders findings whose score rounds to 1), `label` [x, y, v] as labelled,
`estimate` [x, y, v] the model's (v its visibility class: 0 absent, 1 occluded, 2 visible), `radius` (pixels,
at coverage `radius_coverage`), and per kind: swap adds `pair` [left, right], `pair_label`, `pair_estimate`;
person adds `oks` (labels vs estimate) and `pose_quality`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.audit import scores as sc
from posecal.audit.estimates import Estimates
from posecal.inference.scoring import visibility_classes
from posecal.skeleton import COCO_KEYPOINTS, FLIP_PAIRS

KINDS = ("position", "swap", "visibility", "missing", "person")


@dataclass(frozen=True)
class AuditThresholds:
    """When a contradiction becomes a finding; each in the unit of its kind's score (posecal/audit/scores.py)."""

    position_tail: float = 0.01    # P(a correct label this far) below this: outside the radius at coverage 0.99
    swap: float = 0.99             # P(swapped) at least this
    swap_fit: float = 0.01         # ... and P(correct labels fit this badly) of the mirrored pair at least this
    visibility: float = 0.9        # P(the other labelled class: occluded <-> visible) at least this
    missing: float = 0.9           # P(labelled) = 1 - p(absent) of an unlabelled keypoint at least this
    person_shortfall: float = 0.3  # pose quality minus the labels' OKS against the estimate at least this


def finding_id(annotation_id: int, kind: str, keypoint: int | None) -> str:
    return f"{int(annotation_id)}:{kind}:{'-' if keypoint is None else int(keypoint)}"


def _r(v, nd: int = 2) -> float:
    return round(float(v), nd)


def _log10_odds(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-300, 1 - 1e-16)
    return np.log10(p) - np.log10(1 - p)


def find_label_errors(labels, area, est: Estimates, thresholds: AuditThresholds = AuditThresholds()) -> list[dict]:
    """labels (N, K, 3) and GT areas (N,) of the annotations est stands for, in its order -> findings, highest
    score first (then strength). A person finding explains the person's keypoints' positions, a swap its two
    keypoints' positions: no position findings for them."""
    labels, area = np.asarray(labels, np.float64), np.asarray(area, np.float64)
    kp, rad, probs, c = est.keypoints, est.keypoint_radius, est.visibility_probs, est.radius_coverage
    vis = visibility_classes(probs)
    out: list[dict] = []

    def add(i, kind, k, score, strength, v_est=None, **extra):
        k_est = vis[i, k] if v_est is None and k is not None else v_est
        f = {"id": finding_id(est.annotation_ids[i], kind, k), "annotation_id": int(est.annotation_ids[i]),
             "keypoint": None if k is None else int(k), "keypoint_name": None if k is None else COCO_KEYPOINTS[k],
             "kind": kind, "score": _r(score, 6), "strength": _r(strength, 3)}
        if k is not None:
            f |= {"label": [_r(labels[i, k, 0]), _r(labels[i, k, 1]), int(labels[i, k, 2])],
                  "estimate": [_r(kp[i, k, 0]), _r(kp[i, k, 1]), int(k_est)],
                  "radius": _r(rad[i, k]), "radius_coverage": c}
        out.append(f | extra)

    shortfall, agree = sc.person_shortfall(labels, kp, area, est.pose_quality)
    wrong_person = np.isfinite(shortfall) & (np.nan_to_num(shortfall) >= thresholds.person_shortfall)
    for i in np.nonzero(wrong_person)[0]:
        add(i, "person", None, shortfall[i], shortfall[i], oks=_r(agree[i], 4),
            pose_quality=_r(est.pose_quality[i], 4))
    # One explanation per label: a person finding explains its keypoints' positions (the estimate is of someone
    # else, or the labels are); a swap explains its two keypoints' positions. Swaps are still looked for in a
    # person with a person finding: a whole side mislabelled (the person taken as facing the other way) makes one.
    explained = np.repeat(wrong_person[:, None], labels.shape[1], 1)
    swap = sc.swap_log_odds(labels, kp, rad, c)
    p_swap = sc.probability_of_log_odds(swap)
    swap[~(sc.swap_mirrored_log10_tail(labels, kp, rad, c) >= np.log10(thresholds.swap_fit))] = np.nan
    for i, j in zip(*np.nonzero(np.isfinite(swap) & (np.nan_to_num(p_swap) >= thresholds.swap))):
        a, b = FLIP_PAIRS[j]
        explained[i, [a, b]] = True
        add(i, "swap", a, p_swap[i, j], swap[i, j] / np.log(10), pair=[a, b],
            pair_label=[_r(labels[i, b, 0]), _r(labels[i, b, 1]), int(labels[i, b, 2])],
            pair_estimate=[_r(kp[i, b, 0]), _r(kp[i, b, 1]), int(vis[i, b])])
    log_tail = sc.position_log10_tail(labels, kp, rad, c)
    limit = np.log10(max(thresholds.position_tail, 1e-300))
    for i, k in zip(*np.nonzero(np.isfinite(log_tail) & (np.nan_to_num(log_tail) < limit))):
        if not explained[i, k]:
            p = 10.0 ** log_tail[i, k]
            add(i, "position", k, 1.0 - p, np.log10(-np.expm1(log_tail[i, k] * np.log(10))) - log_tail[i, k],
                p_label_correct=float(f"{p:.3g}"))
    other = sc.visibility_contradiction(labels, probs)
    for i, k in zip(*np.nonzero(np.isfinite(other) & (np.nan_to_num(other) >= thresholds.visibility))):
        add(i, "visibility", k, other[i, k], _log10_odds(other[i, k]), 3 - int(labels[i, k, 2]))
    p_lab = sc.missing_labelled(labels, probs)
    for i, k in zip(*np.nonzero(np.isfinite(p_lab) & (np.nan_to_num(p_lab) >= thresholds.missing))):
        present = np.r_[0.0, probs[i, k, 1:]]   # occluded or visible, by the rule of `visibility`
        add(i, "missing", k, p_lab[i, k], _log10_odds(p_lab[i, k]), int(visibility_classes(present)))
    out.sort(key=lambda f: (-f["score"], -f["strength"], f["id"]))
    return out
