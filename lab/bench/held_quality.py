"""What a held pose should keep of its last pose's quality (tracking.tracker.HELD_QUALITY), chosen on tuning scenes
and judged on others (python lab/bench/held_quality.py [--factors 0.5 0.6 0.7 0.8 0.9 1.0]).

`posecal track` reports a person hidden behind another (`pose_source` `held`) at their last pose moved by their
velocity, every quality x HELD_QUALITY. This bench takes the held poses of the video worlds of
bench/trust_conditions.py (its records in --work, tracked when missing: `accurate`, no video map), rescales their
keypoint and pose quality to each factor (the records hold HELD_QUALITY x the last pose's; smoothing's small
discount is left as it is) and prints keypoint and pose ECE beside their floors (p90; intervals by track) on:
- tune:  vtest's room, scenes 0-8 (what HELD_QUALITY was chosen on, by keypoint ECE);
- judge: vtest's room, scenes 9-14, and another room as it is and mirrored (held-out scenes 0-5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.lab.video_worlds import model_without_video_map, tracked_pairs, world_scenes  # noqa: E402
from posecal.calibration.quality import truth_of  # noqa: E402
from bench.lab.condition_judging import ece_against_floor  # noqa: E402
from posecal.tracking.tracker import HELD_QUALITY  # noqa: E402

TUNING, JUDGED, OTHER_ROOM = range(9), range(9, 15), range(6)


def held_arrays(pairs: list[tuple[dict, dict]]) -> dict[str, np.ndarray]:
    """The held poses among (truth, record) pairs: reported keypoint and pose quality, true OPKS and OKS, and their
    tracks (the floors' intervals are drawn by track)."""
    held = [(a, r) for a, r in pairs if r.get("pose_source") == "held"]
    gt = np.array([np.reshape(a["keypoints"], (17, 3)) for a, _ in held], np.float64).reshape(-1, 17, 3)
    xy = np.array([np.reshape(r["keypoints"], (17, 3))[:, :2] for _, r in held], np.float64).reshape(-1, 17, 2)
    ks, labelled, oks = truth_of(xy, gt, np.array([a["area"] for a, _ in held], np.float64))
    tracks = np.array([r.get("track_id", 0) for _, r in held])
    return {"q": np.array([r["keypoint_quality"] for _, r in held], np.float64).reshape(-1, 17),
            "pq": np.array([r["pose_quality"] for _, r in held], np.float64), "ks": ks, "labelled": labelled,
            "oks": oks, "tracks": tracks}


def figures(h: dict[str, np.ndarray], factor: float) -> dict[str, dict]:
    s = factor / HELD_QUALITY
    lab, has = h["labelled"], np.isfinite(h["oks"])
    key_tracks = np.broadcast_to(h["tracks"][:, None], lab.shape)[lab]
    return {"keypoint": ece_against_floor(np.clip(h["q"][lab] * s, 0, 1), h["ks"][lab], key_tracks),
            "pose": ece_against_floor(np.clip(h["pq"][has] * s, 0, 1), h["oks"][has], h["tracks"][has])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "conditions"), help="bench/trust_conditions.py's work")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    worlds = world_scenes(work, list(TUNING) + list(JUDGED), list(OTHER_ROOM), args.frames)
    model = model_without_video_map("accurate", work)
    # per vtest scene (records are kept per world kind and scene, so tuning and judged scenes stay kind "vtest")
    vtest = {name: tracked_pairs(model, {"vtest": [scene]}, work, args.threads)["vtest"]
             for scene in worlds["vtest"] for name in [scene[0]]}
    other = tracked_pairs(model, {k: worlds[k] for k in ("intel", "intel_mirrored")}, work, args.threads)
    sets = {"tune: scenes 0-8": [p for i in TUNING for p in vtest[f"scene{i}"]],
            "judge: scenes 9-14": [p for i in JUDGED for p in vtest[f"scene{i}"]],
            "judge: another room": other["intel"] + other["intel_mirrored"]}
    held = {label: held_arrays(p) for label, p in sets.items()}
    print(f"held poses' keypoint / pose ECE (floor p90) by the share of the last pose's quality they keep "
          f"(shipped {HELD_QUALITY})")
    heads = [f"{label} ({len(h['pq'])} poses)" for label, h in held.items()]
    print(f"{'factor':>7} " + " ".join(f"{head:>44}" for head in heads))
    for factor in args.factors:
        cells = []
        for h in held.values():
            f = figures(h, factor)
            cells.append(f"{f['keypoint']['ece']:.3f} ({f['keypoint']['floor_p90']:.3f}) / "
                         f"{f['pose']['ece']:.3f} ({f['pose']['floor_p90']:.3f})")
        print(f"{factor:>7.2f} " + " ".join(f"{c:>44}" for c in cells))


if __name__ == "__main__":
    main()
