"""What the tracker's false positives lie on (python bench/track_false_positives.py WORK [WORK ...]).

WORK is a `bench/track_ids.py --work WORK` folder after a run: its sceneN.json (truth) and sceneN_tracks.json
(posecal track's output). The matching of bench.lab.mot is replayed frame by frame (Hungarian on box IoU
with every truth person; IoU >= 0.5 matches; a match on a person less than 25 % visible is left out, as there),
and each reported box left unmatched is sorted by its best IoU with any truth person:
* on nothing: IoU < 0.1 (a ghost: a post, a tripod);
* on a person another track holds: the best person is matched to another box (a duplicate track);
* near a hidden person: the best person is less than 25 % visible;
* too loose: IoU 0.1-0.5 with a person no box matched.
The table in docs/tracking.md ("Which network tracks") came from this, with --track model=published|accurate.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from posecal.metrics.boxes import box_iou

KINDS = ("matched", "hidden match", "on nothing", "on a person another track holds", "near a hidden person",
         "too loose")


def classify(truth: dict, tracks: list[dict], min_visible: float = 0.25) -> Counter:
    gt_by, res_by = defaultdict(list), defaultdict(list)
    for a in truth["annotations"]:
        gt_by[a["image_id"]].append(a)
    for r in tracks:
        res_by[r["image_id"]].append(r)
    counts: Counter = Counter()
    for t in res_by:
        gts, hyps = gt_by.get(t, []), res_by[t]
        if not gts:
            counts["on nothing"] += len(hyps)
            continue
        seen = [a.get("visible_fraction", 1.0) >= min_visible for a in gts]
        iou = box_iou([a["bbox"] for a in gts], [r["bbox"] for r in hyps])
        rows, cols = linear_sum_assignment(-iou)
        owner = {r: c for r, c in zip(rows, cols) if iou[r, c] >= 0.5}       # person -> the box matched to it
        for j in range(len(hyps)):
            person = int(iou[:, j].argmax())
            if owner.get(person) == j:
                counts["matched" if seen[person] else "hidden match"] += 1
            elif iou[person, j] < 0.1:
                counts["on nothing"] += 1
            elif person in owner:
                counts["on a person another track holds"] += 1
            elif not seen[person]:
                counts["near a hidden person"] += 1
            else:
                counts["too loose"] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", nargs="+", help="bench/track_ids.py --work folders")
    args = ap.parse_args()
    print(f"{'work':24} " + " | ".join(KINDS))
    for work in map(Path, args.work):
        total: Counter = Counter()
        for truth_file in sorted(work.glob("scene*.json")):
            if truth_file.stem.endswith("_tracks"):
                continue
            tracks_file = truth_file.with_name(f"{truth_file.stem}_tracks.json")
            if tracks_file.is_file():
                total += classify(json.loads(truth_file.read_text()), json.loads(tracks_file.read_text()))
        print(f"{str(work):24} " + " | ".join(str(total[k]) for k in KINDS))


if __name__ == "__main__":
    main()
