"""Reported poses scored against every labelled person of their picture, one to one, as COCO AP counts them.

A pose the product reports may lie on a labelled person (its OKS is what the pose quality promises), on a person
another pose already took (one person posed twice: COCO AP counts the second pose wrong), across two people (a
merge: its OKS with either is low), on a part of a person (a half pose), or on nobody labelled (a person without
labels, a shadow: not scored here, counted). `match_reported` takes the poses in order of pose quality, as COCO's
evaluation takes detections in order of score, and gives each the labelled person it covers that no better-rated
pose took, with the largest OKS; its target is that OKS over all the person's labelled keypoints, those outside the
picture included (a person cut by the picture's edge is scored on every joint, as posecal's truncation figures
score it). Metrics know no model: poses come in as arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.metrics.boxes import box_iou
from posecal.metrics.oks import opks, oks

# a pose covers a labelled person when their boxes overlap this much (IoU) or its OKS with them reaches COVER_OKS
COVER_IOU = 0.3
COVER_OKS = 0.3
# a keypoint lies on a labelled person's keypoint of the same name when their OPKS reaches this
ON_KEYPOINT = 0.5
# a merge puts at least this many keypoints on a second labelled person (and not on its own)
MERGE_KEYPOINTS = 3
# a half pose leaves at least this many of its person's visible keypoints further than HALF_MARGIN of its box's
# size outside its box
HALF_KEYPOINTS = 2
HALF_MARGIN = 0.2

MATCHED, DUPLICATE, UNCOVERED = "matched", "duplicate", "uncovered"


@dataclass
class ReportedScore:
    """Per reported pose (the input order): `kind` matched / duplicate / uncovered; `person` the labelled person
    it was matched to (or, for a duplicate, the one it covers best), -1 where none; `target` the OKS one to one
    (0 for a duplicate, NaN uncovered); `shared` the OKS with the person it covers best whether or not another
    pose took them; `inside` that OKS over the keypoints inside the picture only (NaN without a picture size);
    `merge`, `half`, `cut` the failure flags of the module (cut: the person has labelled keypoints outside the
    picture)."""

    kind: np.ndarray
    person: np.ndarray
    target: np.ndarray
    shared: np.ndarray
    inside: np.ndarray
    merge: np.ndarray
    half: np.ndarray
    cut: np.ndarray


def truth_boxes(truth: np.ndarray) -> np.ndarray:
    """(T, 4) x, y, w, h around each labelled person's labelled keypoints (T, K, 3); zeros for one with none."""
    out = np.zeros((len(truth), 4))
    for t, kp in enumerate(np.asarray(truth, np.float64)):
        xy = kp[kp[:, 2] > 0, :2]
        if len(xy):
            lo, hi = xy.min(0), xy.max(0)
            out[t] = [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]
    return out


def _outside_box(xy: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    x, y, w, h = box
    mx, my = margin * w, margin * h
    return (xy[:, 0] < x - mx) | (xy[:, 0] > x + w + mx) | (xy[:, 1] < y - my) | (xy[:, 1] > y + h + my)


def match_reported(keypoints, boxes, quality, truth, areas, person_boxes=None, size=None,
                   cover_iou: float = COVER_IOU) -> ReportedScore:
    """Score P reported poses ((P, K, 2) keypoints, (P, 4) x, y, w, h boxes, (P,) pose quality) against T labelled
    people ((T, K, 3) keypoints with COCO v, (T,) OKS areas, optional (T, 4) boxes: else around their keypoints) of
    one picture of `size` (w, h), one to one in order of quality (module docstring). `cover_iou`: the box overlap
    that makes a pose cover a person (raise it where the picture's other people are not labelled, as in LSPET,
    so that a pose on a bystander beside the athlete is not scored against the athlete)."""
    kps = np.asarray(keypoints, np.float64).reshape(len(quality), -1, 2)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    quality = np.asarray(quality, np.float64).reshape(-1)
    truth = np.asarray(truth, np.float64).reshape(-1, kps.shape[1] if len(kps) else 17, 3)
    areas = np.asarray(areas, np.float64).reshape(-1)
    p, t = len(quality), len(truth)
    person_boxes = truth_boxes(truth) if person_boxes is None else np.asarray(person_boxes, np.float64).reshape(-1, 4)
    out = ReportedScore(kind=np.full(p, UNCOVERED, object), person=np.full(p, -1), target=np.full(p, np.nan),
                        shared=np.full(p, np.nan), inside=np.full(p, np.nan), merge=np.zeros(p, bool),
                        half=np.zeros(p, bool), cut=np.zeros(p, bool))
    if p == 0 or t == 0:
        return out
    labelled = truth[..., 2] > 0
    pair_oks = np.nan_to_num(oks(kps[:, None], truth[None, :, :, :2], truth[None, :, :, 2], areas[None]), nan=0.0)
    terms = opks(kps[:, None], truth[None, :, :, :2], areas[None])                      # (P, T, K)
    covers = (box_iou(boxes, person_boxes) >= cover_iou) | (pair_oks >= COVER_OKS)
    if size is not None:
        w, h = size
        xy = truth[..., :2]
        in_pic = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    taken = np.zeros(t, bool)
    for i in np.argsort(-quality, kind="stable"):
        if not covers[i].any():
            continue
        free = covers[i] & ~taken
        best_any = int(np.argmax(np.where(covers[i], pair_oks[i], -1.0)))
        if free.any():
            j = int(np.argmax(np.where(free, pair_oks[i], -1.0)))
            taken[j] = True
            out.kind[i], out.person[i], out.target[i] = MATCHED, j, pair_oks[i, j]
        else:
            j = best_any
            out.kind[i], out.person[i], out.target[i] = DUPLICATE, j, 0.0
        out.shared[i] = pair_oks[i, best_any]
        if size is not None:
            use = labelled[best_any] & in_pic[best_any]
            out.inside[i] = (terms[i, best_any] * use).sum() / use.sum() if use.any() else np.nan
            out.cut[i] = bool((labelled[j] & ~in_pic[j]).any())
        on = (terms[i] >= ON_KEYPOINT) & labelled                                       # (T, K)
        elsewhere = (on & ~on[j]).sum(-1)                     # keypoints on another person and not on its own
        out.merge[i] = bool(on[j].any() and np.any(np.delete(elsewhere, j) >= MERGE_KEYPOINTS))
        visible = truth[j, :, 2] == 2
        out.half[i] = bool((visible & _outside_box(truth[j, :, :2], boxes[i], HALF_MARGIN)).sum() >= HALF_KEYPOINTS)
    return out
