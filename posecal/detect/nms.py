"""Pose NMS on predicted keypoints, run after pose estimation.

Boxes on one person give near-identical poses; box IoU cannot tell them from two people standing close, keypoint
similarity can. Similarity is COCO OKS with the kept pose as reference (`posecal.metrics.oks.opks`), averaged over
the keypoints *both poses see* when `seen` is given: two boxes on one person agree on what both show and differ on
guesses for what neither sees. Pairs sharing fewer than MIN_SHARED seen keypoints are compared on those both call
present, and are not duplicates when those are still fewer.

`same_keypoints`: two poses are one person when at least that many keypoints both call present coincide (OPKS >=
CLOSE_OPKS: a few pixels; two people side by side never put that many joints on one spot), as two boxes on one
walker agree on head and shoulders and not the legs. A pose coinciding so with two poses that do not coincide with
each other spans two people: `merged_poses`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from posecal.metrics.boxes import inside_shares
from posecal.metrics.oks import opks

NMS_MODES = ("oks", "soft", "none")   # pose_nms's nms: OKS-NMS, soft-OKS-NMS, none

MIN_SHARED = 2   # keypoints two poses must both see before their agreement can call them one person
CLOSE_OPKS = 0.9  # two keypoints of one name this close (OPKS at the kept pose's scale) are one point
APART = 0.1       # ... and this far apart (OPKS below it) are on two bodies
CONTAINED = 0.9   # a box with this share of its area inside another's lies inside it (detector jitter aside)


def _inputs(keypoints, scores, areas):
    kpts = np.asarray(keypoints, dtype=np.float64)[..., :2]  # (N, K, 3) with scores is accepted too
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if len(scores) and (kpts.ndim != 3 or not len(kpts) == len(scores) == len(areas)):
        raise ValueError(f"keypoints {kpts.shape}, scores {scores.shape} and areas {areas.shape} do not match")
    return kpts, scores, areas


def _oks_to(kpts: np.ndarray, ref: int, others: np.ndarray, area: float, seen=None) -> np.ndarray:
    """OKS (len(others),) of poses `others` against pose `ref`, with the reference's area: over all keypoints
    (seen None), else over the keypoints both see (`seen`: (strict, loose) (N, K) bool masks; see the module)."""
    terms = opks(kpts[others], kpts[ref], area)
    if seen is None:
        return terms.mean(-1)
    out = np.zeros(len(others))
    decided = np.zeros(len(others), bool)
    for mask in seen:
        both = mask[others] & mask[ref]
        n = both.sum(-1)
        use = ~decided & (n >= MIN_SHARED)
        out[use] = (terms[use] * both[use]).sum(-1) / n[use]
        decided |= use
    return out


def _seen(seen, n: int, k: int):
    """(strict, loose) (N, K) bool masks from None, one mask or a pair of masks."""
    if seen is None:
        return None
    masks = seen if isinstance(seen, (tuple, list)) else (seen, seen)
    return tuple(np.asarray(m, bool).reshape(n, k) for m in masks)


def _pair_terms(keypoints, areas, present) -> tuple[np.ndarray, np.ndarray]:
    """(N, N, K) OPKS between the same-named keypoints of every two poses, at the row pose's area, and (N, N, K)
    whether both call the keypoint present (`present` (N, K) bool; None: all)."""
    kpts = np.asarray(keypoints, np.float64)[..., :2]
    n, k = kpts.shape[:2]
    present = np.ones((n, k), bool) if present is None else np.asarray(present, bool).reshape(n, k)
    terms = opks(kpts[None], kpts[:, None], np.asarray(areas, np.float64).reshape(n)[:, None])
    return terms, present[:, None] & present[None]


def close_keypoints(keypoints: np.ndarray, areas: np.ndarray, present=None) -> np.ndarray:
    """(N, N) how many keypoints pose i and pose j both call present (`present` (N, K) bool; None: all) lie within
    OPKS >= CLOSE_OPKS of each other, at pose i's area (row); the diagonal is 0."""
    terms, both = _pair_terms(keypoints, areas, present)
    out = ((terms >= CLOSE_OPKS) & both).sum(-1)
    np.fill_diagonal(out, 0)
    return out


