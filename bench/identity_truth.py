"""Identity truth on real footage: a `posecal track` run scored against who is who, written down by eye.

    python bench/identity_truth.py RUN.json [--truth bench/results/identity_truth/vtest.json] [--match auto]
        [--json OUT.json]

RUN.json is what `posecal track VIDEO --out RUN.json` writes (COCO keypoint results with image_id = frame,
track_id, id_confidence, bbox). The truth file (bench/results/identity_truth/*.json, docs/tracking.md says how it
was made) names the clip's people and says, in the track ids of one recorded run, which person each track's
records are on over which frames (`segments`; person null: a record on nobody), with a few (frame, box) samples
per segment copied from that run's records.

Each record gets its true person: on the truth's own run (`--match segments`) from the segment that holds its
track and frame; on any other run (`--match boxes`) by box IoU >= 0.5 (one to one per frame, bench/lab/
video_worlds.py's video_pairs) with the people's boxes, interpolated within each segment between its samples.
`auto` picks segments when every sample is one of the run's records (same track, same box).

Scores, over the records that have a person (records on nobody or unmatched are counted, not scored):
* identity: IDF1 = IDTP / (IDTP + 0.5 (IDFP + IDFN)), track ids matched one to one to people over all frames
  (motmetrics' global assignment: IDTP the records whose track is matched to their person, IDFP the other
  records, IDFN the person-frames not covered by their matched track); a frame counts a person only where some
  record is on them, so missed people do not enter it (the truth has no boxes of its own).
* id_confidence, against "the same person as the track's previous record" (as tools/fit_id_confidence.py
  labels the composited worlds; a pair where either record has no person is left out): its value at each
  hand-off (the id passed to another person), the share of right continuations rated under 0.5, and the ECE
  beside its floor (what a calibrated predictor shows on as many records, binary_ece_floor).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # bench.lab: the benches' shared code
from bench.lab.mot import _motmetrics  # noqa: E402
from bench.lab.video_worlds import video_pairs  # noqa: E402
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402
from posecal.metrics.boxes import box_iou  # noqa: E402
from posecal.metrics.calibration import binary_ece_floor, ece  # noqa: E402

VTEST_TRUTH = ROOT / "bench" / "results" / "identity_truth" / "vtest.json"
NOBODY = ""          # a record the truth puts on nobody (None: a record the truth says nothing about)


def load_truth(path) -> dict:
    """The truth file, checked: its hand-offs and switches are the ones its segments imply (so the two cannot
    disagree), no track is on two people at once."""
    path = Path(path)
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PosecalInputError(f"{path}: not a readable truth file ({e})") from e
    for key in ("people", "segments"):
        if key not in truth:
            raise PosecalInputError(f"{path}: no '{key}'")
    _check_segments(path, truth)
    for key, implied in (("handoffs", handoffs_in(truth)), ("switches", switches_in(truth))):
        if key in truth and _sorted(truth[key]) != _sorted(implied):
            raise PosecalInputError(f"{path}: '{key}' lists {truth[key]} but its segments imply {implied}")
    return truth


def _sorted(events: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted(e.items())) for e in events)


def _check_segments(path: Path, truth: dict) -> None:
    spans = defaultdict(list)
    for s in truth["segments"]:
        a, b = s["frames"]
        if s["person"] is not None and s["person"] not in truth["people"]:
            raise PosecalInputError(f"{path}: segment of track {s['track_id']} names unknown person {s['person']}")
        for c, d in spans[s["track_id"]]:
            if a <= d and c <= b:
                raise PosecalInputError(f"{path}: track {s['track_id']} has overlapping segments {[c, d]} and "
                                        f"{[a, b]}")
        spans[s["track_id"]].append((a, b))


def _people_segments(truth: dict) -> list[dict]:
    return sorted((s for s in truth["segments"] if s["person"] is not None), key=lambda s: s["frames"][0])


def changes_in(truth: dict, holder: str, held: str) -> list[tuple[dict, object]]:
    """(segment, the earlier value) wherever what a `holder` holds changes from one segment to its next with a
    person, in frame order: the person a track id is on (holder track_id, held person), or the id a person
    has (holder person, held track_id). Records on nobody in between do not break the chain."""
    last, out = {}, []
    for s in _people_segments(truth):
        before = last.get(s[holder])
        if before is not None and before != s[held]:
            out.append((s, before))
        last[s[holder]] = s[held]
    return out


def handoffs_in(truth: dict) -> list[dict]:
    """Where a track id moves from one person to another: the first frame of the segment on the new person."""
    return [{"track_id": s["track_id"], "frame": s["frames"][0], "from": before, "to": s["person"]}
            for s, before in changes_in(truth, "track_id", "person")]


def switches_in(truth: dict) -> list[dict]:
    """Where a person's id changes: the first frame of the segment with the new id."""
    return [{"person": s["person"], "frame": s["frames"][0], "from": before, "to": s["track_id"]}
            for s, before in changes_in(truth, "person", "track_id")]


