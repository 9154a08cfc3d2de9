"""Tracking judged over many kinds of world, with the spread, and one person-policy knob chosen leave one world out
(issue 52, item 4).

Worlds (bench/lab/video_worlds.py, all synthetic scenes of real val people with exact truth, each kind
deterministic by its seeds): vtest's room (the tuning scenes), intel's room as it is and mirrored (held-out
scenes), downscaled by 2 (`_half`), MJPG quality 20 (`_jpeg`), motion-blurred (`_blur`), a moving camera
(`intel_pan`: a window panning and zooming over the room) and crowds of 8-10 (`vtest_crowd`). Each scene runs
through `posecal.tracking.units.run_track` with its defaults (`posecal track`'s: the accurate model, the VIDEO
person policy, the default verifier) and is scored by bench/lab/mot.py (IoU >= 0.5, people under 25 % visible
not counted; the person standing in vtest's room is an ignored box). One row per world kind: IDF1, MOTA,
person-frames missed, identity switches per 100 frames, track ids per person, false positives; then the mean,
min and max over the kinds.

Then the knob (--knob, a PersonPolicy field; default the VIDEO preset's detector_floor, which decides whether
the detector's unsure boxes are judged at all) over --values: every value tracks every scene; for each world kind
left out, the value with the best mean IDF1 on the other kinds (never a kind sharing its scenes: bench/lab/
world_choice.py) against the shipped value on the kind left out.

Tracked records are kept per (model, world kind, scene, frames, policy) in --work, so a rerun only scores.

Usage: python bench/track_worlds.py [--kinds vtest intel ...] [--scenes 2] [--frames 75] [--knob detector_floor]
       [--values 0.15 0.2 0.3] [--work runs/track_worlds] [--json bench/results/track_worlds.json] [--model accurate]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # track_ids, as bench/lab/video_worlds.py has it
from bench.lab.mot import accumulate, summarize  # noqa: E402
from bench.lab.video_worlds import kind_scenes, parse_kind, scaled_boxes, tracked_records  # noqa: E402
from bench.lab.world_choice import leave_one_world_out, spread  # noqa: E402
from track_ids import BACKGROUND_PEOPLE, with_background_people  # noqa: E402
from posecal.inference.person_policy import VIDEO  # noqa: E402
from posecal.tracking.tracker import TrackerConfig  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["vtest", "vtest_half", "vtest_blur", "vtest_crowd", "intel", "intel_mirrored", "intel_jpeg", "intel_pan"]
MEASURES = [("idf1", "IDF1", "{:.3f}"), ("mota", "MOTA", "{:.3f}"), ("missed_pct", "missed %", "{:.1f}"),
            ("switches_per_100_frames", "IDSW/100f", "{:.2f}"), ("ids_per_person", "ids/people", "{:.2f}"),
            ("false_positives", "FP", "{:.0f}")]


def world_row(kind: str, scenes: list, records: list[list[dict]]) -> dict:
    """One world kind's measures over its scenes (motmetrics' OVERALL of their accumulators)."""
    ignored = scaled_boxes(kind, BACKGROUND_PEOPLE) if parse_kind(kind)[0] in ("vtest", "vtest_crowd") else ()
    scores = [accumulate(name, with_background_people(json.loads(Path(truth).read_text()), ignored), results)
              for (name, _, truth), results in zip(scenes, records)]
    o = summarize(scores)["OVERALL"]
    return {"idf1": o["idf1"], "mota": o["mota"], "missed_pct": 100 * o["num_misses"] / max(o["num_objects"], 1),
            "switches_per_100_frames": o["switches_per_100_frames"],
            "ids_per_person": o["predicted_tracks"] / max(o["num_unique_objects"], 1),
            "false_positives": o["num_false_positives"], "ids": o["predicted_tracks"],
            "people": o["num_unique_objects"], "switches": o["num_switches"], "frames": o["num_frames"],
            "behind": o["occlusions"], "behind_kept": o["occlusions_kept"]}


def print_table(rows: dict[str, dict]) -> dict[str, dict]:
    """Prints one line per kind and the mean, min and max lines; returns the spread per measure."""
    spreads = {key: spread([r[key] for r in rows.values()]) for key, _, _ in MEASURES}
    print(f"{'world':16} " + " ".join(f"{title:>10}" for _, title, _ in MEASURES) + f" {'ids':>5} {'people':>6}"
          f" {'behind, id kept':>15}")
    for kind, r in rows.items():
        print(f"{kind:16} " + " ".join(f"{fmt.format(r[key]):>10}" for key, _, fmt in MEASURES)
              + f" {r['ids']:5.0f} {r['people']:6.0f} {r['behind_kept']:7d} of {r['behind']:<4d}")
    kept, behind = sum(r["behind_kept"] for r in rows.values()), sum(r["behind"] for r in rows.values())
    print(f"a person behind another for up to a second kept their id {kept} of {behind} times "
          f"({100 * kept / max(behind, 1):.0f} %)")
    for stat in ("mean", "min", "max"):
        print(f"{stat:16} " + " ".join(f"{fmt.format(spreads[key][stat]):>10}" for key, _, fmt in MEASURES))
    return spreads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=KINDS, help="world kinds (bench/lab/video_worlds.py)")
    ap.add_argument("--scenes", type=int, default=2, help="scenes per world kind")
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--knob", default="detector_floor", help="the PersonPolicy field judged leave one world out, or "
                    "tracker.FIELD: a TrackerConfig field")
    ap.add_argument("--values", nargs="+", default=["0.15", "0.2", "0.3"], help="its candidates (the shipped "
                    "value is added when missing)")
    ap.add_argument("--model", default="accurate", help="as posecal track's --model (its default)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "track_worlds")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "track_worlds.json")
    args = ap.parse_args()
    for kind in args.kinds:
        parse_kind(kind)
    field = args.knob.removeprefix("tracker.")
    owner = TrackerConfig() if args.knob.startswith("tracker.") else VIDEO
    shipped = getattr(owner, field)
    # candidates are numbers, true/false (a switch), or "none" for off (a knob that may be None); off sorts first
    number = type(shipped) if shipped is not None else float
    cast = lambda v: (None if v.lower() == "none" else v.lower() in ("true", "1") if number is bool  # noqa: E731
                      else number(v))
    values = sorted({cast(v) for v in args.values} | {shipped}, key=lambda v: (v is not None, v or 0))
    t0 = time.time()
    worlds = {kind: kind_scenes(args.work, kind, args.scenes, args.frames) for kind in args.kinds}
    print(f"{len(worlds)} world kinds x {args.scenes} scenes x {args.frames} frames written in "
          f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    tables = {}
    for value in [shipped] + [v for v in values if v != shipped]:   # the shipped defaults' table first
        changed = dataclasses.replace(owner, **{field: value})
        policy, tracker = (VIDEO, changed) if owner is not VIDEO else (changed, None)
        tables[value] = {kind: world_row(kind, scenes, [
            tracked_records(args.model, kind, name, video, truth, args.work, policy, args.threads, tracker=tracker)
            for name, video, truth in scenes]) for kind, scenes in worlds.items()}
        if value == shipped:
            print(f"posecal track defaults (model {args.model}, VIDEO policy), {args.scenes} scenes x {args.frames} "
                  f"frames per world kind:")
            spreads = print_table(tables[value])
    idf1 = {v: {kind: row["idf1"] for kind, row in tables[v].items()} for v in values}
    print(f"\n{args.knob} (shipped {shipped}): IDF1 per world kind")
    print(f"{'world':16} " + " ".join(f"{str(v):>8}" for v in values))
    for kind in args.kinds:
        print(f"{kind:16} " + " ".join(f"{idf1[v][kind]:8.3f}" for v in values))
    for stat in ("mean", "min", "max"):
        print(f"{stat:16} " + " ".join(f"{spread(list(idf1[v].values()))[stat]:8.3f}" for v in values))
    judged = leave_one_world_out(idf1, shipped, group_of=lambda kind: parse_kind(kind)[0])
    print(f"\nleave one world out ({args.knob} chosen by mean IDF1 on the kinds not sharing the left-out kind's "
          f"scenes):")
    print(f"{'left out':16} {'chosen':>8} {'IDF1':>7} {'shipped':>8} {'gain':>7}")
    for kind, j in judged.items():
        print(f"{kind:16} {str(j['chosen']):>8} {j['score']:7.3f} {j['default_score']:8.3f} {j['gain']:+7.3f}")
    gains = [j["gain"] for j in judged.values()]
    print(f"{'mean':16} {'':>8} {spread([j['score'] for j in judged.values()])['mean']:7.3f} "
          f"{spread([j['default_score'] for j in judged.values()])['mean']:8.3f} {spread(gains)['mean']:+7.3f}")
    print(f"{time.time() - t0:.0f} s in all", file=sys.stderr)
    report = {"command": " ".join(["python", "bench/track_worlds.py"] + sys.argv[1:]), "model": args.model,
              "scenes_per_kind": args.scenes, "frames": args.frames, "kinds": args.kinds,
              "defaults": {"worlds": tables[shipped], "spread": spreads},
              "knob": {"name": args.knob, "shipped": shipped, "values": values,
                       "worlds": {str(v): tables[v] for v in values},
                       "leave_one_world_out": judged}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, args.json)


if __name__ == "__main__":
    main()
