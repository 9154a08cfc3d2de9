"""Fit `id_confidence` (posecal/tracking/identity.py) on tracking worlds with known truth and judge it on others.

    python tools/fit_id_confidence.py [--tuning vtest vtest_half vtest_blur vtest_crowd]
        [--held-out intel intel_mirrored intel_jpeg intel_pan] [--scenes 2] [--frames 75] [--threads 2]
        [--work runs/track_worlds] [--out posecal/weights/id_confidence.json]

Each scene of the world kinds (bench/lab/video_worlds.py) is tracked by `posecal track`'s defaults through
PoseTracker (the same ids), keeping for every record its id's features (Tracker.evidence); records are paired to
the truth's people by box IoU (video_pairs), a box over two people to the one its id is on next, and a record
whose id continues is labelled by whether its truth person is the one of the id's last paired record (same
person: 1; the id passed to someone else: 0), across records that frame nobody (labelled). A logistic
with the features' known signs (calibration/maps.py: fit_logistic) is fitted on the tuning kinds only (vtest's
room) and judged on the held-out kinds (another room, other people), which choose nothing: ECE beside the floor a
calibrated predictor shows on as many records (binary_ece_floor), and how well id_confidence and the pose quality
alone rank the records where the id passed (AUROC). Tracked rows are kept per model file, kind, scene and the
tracker's code in WORK/id_confidence/, so a refit tracks nothing twice.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))   # track_ids, as bench/lab/video_worlds.py has it
from bench.lab.video_worlds import kind_scenes, parse_kind, video_pairs  # noqa: E402
from posecal.calibration.maps import fit_logistic  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402
from posecal.metrics.boxes import inside_share  # noqa: E402
from posecal.metrics.calibration import auroc, binary_ece_floor, ece  # noqa: E402
from posecal.tracking import identity, tracker as tracker_module  # noqa: E402
from posecal.tracking.identity import (FEATURES, ID_CONFIDENCE_FILE, SIGNS, IdConfidence,  # noqa: E402
                                       save_id_confidence)

TUNING = ["vtest", "vtest_half", "vtest_blur", "vtest_crowd"]
HELD_OUT = ["intel", "intel_mirrored", "intel_jpeg", "intel_pan"]
L2 = 1e-3
MIN_VISIBLE = 0.25   # as video_pairs: people less seen are nobody's
HOLDS = 0.5          # a record over two people is the next one's where it holds this share of their box


def code_tag(model: str) -> str:
    """What the rows depend on: the model file and the code that tracks and describes ids."""
    from posecal.models.checkpoint import model_file

    digest = hashlib.sha256(model_file(model).read_bytes())
    for module in (identity, tracker_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def tracked_rows(model: str, kind: str, name: str, video: Path, work: Path, threads: int | None) -> list[dict]:
    """Every tracked record of one scene: frame, box, track id, pose quality and source, and its id's features
    (None where the id was born); kept in work/id_confidence/."""
    path = work / "id_confidence" / f"{code_tag(model)}_{kind}_{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from posecal.tracking.pose_tracker import PoseTracker

    t0 = time.time()
    tracker = PoseTracker(model=model, threads=threads, progress=False, id_confidence=None)
    rows = []
    for picture in tracker.track(str(video), stream=True):
        for p in picture.people:
            features = tracker.tracker.evidence.get(p.track_id)
            rows.append({"image_id": picture.frame_index, "bbox": np.asarray(p.box, float).tolist(),
                         "track_id": int(p.track_id), "pose_quality": float(p.pose_quality),
                         "pose_source": p.pose_source,
                         "features": None if features is None else np.asarray(features, float).tolist()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rows, path, indent=None)
    print(f"{kind}/{name}: tracked in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def labelled(rows: list[dict], truth: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (M, F), same person (M,) 0/1, pose quality (M,)) of the records that continue an id, where the
    record and an earlier record of its id are paired to a truth person: same is 1 when the record is on the
    truth person of the id's last paired record (what id_confidence claims). A record that frames nobody (a false
    box, a person under a quarter seen, a box over two people) says nothing itself, but the id's story runs on
    across it, so an id that passes to someone else behind such records is still a hand-off; a box over the
    person its id is on next is that person's (records_over_next_person)."""
    for k, r in enumerate(rows):
        r["row"] = k
    person = {r["row"]: int(a["track_id"]) for a, r in video_pairs(truth, rows)}
    person |= records_over_next_person(rows, truth, person)
    last: dict[int, int] = {}
    x, same, quality = [], [], []
    for r in sorted(rows, key=lambda r: (r["image_id"], r["track_id"])):
        who = person.get(r["row"])
        before = last.get(r["track_id"])
        if who is not None:
            last[r["track_id"]] = who
        if who is None or before is None or r["features"] is None:
            continue
        x.append(r["features"])
        same.append(float(who == before))
        quality.append(r["pose_quality"])
    return (np.array(x, float).reshape(-1, len(FEATURES)), np.array(same), np.array(quality))


