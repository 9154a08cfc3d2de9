"""Identity keeping scored against truth: tracks (`posecal track`'s tracks.json) held against per-frame truth with
track ids (e.g. `bench.lab.moving_people`'s truth JSON), by the CLEAR-MOT and identity measures of py-motmetrics
(IDF1, identity switches, MOTA on boxes) plus keypoint error and keypoint jitter against the truth.

Boxes are matched per frame by IoU (distance 1 - IoU, no match below `iou_threshold`, 0.5 as in MOTChallenge).
Truth people seen less than `min_visible` (their `visible_fraction`: mostly hidden behind a nearer person, or
mostly out of the frame) are not counted, neither as people to find nor, when a track sits on one, as a false
positive: a prediction whose best match (Hungarian, IoU >= threshold) is such a person is left out of that frame,
as MOTChallenge does with its ignored boxes. A track that keeps its id through the hiding is still scored when
the person comes out again.

Keypoints, on the box matches motmetrics made (MATCH or SWITCH events):
* `keypoint_error`: mean distance |pred - truth| / truth box height over truth keypoints labelled (v > 0);
* `jitter`: mean over matched (truth id, track id) triples of consecutive frames of the mean over keypoints
  visible (v = 2) in all three of |e[t+1] - 2 e[t] + e[t-1]| / box height, e = pred - truth: the shaking of
  the error, so the truth's own motion (curves, steps) does not count, only what the estimate adds.

motmetrics is imported when scoring (it is in the `dev` extra, not a runtime dependency of posecal).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from posecal.metrics.boxes import box_iou, inside_share

MOT_METRICS = ["idf1", "idp", "idr", "mota", "motp", "num_switches", "num_frames", "num_objects",
               "num_unique_objects", "num_misses", "num_false_positives", "mostly_tracked", "mostly_lost",
               "num_fragmentations"]


def _motmetrics():
    try:
        import motmetrics
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("scoring tracks needs motmetrics (pip install motmetrics, or posecal[dev])") from e
    return motmetrics


@dataclass
class SceneScore:
    """One scene's accumulator and keypoint sums (scores combine over scenes in `summarize`)."""
    name: str
    acc: object                                   # motmetrics.MOTAccumulator
    frames: int
    kp_err_sum: float = 0.0
    kp_err_n: int = 0
    jitter: list = field(default_factory=list)    # one value per matched triple of frames
    track_ids: set = field(default_factory=set)
    occlusions: list = field(default_factory=list)  # (frames hidden, id kept) per time a person went behind another


