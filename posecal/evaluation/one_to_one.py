"""A results file's pose quality judged as users meet it: every pose scored one to one against the labelled people
of its picture, as COCO AP counts poses (posecal/metrics/reported.py), beside the floor a calibrated predictor
shows on as many poses.

Why here and not only in COCO AP: AP ranks poses; it does not say whether a pose quality of 0.8 means an OKS of
0.8. On labelled boxes each pose has its own person (eval's trust metrics). On the poses a detector's boxes give,
one person may be posed twice (COCO counts the second pose wrong: scored 0 here), one pose may lie over two people,
or on nobody labelled (not scored here, counted). `eval --detector` and `eval --results` on what `predict` wrote
print these figures, so a user measures the product end to end on their own labelled photos.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from posecal.metrics.calibration import ece, ece_floor, pearson
from posecal.metrics.reported import DUPLICATE, MATCHED, UNCOVERED, match_reported

CONFIDENT = 0.7      # "a confident pose": pose quality at least this ...
WRONG_BELOW = 0.5    # ... is wrong when its OKS one to one is under this


def _round(v, n: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), n)


@dataclass
class PoseOutcomes:
    """Each results entry scored one to one against its picture's labelled people (match_reported)."""

    kind: np.ndarray          # (N,) MATCHED, DUPLICATE or UNCOVERED
    target: np.ndarray        # (N,) the OKS one to one: 0 for a duplicate, NaN uncovered
    person: list              # (N,) the labelled annotation matched (a duplicate: the one it covers best), or None
    order: np.ndarray         # the entries picture by picture: the order the figures take them in
    people_labelled: int      # the labelled people of the truth, posed or not

    @property
    def scored(self) -> np.ndarray:
        """The entries in `order` that lie on a labelled person (matched or duplicate)."""
        return self.order[self.kind[self.order] != UNCOVERED]


def labelled_people(truth: dict) -> dict[int, list[dict]]:
    """The truth's non-crowd person annotations with at least one labelled keypoint, by image id."""
    people = defaultdict(list)
    for a in truth.get("annotations", []):
        kp = np.asarray(a.get("keypoints", []), np.float64)
        if not a.get("iscrowd") and kp.size and (kp.reshape(-1, 3)[:, 2] > 0).any():
            people[a["image_id"]].append(a)
    return people


def pose_outcomes(entries: list[dict], quality: np.ndarray, truth: dict) -> PoseOutcomes | None:
    """The poses of `entries` (results entries with image_id, keypoints and bbox) with their pose quality
    `quality` (N,), scored against the people of `truth` (a COCO dict: images with width and height, person
    annotations) labelled with at least one keypoint, one to one per picture in order of quality. None where an
    entry has no box."""
    if not entries or any("bbox" not in e for e in entries):
        return None
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in truth.get("images", [])}
    people = labelled_people(truth)
    by_image = defaultdict(list)
    for i, e in enumerate(entries):
        by_image[e["image_id"]].append(i)
    n = len(entries)
    out = PoseOutcomes(np.full(n, UNCOVERED, object), np.full(n, np.nan), [None] * n,
                       np.concatenate([np.asarray(v, int) for v in by_image.values()]),
                       sum(len(v) for v in people.values()))
    for image_id, index in by_image.items():
        labelled = people.get(image_id, [])
        if not labelled:
            continue
        w, h = sizes.get(image_id, (None, None))
        kps = np.stack([np.asarray(entries[i]["keypoints"], np.float64).reshape(-1, 3)[:, :2] for i in index])
        boxes = np.stack([np.asarray(entries[i]["bbox"], np.float64) for i in index])
        score = match_reported(kps, boxes, quality[index],
                               np.stack([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in labelled]),
                               np.array([float(a["area"]) for a in labelled]),
                               np.array([a["bbox"] for a in labelled], np.float64),
                               None if w is None or h is None else (w, h))
        out.kind[index], out.target[index] = score.kind, score.target
        for i, j in zip(index, score.person):
            out.person[i] = labelled[j] if j >= 0 else None
    return out


def one_to_one(entries: list[dict], quality: np.ndarray, truth: dict) -> dict:
    """pose_outcomes summed up: the counts (matched, duplicates, uncovered), the share of labelled people found
    with a right pose (matched at OKS >= 0.5) and, over the scored poses, the ECE of quality against OKS beside its
    floor (mean, 90th percentile), Pearson r and the share wrong among the confident. {} where no entry has a
    box."""
    outcomes = pose_outcomes(entries, quality, truth)
    if outcomes is None:
        return {}
    kind, n_people = outcomes.kind, outcomes.people_labelled
    found = int(((kind == MATCHED) & (np.nan_to_num(outcomes.target) >= WRONG_BELOW)).sum())
    out = {"poses": len(entries), "matched": int((kind == MATCHED).sum()),
           "duplicates": int((kind == DUPLICATE).sum()), "uncovered": int((kind == UNCOVERED).sum()),
           "people_labelled": n_people, "found_right": _round(found / n_people if n_people else None)}
    scored = outcomes.scored
    q, t = np.asarray(quality, np.float64)[scored], outcomes.target[scored]
    if len(q) >= 2:
        floor, floor90 = ece_floor(q, t)
        confident = q >= CONFIDENT
        out |= {"scored": int(len(q)), "ece": _round(ece(q, t)), "ece_floor": [_round(floor), _round(floor90)],
                "pearson": _round(pearson(q, t), 3), "mean_quality": _round(q.mean(), 3),
                "mean_oks": _round(t.mean(), 3), "confident": int(confident.sum()),
                "confident_wrong_share": _round((t[confident] < WRONG_BELOW).mean()) if confident.any() else None}
    return out