def records_over_next_person(rows: list[dict], truth: dict, person: dict[int, int]) -> dict[int, int]:
    """Row -> truth person for the records paired to nobody whose box holds at least HOLDS of the box of the
    person their id is paired to next (a box over two people, as the by-eye truth of real clips gives it: the
    person the id follows on from it), so that an id handed over through such a box is a hand-off at that box."""
    seen = {(int(a["image_id"]), int(a["track_id"])): a["bbox"] for a in truth["annotations"]
            if a.get("visible_fraction", 1.0) >= MIN_VISIBLE}
    out: dict[int, int] = {}
    by_track: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["image_id"]):
        by_track.setdefault(r["track_id"], []).append(r)
    for records in by_track.values():
        following = None
        for r in reversed(records):
            if r["row"] in person:
                following = person[r["row"]]
                continue
            box = seen.get((int(r["image_id"]), following))
            if box is not None and inside_share(box, r["bbox"]) >= HOLDS:
                out[r["row"]] = following
    return out


def kind_rows(kinds: list[str], args) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """World kind -> its scenes' labelled rows, stacked."""
    out = {}
    for kind in kinds:
        parts = [labelled(tracked_rows(args.model, kind, name, video, args.work, args.threads),
                          json.loads(Path(truth).read_text()))
                 for name, video, truth in kind_scenes(args.work, kind, args.scenes, args.frames)]
        out[kind] = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
    return out


def judged(model: IdConfidence, x: np.ndarray, same: np.ndarray, quality: np.ndarray) -> dict:
    """ECE (floor mean and 90th percentile), AUROC at hand-overs of id_confidence and of the pose quality, counts."""
    p = model(x) if len(x) else np.zeros(0)
    passed = same == 0
    floor, floor90 = binary_ece_floor(p) if len(p) else (None, None)
    number = lambda v: None if v is None or v != v else round(float(v), 4)  # noqa: E731 - JSON has no NaN
    figures = {"records": int(len(same)), "handovers": int(passed.sum()), "ece": ece(p, same) if len(p) else None,
               "ece_floor": floor, "ece_floor_p90": floor90, "mean_confidence": float(p.mean()) if len(p) else None,
               "same_rate": float(same.mean()) if len(same) else None,
               "auroc_id_confidence": auroc(-p, passed), "auroc_pose_quality": auroc(-quality, passed)}
    return {k: number(v) if isinstance(v, float) else v for k, v in figures.items()}


def table(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"{'world':16} {'records':>8} {'hand-overs':>10} {'ECE':>7} {'floor':>7} {'p90':>7} {'AUROC id':>9} "
          f"{'AUROC Q':>8}")
    for kind, j in rows.items():
        fmt = lambda v, f: "-" if v is None or v != v else format(v, f)  # noqa: E731
        print(f"{kind:16} {j['records']:8d} {j['handovers']:10d} {fmt(j['ece'], '7.4f')} "
              f"{fmt(j['ece_floor'], '7.4f')} {fmt(j['ece_floor_p90'], '7.4f')} "
              f"{fmt(j['auroc_id_confidence'], '9.3f')} {fmt(j['auroc_pose_quality'], '8.3f')}")


def pooled(rows: dict, kinds: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate([rows[k][i] for k in kinds]) for i in range(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tuning", nargs="+", default=TUNING, help="world kinds the map is fitted on")
    ap.add_argument("--held-out", nargs="+", default=HELD_OUT, help="world kinds it is judged on (choose nothing)")
    ap.add_argument("--scenes", type=int, default=2, help="scenes per world kind")
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--model", default="accurate", help="as posecal track's --model (its default)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "track_worlds")
    ap.add_argument("--out", type=Path, default=ID_CONFIDENCE_FILE, help="the fitted map (JSON)")
    ap.add_argument("--judge-only", action="store_true", help="fit nothing: judge the map at --out as it is")
    args = ap.parse_args()
    for kind in args.tuning + args.held_out:
        parse_kind(kind)
    if {parse_kind(k)[0] for k in args.tuning} & {parse_kind(k)[0] for k in args.held_out}:
        raise SystemExit("a held-out kind shares its scenes with a tuning kind: choose kinds of other scenes")
    rows = kind_rows(args.tuning + args.held_out, args)
    x, same, quality = pooled(rows, args.tuning)
    if args.judge_only:
        model = identity.load_id_confidence(args.out)
        if model is None:
            raise SystemExit(f"{args.out}: no such file")
    else:
        if not len(same) or same.min() == 1:
            raise SystemExit("the tuning worlds hold no record whose id passed to someone else: nothing to fit")
        model = IdConfidence(fit_logistic(x, same, SIGNS, l2=L2), {})
    judgement = {kind: judged(model, *rows[kind]) for kind in args.tuning + args.held_out}
    judgement["tuning, pooled"] = judged(model, x, same, quality)
    judgement["held-out, pooled"] = judged(model, *pooled(rows, args.held_out))
    table("tuning kinds (fitted on)", {k: judgement[k] for k in args.tuning + ["tuning, pooled"]})
    table("held-out kinds (chose nothing)", {k: judgement[k] for k in args.held_out + ["held-out, pooled"]})
    print("\nweights (per standard deviation): " + ", ".join(f"{f} {w:+.2f}" for f, w in
                                                           zip(FEATURES, model.score.weights)))
    if not args.judge_only:
        model.fit_info = {"command": " ".join(["python", "tools/fit_id_confidence.py"] + sys.argv[1:]),
                          "model": args.model, "tuning": args.tuning, "held_out": args.held_out,
                          "scenes_per_kind": args.scenes, "frames": args.frames, "l2": L2, "judged": judgement}
        save_id_confidence(model, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