def persons_by_segments(records: list[dict], truth: dict) -> list[str | None]:
    """Each record's person on the truth's own run: the segment holding its track and frame says (NOBODY where
    the segment's person is null, None where no segment holds it)."""
    spans = defaultdict(list)
    for s in truth["segments"]:
        spans[s["track_id"]].append((s["frames"][0], s["frames"][1], NOBODY if s["person"] is None else s["person"]))
    out = []
    for r in records:
        f = int(r["image_id"])
        out.append(next((p for a, b, p in spans.get(int(r["track_id"]), []) if a <= f <= b), None))
    return out


def truth_boxes(truth: dict) -> list[dict]:
    """The people's boxes frame by frame, as a truth of annotations {image_id, track_id: person, bbox}: each
    segment's samples, linearly interpolated between them (people walk smoothly over a few frames)."""
    out = []
    for s in _people_segments(truth):
        frames = np.array([f for f, _ in s["samples"]], float)
        boxes = np.array([b for _, b in s["samples"]], float)
        for f in range(int(frames[0]), int(frames[-1]) + 1):
            box = [float(np.interp(f, frames, boxes[:, k])) for k in range(4)]
            out.append({"image_id": f, "track_id": s["person"], "bbox": box})
    return out


def persons_by_boxes(records: list[dict], truth: dict) -> list[str | None]:
    """Each record's person on any run: paired one to one per frame with the people's boxes (IoU >= 0.5); None
    where it pairs with nobody."""
    for k, r in enumerate(records):
        r["_row"] = k
    person = {r["_row"]: a["track_id"] for a, r in video_pairs({"annotations": truth_boxes(truth)}, records)}
    return [person.get(k) for k in range(len(records))]


def is_truths_run(records: list[dict], truth: dict) -> bool:
    """Whether these records are the run the truth was written on: every sample is a record of the same track
    and frame with the same box (IoU > 0.99)."""
    box = {(int(r["track_id"]), int(r["image_id"])): r["bbox"] for r in records}
    for s in truth["segments"]:
        for f, sample in s["samples"]:
            mine = box.get((s["track_id"], f))
            if mine is None or box_iou([sample], [mine])[0, 0] <= 0.99:
                return False
    return True


def identity_scores(records: list[dict], persons: list[str | None]) -> dict:
    """IDF1, IDTP, IDFP, IDFN (one-to-one matching of track ids to people over all frames, motmetrics) and
    motmetrics' frame-to-frame switches, over the records that have a person."""
    mm = _motmetrics()
    number = {p: k for k, p in enumerate(sorted({p for p in persons if p}))}   # motmetrics' ids are numbers
    by_frame = defaultdict(list)
    for r, p in zip(records, persons):
        if p:
            by_frame[int(r["image_id"])].append((number[p], int(r["track_id"])))
    acc = mm.MOTAccumulator(auto_id=False)
    for f in sorted(by_frame):
        people = sorted({p for p, _ in by_frame[f]})
        tracks = sorted({t for _, t in by_frame[f]})
        dist = np.full((len(people), len(tracks)), np.nan)
        for p, t in by_frame[f]:
            dist[people.index(p), tracks.index(t)] = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc.update(people, tracks, dist, frameid=f)
    if not by_frame:
        return {"idf1": None, "idtp": 0, "idfp": 0, "idfn": 0, "switches": 0}
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "idtp", "idfp", "idfn", "num_switches"])
    row = summary.iloc[0]
    return {"idf1": float(row["idf1"]), "idtp": int(row["idtp"]), "idfp": int(row["idfp"]),
            "idfn": int(row["idfn"]), "switches": int(row["num_switches"])}


def rated_continuations(records: list[dict], persons: list[str | None]) -> list[dict]:
    """Every record that continues an id (id_confidence not null): frame, track, id_confidence, the track's
    previous record's frame and person, its own, and `same`: whether the two are one person, None (left out of
    the scores) where either has no person."""
    order = sorted(range(len(records)), key=lambda k: (int(records[k]["image_id"]), int(records[k]["track_id"])))
    last: dict[int, tuple[int, str | None]] = {}
    out = []
    for k in order:
        r, who = records[k], persons[k]
        track, frame = int(r["track_id"]), int(r["image_id"])
        before = last.get(track)
        last[track] = (frame, who)
        if r.get("id_confidence") is None or before is None:
            continue
        known = bool(who) and bool(before[1])
        out.append({"frame": frame, "track_id": track, "id_confidence": float(r["id_confidence"]),
                    "previous_frame": before[0], "from": before[1], "to": who,
                    "same": who == before[1] if known else None})
    return out


