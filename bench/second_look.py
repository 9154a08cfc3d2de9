"""Does a second look find the people the detector misses in video? (python bench/second_look.py)

The shipped SSD squeezes a whole frame into 300 x 300: a 768 x 432 frame loses 2.6x of its width, so far and
narrow people shrink to a few pixels across. The second look (posecal/detect/tiles.py, `posecal track
--second-look`) runs the same detector again on square tiles of the frame, each scaled alike in x and y, and
merges their boxes with the full frame's (box NMS). Measured on the tracking benchmark's scenes (bench/track_ids.py:
the 5 tuning and 6 held-out scenes, exact truth), every 3rd frame (track's detector frames): the share of the
people at least 25 % visible whose box a detection matches at IoU >= 0.5 (one-to-one, greedy by IoU),
detections matching nobody, and detector ms per frame (1 thread).

Usage: python bench/second_look.py [--work runs/track_ids] [--threshold 0.3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from track_ids import make_held_out_scenes, make_scenes  # noqa: E402

from posecal.detect.ssd import SsdPersonDetector  # noqa: E402
from posecal.detect.tiles import SecondLook  # noqa: E402
from posecal.metrics.boxes import box_iou  # noqa: E402


def matched(truth: np.ndarray, found: np.ndarray) -> int:
    """Truth boxes a detection matches at IoU >= 0.5, one-to-one, greedy by IoU."""
    if not len(truth) or not len(found):
        return 0
    iou = box_iou(truth, found)
    n = 0
    while iou.size and iou.max() >= 0.5:
        i, j = np.unravel_index(iou.argmax(), iou.shape)
        iou[i, :], iou[:, j] = -1, -1
        n += 1
    return n


def score(scenes, detector, every: int) -> dict:
    out = {k: {"people": 0, "found": 0, "detections": 0, "unmatched": 0, "ms": []} for k in ("full", "second_look")}
    for name, video, truth_path in scenes:
        truth = json.loads(truth_path.read_text())
        by_frame: dict[int, list] = {}
        for a in truth["annotations"]:
            if a.get("visible_fraction", 1.0) >= 0.25 and a["bbox"][2] > 0 and a["bbox"][3] > 0:
                by_frame.setdefault(a["image_id"], []).append(a["bbox"])
        cap = cv2.VideoCapture(str(video))
        k = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if k % every == 0:
                gt = np.array(by_frame.get(k, []), float).reshape(-1, 4)
                for kind, run in (("full", detector), ("second_look", SecondLook(detector))):
                    t = time.perf_counter()
                    boxes, _ = run(bgr)
                    o = out[kind]
                    o["ms"].append(1000 * (time.perf_counter() - t))
                    n = matched(gt, boxes)
                    o["people"] += len(gt)
                    o["found"] += n
                    o["detections"] += len(boxes)
                    o["unmatched"] += len(boxes) - n
            k += 1
        cap.release()
    for o in out.values():
        o["recall"] = o["found"] / max(o["people"], 1)
        o["ms_per_frame"] = float(np.median(o.pop("ms")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/track_ids"))
    ap.add_argument("--threshold", type=float, default=0.3, help="the detector's score threshold (track's: 0.3)")
    ap.add_argument("--every", type=int, default=3, help="every N-th frame (track's detector frames)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    detector = SsdPersonDetector(score_threshold=args.threshold, threads=1)
    report = {"threshold": args.threshold, "every": args.every}
    for part, scenes in (("tuning", make_scenes(args.work, 5, 150)),
                         ("held_out", make_held_out_scenes(args.work, 6, 150, 5))):
        report[part] = score(scenes, detector, args.every)
        for kind, o in report[part].items():
            print(f"{part:8} {kind:12} people {o['people']:5d} found {o['found']:5d} ({o['recall']:.3f}) "
                  f"detections {o['detections']:5d} unmatched {o['unmatched']:5d} "
                  f"{o['ms_per_frame']:.1f} ms/frame", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