def merged_poses(keypoints: np.ndarray, areas: np.ndarray, present, same_keypoints: int) -> np.ndarray:
    """(N,) bool: poses that coincide (close_keypoints >= same_keypoints) with two other poses that do not coincide
    with each other, each of the two a body of its own: it also calls present at least `same_keypoints` keypoints
    that lie elsewhere than the pose's (OPKS < APART). A pose spanning two people (head on one, legs on the
    other) is so; a whole person beside two boxes of halves of them (an upper body whose legs are called absent,
    legs whose head is) is not, and stays."""
    terms, both = _pair_terms(keypoints, areas, present)
    close = ((terms >= CLOSE_OPKS) & both).sum(-1)
    np.fill_diagonal(close, 0)
    close = np.minimum(close, close.T) >= same_keypoints
    apart = ((terms < APART) & both).sum(-1) >= same_keypoints
    out = np.zeros(len(close), bool)
    for i in range(len(close)):
        others = [j for j in np.flatnonzero(close[i]) if apart[i, j]]
        out[i] = any(not close[a, b] for m, a in enumerate(others) for b in others[m + 1:])
    return out


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = 0.9,
            seen=None, same_keypoints: int | None = None, quality: np.ndarray | None = None,
            margin: float | None = None, may_replace: np.ndarray | None = None) -> np.ndarray:
    """Greedy pose NMS: indices of kept poses, best score first. A pose is dropped when its OKS with an
    already kept, higher-scoring pose is > threshold (ties in score keep the lower index), or, with
    `same_keypoints`, when at least that many keypoints both call present (`seen`'s loose mask) coincide with it.
    `seen`: None (OKS over all keypoints), or (strict, loose) (N, K) masks of the keypoints each pose sees (the
    module says why). With `margin`, of the best-scored pose and the poses it takes for the same person, one of
    `quality` above the best-scored's by more than `margin` is kept instead (the highest such; where
    `may_replace` (N, N) bool is given, only a j with may_replace[i, j]), and the poses it takes for its person
    go too."""
    kpts, scores, areas = _inputs(keypoints, scores, areas)
    seen = _seen(seen, *kpts.shape[:2])
    close = None if same_keypoints is None else \
        close_keypoints(kpts, areas, None if seen is None else seen[1]) >= same_keypoints

    def same_as(i, others):
        same = _oks_to(kpts, i, others, areas[i], seen) > threshold
        return same | close[i, others] if close is not None else same

    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        same = same_as(i, rest)
        rivals = rest[same] if may_replace is None else rest[same & may_replace[i, rest]]
        if margin is not None and len(rivals):
            best = rivals[np.argmax(np.asarray(quality, np.float64)[rivals])]
            if quality[best] > quality[i] + margin:
                i, rest = best, rest[~same]
                same = same_as(i, rest)
        keep.append(i)
        order = rest[~same]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = 0.3,
                 sigma: float = 0.5, min_score: float = 1e-3, seen=None) -> tuple[np.ndarray, np.ndarray]:
    """Soft pose NMS (Gaussian decay, after Bodla et al.'s Soft-NMS): instead of deleting a duplicate, lower
    its score so a wrongly suppressed person can still count at a lower rank.

    Repeatedly take the highest (current) score; every remaining pose whose OKS with it is > threshold has
    its score multiplied by exp(-OKS^2 / sigma) (an exact duplicate, OKS = 1, keeps exp(-1/sigma), 0.135
    for sigma = 0.5); poses at OKS <= threshold, e.g. other people, keep their score unchanged. Poses whose
    score falls below min_score are dropped. Returns (kept indices, their new scores), in the order
    taken, which is descending new score.
    """
    kpts, scores, areas = _inputs(keypoints, scores, areas)
    seen = _seen(seen, *kpts.shape[:2])
    new = scores.copy()
    left = np.flatnonzero(new >= min_score)
    keep, kept_scores = [], []
    while len(left):
        j = left[np.argmax(new[left])]  # first of equal scores: the lower index
        keep.append(j)
        kept_scores.append(new[j])
        left = left[left != j]
        overlap = _oks_to(kpts, j, left, areas[j], seen)
        new[left] *= np.where(overlap > threshold, np.exp(-overlap ** 2 / sigma), 1.0)
        left = left[new[left] >= min_score]
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores, dtype=np.float64)


def seen_masks(persons: list):
    """(strict, loose) (N, K) masks of the keypoints each pose sees: called visible, and called present
    (visible or occluded); None for a model that predicts no visibility (OKS over all keypoints then)."""
    if any(p.visibility is None for p in persons):
        return None
    vis = np.stack([np.asarray(p.visibility) for p in persons])
    return vis == 2, vis >= 1


def pose_nms(persons: list, nms: str, threshold: float, mode: str, rank: Callable | None = None,
             same_keypoints: int | None = None, margin: float | None = None) -> list:
    """PersonPose list -> the poses kept: OKS-NMS (nms="oks") keeps the best-scored (by scores[mode], times
    `rank(person)` where given) of poses that agree on the keypoints both see (seen_masks), or that put
    `same_keypoints` keypoints on one spot (oks_nms); soft-OKS-NMS ("soft")
    lowers the scores of the poses whose OKS with a better one is above the same `threshold`; "none" keeps all.

    Why a rank beside the pose score: two boxes on one person give poses of near-equal quality (0.92 and 0.92),
    and the one the detector is surer of frames the person better (the person policy passes its evidence). Why
    a `margin` (oks_nms) beside the rank: where the pose qualities are far apart, the trust model is surer of one
    pose than the box's score can say (a box on one person whose pose took the head of the person behind)."""
    if nms == "none":
        return persons
    kps = np.stack([p.keypoints for p in persons])
    scores = np.array([p.scores[mode] * (rank(p) if rank is not None else 1.0) for p in persons])
    areas = np.array([p.box[2] * p.box[3] for p in persons])
    seen = seen_masks(persons)
    if nms == "oks":
        quality = np.array([p.scores[mode] for p in persons])
        boxes = np.array([np.asarray(p.box, float) for p in persons]).reshape(-1, 4)
        # a box inside the other's is a part of that person: its pose, however good, does not frame them
        may_replace = np.array([inside_shares(b, boxes) for b in boxes]).T < CONTAINED
        return [persons[i] for i in oks_nms(kps, scores, areas, threshold, seen, same_keypoints, quality, margin,
                                            may_replace)]
    keep, new_scores = soft_oks_nms(kps, np.array([p.scores[mode] for p in persons]), areas, threshold, seen=seen)
    for i, s in zip(keep, new_scores):
        persons[i].scores[mode] = float(s)
    return [persons[i] for i in keep]
