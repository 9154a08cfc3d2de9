"""Trust in video, per world kind: the keypoint and pose quality `posecal track` writes against the truth of the
tracking worlds' scenes, each ECE beside its floor (truth redrawn around the prediction with the spread of its bin).

    python bench/video_trust.py [--work runs/track_worlds] [--kinds vtest intel ...] [--scenes 2] [--frames 75]
        [--json FILE]

The scenes and their tracked records are bench/track_worlds.py's (kept in --work; a scene not tracked there yet is
tracked with `posecal track`'s defaults). Records are paired with the truth per frame by box IoU >= 0.5
(bench/lab/video_worlds.video_pairs, people under 25 % visible left out), as the video calibration's judge pairs
them. Give two --work folders tracked by two versions of posecal to compare them on the same scenes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench.lab.video_worlds import kind_scenes, tracked_records, video_pairs  # noqa: E402
from posecal.calibration.video import record_truth  # noqa: E402
from posecal.metrics.calibration import ece, ece_floor  # noqa: E402

KINDS = ("vtest", "vtest_half", "vtest_blur", "vtest_crowd", "intel", "intel_mirrored", "intel_jpeg", "intel_pan")


def kind_figures(pairs: list[tuple[dict, dict]]) -> dict:
    detected = [(a, r) for a, r in pairs if r.get("pose_source", "detected") == "detected"]
    out = {"pairs": len(pairs), "detected": len(detected)}
    for name, use in (("all", pairs), ("detected", detected)):
        if not use:
            continue
        t = record_truth(use)
        lab, has = t["labelled"], np.isfinite(t["oks"])
        kq, ko = t["quality"][lab], t["opks"][lab]
        pq, po = np.clip(t["pose_quality"][has], 0, 1), t["oks"][has]
        out[name] = {"keypoint_ece": round(ece(kq, ko), 4), "keypoint_floor_p90": round(ece_floor(kq, ko)[1], 4),
                     "pose_ece": round(ece(pq, po), 4), "pose_floor_p90": round(ece_floor(pq, po)[1], 4),
                     "mean_pose_quality": round(float(pq.mean()), 3), "mean_oks": round(float(po.mean()), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, nargs="+", default=[ROOT / "runs" / "track_worlds"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {}
    for work in args.work:
        result[str(work)] = {}
        print(f"{work}:")
        print(f"{'world':<16}{'pairs':>7}{'kp ECE':>9}{'floor90':>9}{'pose ECE':>10}{'floor90':>9}"
              f"{'mean Q':>8}{'mean OKS':>9}   (all poses; detected only: pose ECE / floor90)")
        for kind in args.kinds:
            pairs = []
            for name, video, truth in kind_scenes(work, kind, args.scenes, args.frames):
                records = tracked_records(args.model, kind, name, video, truth, work)
                pairs += video_pairs(json.loads(Path(truth).read_text()), records)
            f = result[str(work)][kind] = kind_figures(pairs)
            a, d = f.get("all", {}), f.get("detected", {})
            print(f"{kind:<16}{f['pairs']:>7}{a.get('keypoint_ece', 0):>9}{a.get('keypoint_floor_p90', 0):>9}"
                  f"{a.get('pose_ece', 0):>10}{a.get('pose_floor_p90', 0):>9}{a.get('mean_pose_quality', 0):>8}"
                  f"{a.get('mean_oks', 0):>9}   {d.get('pose_ece')} / {d.get('pose_floor_p90')}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