def confidence_scores(continuing: list[dict]) -> dict:
    """id_confidence against the truth: its value at each hand-off, the right continuations rated under 0.5, ECE
    with its floor (mean, 90th percentile); and every record rated under 0.5, scored or left out."""
    rated = [r for r in continuing if r["same"] is not None]
    p = np.array([r["id_confidence"] for r in rated], float)
    same = np.array([r["same"] for r in rated], bool)
    right = [r for r in rated if r["same"]]
    low = [r for r in right if r["id_confidence"] < 0.5]
    floor, floor90 = binary_ece_floor(p) if len(p) else (None, None)
    return {"rated": len(rated), "handoffs": [r for r in rated if not r["same"]],
            "right_continuations": len(right), "right_below_half": len(low),
            "right_below_half_share": len(low) / len(right) if right else None,
            "below_half": [r for r in continuing if r["id_confidence"] < 0.5],
            "ece": ece(p, same) if len(p) else None, "ece_floor": floor, "ece_floor_p90": floor90}


def score(records: list[dict], truth: dict, match: str = "auto") -> dict:
    """Everything the table shows, for one run against one truth."""
    if match == "auto":
        match = "segments" if is_truths_run(records, truth) else "boxes"
    persons = (persons_by_segments if match == "segments" else persons_by_boxes)(records, truth)
    counts = {"records": len(records), "on_a_person": sum(1 for p in persons if p),
              "on_nobody": sum(1 for p in persons if p == NOBODY), "unlabelled": sum(1 for p in persons if p is None)}
    return {"match": match, **counts, **identity_scores(records, persons),
            **confidence_scores(rated_continuations(records, persons))}


def load_run(path) -> list[dict]:
    """A `posecal track --out X.json` file: its tracked records."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PosecalInputError(f"{path}: not a readable track results file ({e})") from e
    if not isinstance(records, list) or any("track_id" not in r or "bbox" not in r for r in records):
        raise PosecalInputError(f"{path}: not `posecal track --out X.json` results (a list of records with "
                                f"track_id and bbox)")
    return records


def print_table(name: str, s: dict) -> None:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"{name} (people by {s['match']}): {s['records']} records, {s['on_a_person']} on a person, "
          f"{s['on_nobody']} on nobody, {s['unlabelled']} unlabelled")
    print(f"{'IDF1':>7} {'IDTP':>6} {'IDFP':>6} {'IDFN':>6} {'switches':>8} | {'rated':>6} {'hand-offs':>9} "
          f"{'right <0.5':>10} {'ECE':>7} {'floor':>7} {'p90':>7}")
    print(f"{fmt(s['idf1'], '7.3f')} {s['idtp']:6d} {s['idfp']:6d} {s['idfn']:6d} {s['switches']:8d} | "
          f"{s['rated']:6d} {len(s['handoffs']):9d} {s['right_below_half']:4d} of {s['right_continuations']:<4d} "
          f"{fmt(s['ece'], '7.4f')} {fmt(s['ece_floor'], '7.4f')} {fmt(s['ece_floor_p90'], '7.4f')}")
    for h in s["handoffs"]:
        print(f"  hand-off: id {h['track_id']} at frame {h['frame']}, {h['from']} -> {h['to']}: "
              f"id_confidence {h['id_confidence']:.3f}")
    for r in s["below_half"]:
        gap = r["frame"] - r["previous_frame"]
        verdict = {True: "right continuation", False: "hand-off", None: "left out (a record without a person)"}
        print(f"  under 0.5: id {r['track_id']} at frame {r['frame']} ({r['from'] or 'nobody'} -> "
              f"{r['to'] or 'nobody'}{f', after {gap - 1} frames without a record' if gap > 1 else ''}): "
              f"{r['id_confidence']:.3f}, {verdict[r['same']]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="posecal track --out X.json results")
    ap.add_argument("--truth", default=str(VTEST_TRUTH))
    ap.add_argument("--match", choices=["auto", "segments", "boxes"], default="auto")
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args()
    try:
        truth, records = load_truth(args.truth), load_run(args.run)
    except PosecalInputError as e:
        sys.exit(f"identity_truth: {e}")
    s = score(records, truth, args.match)
    print_table(f"{Path(args.run).name} against {Path(args.truth).name}", s)
    if args.json:
        write_json_atomic(s, args.json)


if __name__ == "__main__":
    main()
