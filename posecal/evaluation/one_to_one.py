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

import numpy as np

from posecal.metrics.calibration import ece, ece_floor, pearson
from posecal.metrics.reported import DUPLICATE, MATCHED, UNCOVERED, match_reported

CONFIDENT = 0.7      # "a confident pose": pose quality at least this ...
WRONG_BELOW = 0.5    # ... is wrong when its OKS one to one is under this


def _round(v, n: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), n)


def one_to_one(entries: list[dict], quality: np.ndarray, truth: dict) -> dict:
    """The poses of `entries` (results entries with image_id, keypoints and bbox) with their pose quality
    `quality` (N,), scored against the people of `truth` (a COCO dict: images with width and height, person
    annotations) labelled with at least one keypoint, one to one per picture in order of quality: the counts
    (matched, duplicates, uncovered), the share of labelled people found with a right pose (matched at OKS >= 0.5)
    and, over the scored poses, the ECE of quality against OKS beside its floor (mean, 90th percentile), Pearson r
    and the share wrong among the confident. {} where no entry has a box."""
    if not entries or any("bbox" not in e for e in entries):
        return {}
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in truth.get("images", [])}
    people = defaultdict(list)
    for a in truth.get("annotations", []):
        kp = np.asarray(a.get("keypoints", []), np.float64)
        if not a.get("iscrowd") and kp.size and (kp.reshape(-1, 3)[:, 2] > 0).any():
            people[a["image_id"]].append(a)
    by_image = defaultdict(list)
    for i, e in enumerate(entries):
        by_image[e["image_id"]].append(i)
    q_all, t_all, kinds, found = [], [], [], 0
    for image_id, index in by_image.items():
        labelled = people.get(image_id, [])
        index = np.asarray(index)
        if not labelled:
            kinds += [UNCOVERED] * len(index)
            continue
        w, h = sizes.get(image_id, (None, None))
        kps = np.stack([np.asarray(entries[i]["keypoints"], np.float64).reshape(-1, 3)[:, :2] for i in index])
        boxes = np.stack([np.asarray(entries[i]["bbox"], np.float64) for i in index])
        score = match_reported(kps, boxes, quality[index],
                               np.stack([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in labelled]),
                               np.array([float(a["area"]) for a in labelled]),
                               np.array([a["bbox"] for a in labelled], np.float64),
                               None if w is None or h is None else (w, h))
        kinds += list(score.kind)
        scored = score.kind != UNCOVERED
        q_all.append(quality[index][scored])
        t_all.append(score.target[scored].astype(np.float64))
        found += int(((score.kind == MATCHED) & (score.target >= WRONG_BELOW)).sum())
    kinds = np.asarray(kinds, object)
    n_people = sum(len(v) for k, v in people.items())
    out = {"poses": len(entries), "matched": int((kinds == MATCHED).sum()),
           "duplicates": int((kinds == DUPLICATE).sum()), "uncovered": int((kinds == UNCOVERED).sum()),
           "people_labelled": n_people, "found_right": _round(found / n_people if n_people else None)}
    q = np.concatenate(q_all) if q_all else np.zeros(0)
    t = np.concatenate(t_all) if t_all else np.zeros(0)
    if len(q) >= 2:
        floor, floor90 = ece_floor(q, t)
        confident = q >= CONFIDENT
        out |= {"scored": int(len(q)), "ece": _round(ece(q, t)), "ece_floor": [_round(floor), _round(floor90)],
                "pearson": _round(pearson(q, t), 3), "mean_quality": _round(q.mean(), 3),
                "mean_oks": _round(t.mean(), 3), "confident": int(confident.sum()),
                "confident_wrong_share": _round((t[confident] < WRONG_BELOW).mean()) if confident.any() else None}
    return out