def accumulate(name: str, truth: dict, results: list[dict], iou_threshold: float = 0.5,
               min_visible: float = 0.25) -> SceneScore:
    """Match `results` (COCO keypoint results with image_id = frame index, track_id, bbox, keypoints) to
    `truth` (COCO-style, annotations with image_id = frame index, track_id, bbox, keypoints and optionally
    visible_fraction) frame by frame. Frames are the truth's images."""
    mm = _motmetrics()
    frames = sorted(im["id"] for im in truth["images"])
    gt_by, res_by = defaultdict(list), defaultdict(list)
    for a in truth["annotations"]:
        gt_by[a["image_id"]].append(a)
    for r in results:
        res_by[r["image_id"]].append(r)
    acc = mm.MOTAccumulator(auto_id=False)
    score = SceneScore(name, acc, len(frames))
    matched = {}                                   # frame -> {truth id: (truth ann, result)}
    for t in frames:
        gts, hyps = gt_by.get(t, []), res_by.get(t, [])
        seen = [a.get("visible_fraction", 1.0) >= min_visible for a in gts]
        if hyps and gts:
            iou = box_iou([a["bbox"] for a in gts], [r["bbox"] for r in hyps])
            rows, cols = linear_sum_assignment(-iou)
            drop = {c for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold and not seen[r]}
            hyps = [h for j, h in enumerate(hyps) if j not in drop]
        gts = [a for a, s in zip(gts, seen) if s]
        iou = box_iou([a["bbox"] for a in gts], [r["bbox"] for r in hyps])
        dist = np.where(iou >= iou_threshold, 1.0 - iou, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc.update([int(a["track_id"]) for a in gts], [int(r["track_id"]) for r in hyps], dist, frameid=t)
        score.track_ids |= {int(r["track_id"]) for r in hyps}
        matched[t] = (gts, hyps)
    _keypoint_scores(score, matched)
    score.occlusions = occlusions_kept(truth, score.acc.mot_events, min_visible)
    return score


def occlusions_kept(truth: dict, events, min_visible: float = 0.25, max_hidden: int = 15) -> list:
    """[(frames hidden, id kept)] for each time a counted person went behind a nearer one for 1..max_hidden frames
    (a second at 15 fps) and came out again: hidden = seen less than `min_visible` while a nearer person's box
    covers half of theirs; kept = the last track matched to them before (within max_hidden frames) is the first
    matched after (within max_hidden frames of coming out); a person matched on neither side is not kept."""
    by_person = defaultdict(dict)
    for a in truth["annotations"]:
        by_person[int(a["track_id"])][a["image_id"]] = a
    by_frame = defaultdict(list)
    for a in truth["annotations"]:
        by_frame[a["image_id"]].append(a)
    links = {}
    pairs = events[events["Type"].isin(["MATCH", "SWITCH"])]
    for (t, _), row in pairs.iterrows():
        links[(t, int(row["OId"]))] = int(row["HId"])
    out = []
    for pid, frames in by_person.items():
        ts = sorted(frames)
        i = 0
        while i < len(ts):
            if frames[ts[i]].get("visible_fraction", 1.0) >= min_visible or i == 0:
                i += 1
                continue
            j = i
            while j < len(ts) and ts[j] == ts[i] + (j - i) and frames[ts[j]].get("visible_fraction", 1.0) < min_visible:
                j += 1
            before, after = ts[i - 1], ts[j] if j < len(ts) else None
            hidden = [frames[t] for t in ts[i:j]]
            if (after is not None and after == ts[j - 1] + 1 and before == ts[i] - 1 and j - i <= max_hidden
                    and all(_behind(a, by_frame[a["image_id"]]) for a in hidden)):
                last = next((links[(t, pid)] for t in range(before, before - max_hidden, -1) if (t, pid) in links),
                            None)
                first = next((links[(t, pid)] for t in range(after, after + max_hidden) if (t, pid) in links), None)
                kept = last is not None and last == first
                out.append((j - i, bool(kept)))
            i = j
    return out


def _behind(person: dict, others: list) -> bool:
    """Does a nearer person's box cover half of this person's box?"""
    return any(o.get("depth", 0) > person.get("depth", 0) and inside_share(person["bbox"], o["bbox"]) >= 0.5
               for o in others)


def _keypoint_scores(score: SceneScore, matched: dict) -> None:
    events = score.acc.mot_events
    pairs = events[events["Type"].isin(["MATCH", "SWITCH"])]
    by_frame = defaultdict(dict)
    for (t, _), row in pairs.iterrows():
        by_frame[t][int(row["OId"])] = int(row["HId"])
    errors = {}                                    # (frame, truth id) -> (track id, (K, 2) error, (K,) v, height)
    for t, links in by_frame.items():
        gts, hyps = matched[t]
        gt_of = {int(a["track_id"]): a for a in gts}
        hyp_of = {int(r["track_id"]): r for r in hyps}
        for oid, hid in links.items():
            a, r = gt_of[oid], hyp_of[hid]
            gt = np.asarray(a["keypoints"], float).reshape(-1, 3)
            pred = np.asarray(r["keypoints"], float).reshape(-1, 3)[:, :2]
            height = max(float(a["bbox"][3]), 1.0)
            e = pred - gt[:, :2]
            lab = gt[:, 2] > 0
            score.kp_err_sum += float(np.linalg.norm(e[lab], axis=1).sum() / height)
            score.kp_err_n += int(lab.sum())
            errors[(t, oid)] = (hid, e, gt[:, 2], height)
    for (t, oid), (hid, e1, v1, h1) in errors.items():
        prev, nxt = errors.get((t - 1, oid)), errors.get((t + 1, oid))
        if prev is None or nxt is None or prev[0] != hid or nxt[0] != hid:
            continue
        ok = (prev[2] == 2) & (v1 == 2) & (nxt[2] == 2)
        if ok.any():
            acc = np.linalg.norm(nxt[1][ok] - 2 * e1[ok] + prev[1][ok], axis=1)
            score.jitter.append(float(acc.mean() / h1))


def summarize(scores: list[SceneScore]) -> dict[str, dict]:
    """Per scene and "OVERALL": motmetrics' MOT_METRICS, switches_per_100_frames, keypoint_error, jitter,
    predicted_tracks (distinct track ids), truth_tracks, occlusions (times a person went behind another for up to a
    second and came out) and occlusions_kept (of those, the times the person kept their track)."""
    mm = _motmetrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = mm.metrics.create().compute_many([s.acc for s in scores], metrics=MOT_METRICS,
                                                 names=[s.name for s in scores], generate_overall=True)
    out = {}
    groups = [(s.name, [s]) for s in scores] + [("OVERALL", scores)]
    for name, group in groups:
        row = {k: float(table.loc[name, k]) for k in MOT_METRICS}
        frames = sum(s.frames for s in group)
        n_err = sum(s.kp_err_n for s in group)
        jit = [j for s in group for j in s.jitter]
        row.update(num_frames=frames,
                   switches_per_100_frames=100.0 * row["num_switches"] / max(frames, 1),
                   keypoint_error=sum(s.kp_err_sum for s in group) / n_err if n_err else float("nan"),
                   jitter=float(np.mean(jit)) if jit else float("nan"),
                   predicted_tracks=sum(len(s.track_ids) for s in group),
                   occlusions=sum(len(s.occlusions) for s in group),
                   occlusions_kept=sum(k for s in group for _, k in s.occlusions))
        out[name] = row
    return out

