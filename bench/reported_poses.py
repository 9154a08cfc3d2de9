"""Trust on the poses posecal reports, end to end: `run` is `posecal eval --detector` on a world written as a COCO
keypoint file (predict/scored.py: the product as `predict` runs it, its shipped detector, verifier, person policy
and flip test, on whole pictures; its results.json, metrics.json and report.html in the folder beside --rows), every
reported pose scored by its OKS against the labelled person it covers, one to one in order of pose quality
(posecal/metrics/reported.py), as eval's `one_to_one` scores them.

    python bench/reported_poses.py run --world val --rows runs/reported/val.pkl [--limit N] [--threads 1]
        [--precision float]
    python bench/reported_poses.py run --world lspet --rows runs/reported/lspet.pkl
    python bench/reported_poses.py report runs/reported/val.pkl runs/reported/lspet.pkl [--json FILE]
        [--quality raw|reported]
    python bench/reported_poses.py pairs [CLIP] [--every 10]      # one person posed twice in a clip

Worlds:
- `val`: the 822 COCO val crops seen whole, each with every labelled person of its photograph mapped into it
  (posecal.data.neighbours: people cut by the crop's edge are scored on all their joints, outside ones included);
- `val_turned`: the val crops turned half a turn (people upside down; with `--orientations auto`);
- `train`: the train crops alike (the pose networks trained on them: rows to fit on, not to judge);
- `lspet`: LSPET's last 600 photos (never trained on: bench/lspet_ap.py), one labelled athlete a photo (12 limb
  joints): only the poses that cover the athlete are scored.

`report` also prints the share of pictures whose own person (the crop's, the athlete) is found with a right
pose (matched one to one at OKS >= 0.5). `run` writes one row per picture (what the product reported, read back
from eval's results.json, and the picture's size and truth) so that the report, and the fit of the reported-pose
quality (tools/fit_reported_quality.py), can be redone without posing again. `report` prints, per world: Q's ECE
beside its floor (truth redrawn around Q with the spread of its bin), Pearson r, the share wrong (OKS < 0.5) among
Q >= 0.7, and the counts of duplicates (one person posed twice), merges, people cut by the picture's edge and half
poses, each with the ECE without them (their share of it); the ECE of the decomposition that counts only the
keypoints inside the picture and lets two poses share a person; the same figures against the labels or their
left-right mirror, whichever fits (a bound for crowd labels such as LSPET's: bench/results/lspet_sides.txt); and
the poses upside down (hips above the shoulders).
`--quality raw` reports the pose quality before the reported-pose map (the rows keep both).
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posecal.data.coco import as_coco_file, load_lspet  # noqa: E402
from posecal.data.neighbours import with_neighbours  # noqa: E402
from posecal.metrics.calibration import ece, ece_floor, pearson  # noqa: E402
from posecal.metrics.oks import oks_either_side  # noqa: E402
from posecal.metrics.reported import COVER_IOU as DEFAULT_COVER_IOU  # noqa: E402
from posecal.metrics.reported import DUPLICATE, MATCHED, ReportedScore, match_reported  # noqa: E402

SHARED = ROOT.parent / "shared/data"
COCO = SHARED / "coco-val2017-crops"
LSPET = SHARED / "lspet"
WRONG_BELOW = 0.5
CONFIDENT = 0.7
UPSIDE_DOWN = 0.3   # a pose's hips above its shoulders by this share of its torso: upside down (`report`)
SAME_SPOT_PX, SAME_SPOT_KEYPOINTS = 3.0, 4     # `pairs`: keypoints within this many pixels, at least this many


def world_file(world: str, limit: int | None, shard: tuple[int, int], folder: Path) -> tuple[Path, Path]:
    """The world as the COCO keypoint file `posecal eval --detector` poses and scores, and its images' folder:
    `val`/`train` the crops of a split (`shard` (i, n): every n-th from the i-th) each with every labelled person of
    its photograph (posecal.data.neighbours.with_neighbours: the crop's own person first); `val_turned` those crops
    turned half a turn, written into `folder`; `lspet` LSPET's last 600 photos, one athlete each."""
    if world == "lspet":
        records = load_lspet(LSPET / "annotations/lspet.json", LSPET / "images")[-600:][: limit or None]
        data = as_coco_file(records, {r.image_id: cv2.imread(r.image_path).shape[1::-1] for r in records})
        data["images"] = [im | {"photo": im["id"]} for im in data["images"]]
        image_dir = LSPET / "images"
    else:
        full = json.loads((COCO / f"annotations/{world.replace('_turned', '')}.json").read_text())
        keep = full["images"][shard[0]::shard[1]][: limit or None]
        ids, own = {im["id"] for im in keep}, {a["image_id"]: a for a in full["annotations"]}
        data = with_neighbours(full)   # a crop's neighbours come from every crop of its photograph, kept or not
        data["images"] = [im | {"photo": own[im["id"]]["orig_image_id"]} for im in keep]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
        image_dir = COCO / "images"
    if world.endswith("_turned"):
        image_dir = turned(data, image_dir, folder / "images")
    ann = folder / f"{world}.json"
    ann.write_text(json.dumps(data))
    return ann, image_dir


def turned(data: dict, image_dir: Path, out: Path) -> Path:
    """The pictures of `data` turned half a turn into `out`, their people with them (upside down): in place."""
    out.mkdir(parents=True, exist_ok=True)
    size = {}
    for im in data["images"]:
        bgr = cv2.imread(str(image_dir / im["file_name"]))
        cv2.imwrite(str(out / im["file_name"]), cv2.rotate(bgr, cv2.ROTATE_180))
        size[im["id"]] = bgr.shape[1], bgr.shape[0]
    for a in data["annotations"]:
        w, h = size[a["image_id"]]
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        lab = kp[:, 2] > 0
        kp[:, 0], kp[:, 1] = np.where(lab, w - 1 - kp[:, 0], 0), np.where(lab, h - 1 - kp[:, 1], 0)
        x, y, bw, bh = a["bbox"]
        a["keypoints"], a["bbox"] = kp.ravel().tolist(), [w - x - bw, h - y - bh, bw, bh]
    return out


def rows_of(world: str, data: dict, entries: list[dict]) -> list[dict]:
    """One row per picture of `data` (its annotation file), in its order: its truth (the own person first), and
    every pose `predict` reported on it (`entries`, results.json) as what the report and the map's fit read."""
    people, truth = defaultdict(list), defaultdict(list)
    for e in entries:
        people[e["image_id"]].append(e)
    for a in sorted(data["annotations"], key=lambda a: "neighbour_of" in a):   # the crop's own first
        truth[a["image_id"]].append(a)
    arr = lambda e, k: None if k not in e else np.asarray(e[k], np.float32)   # noqa: E731
    rows = []
    for im in data["images"]:
        t = truth[im["id"]]
        rows.append({"world": world, "name": im["file_name"], "photo": im["photo"], "size": (im["width"],
                     im["height"]), "truth": np.array([np.reshape(a["keypoints"], (-1, 3)) for a in t]),
                     "areas": np.array([a["area"] for a in t]), "person_boxes": np.array([a["bbox"] for a in t]),
                     "people": [{"box": arr(e, "bbox"), "keypoints": np.reshape(e["keypoints"], (-1, 3))[:, :2]
                                 .astype(np.float32), "quality": float(e["pose_quality"]),
                                 "raw_quality": float(e.get("crop_quality", e["pose_quality"])),
                                 "keypoint_quality": arr(e, "keypoint_quality"),
                                 "visibility_probs": arr(e, "visibility_probs"), "in_frame": arr(e, "in_frame"),
                                 "box_score": float(e["box_score"]), "person_probability": e.get("person_probability")}
                                for e in people[im["id"]]]})
    return rows


def run(args) -> None:
    """`posecal eval --detector` on the world (predict/scored.evaluate_predicted: the product as `predict` runs
    it), its outputs in the folder beside --rows, then its results as rows."""
    from posecal.predict.job import PredictConfig
    from posecal.predict.scored import evaluate_predicted

    t0, out = time.time(), Path(args.rows).with_suffix("")
    out.mkdir(parents=True, exist_ok=True)
    ann, images = world_file(args.world, args.limit, tuple(int(v) for v in args.shard.split("/")), out)
    cfg = PredictConfig(inputs=[], model=args.model, threads=args.threads, orientations=args.orientations,
                        precision=args.precision, progress=False)
    ev = evaluate_predicted(cfg, str(ann), str(images), str(out))
    rows = rows_of(args.world, json.loads(ann.read_text()), json.loads((out / "results.json").read_text()))
    tmp = Path(str(args.rows) + ".tmp")
    tmp.write_bytes(pickle.dumps({"model": args.model, "world": args.world, "rows": rows,
                                  "precision": ev.metrics.get("precision")}))
    tmp.replace(args.rows)
    e = ev.metrics.get("one_to_one", {})
    print(f"{args.world}: {len(rows)} pictures, {sum(len(r['people']) for r in rows)} poses, {time.time() - t0:.0f} s "
          f"-> {args.rows}; eval's one to one: ECE {e.get('ece')} (floor {e.get('ece_floor')}), found right "
          f"{e.get('found_right')} ({out}/metrics.json)")


# the box overlap that makes a pose cover a labelled person, per world: in LSPET only the athlete is labelled, so a
# pose on a bystander overlapping the athlete's box must overlap it as COCO's matching would to be scored
COVER_IOU = {"lspet": 0.5}


def score_row(row: dict, quality) -> ReportedScore:
    """One picture's reported poses scored one to one in the order of `quality` (P,)."""
    people = row["people"]
    return match_reported(np.stack([p["keypoints"] for p in people]), np.stack([p["box"] for p in people]),
                          quality, row["truth"], row["areas"], row["person_boxes"], row["size"],
                          COVER_IOU.get(row["world"], DEFAULT_COVER_IOU))


def scored(rows: list[dict], quality: str = "quality") -> dict:
    """Every reported pose of `rows` scored one to one: arrays of Q, target, the person matched, the failure flags
    and the row (picture) it is in."""
    cols = defaultdict(list)
    for n, r in enumerate(rows):
        people = r["people"]
        if not people:
            continue
        q = np.array([p[quality] for p in people])
        s = score_row(r, q)
        for i in range(len(people)):
            cols["q"].append(q[i])
            cols["either_side"].append(either_side(r, people[i], s, i))
            cols["upside_down"].append(upside_down(people[i]["keypoints"]))
            for k in ("kind", "person", "target", "shared", "inside", "merge", "half", "cut"):
                cols[k].append(getattr(s, k)[i])
            cols["photo"].append(r["photo"])
            cols["row"].append(n)
    return {k: np.array(v) for k, v in cols.items()}


def upside_down(keypoints) -> bool:
    """The pose's hips lie above its shoulders by more than UPSIDE_DOWN of the torso's length (a handstand, a flip):
    the people a pose network trained upright gets wrong most often."""
    xy = np.asarray(keypoints, np.float64)
    torso = (xy[11] + xy[12]) / 2 - (xy[5] + xy[6]) / 2        # mid-shoulders to mid-hips, y down
    return bool(-torso[1] > UPSIDE_DOWN * max(np.linalg.norm(torso), 1e-6))


def either_side(row: dict, person: dict, s: ReportedScore, i: int) -> float:
    """Pose i's one-to-one target, or where it matched a labelled person its OKS against that person's labels or
    their left-right mirror, whichever is higher (metrics.oks.oks_either_side): LSPET's crowd labels often give
    the viewer's sides (bench/results/lspet_sides.txt)."""
    if s.kind[i] != MATCHED:
        return float(s.target[i])
    truth = row["truth"][s.person[i]]
    area = row["areas"][s.person[i]]
    return float(np.ravel(oks_either_side(person["keypoints"], truth[:, :2], truth[:, 2], area))[0])


def calibration_line(q, t) -> dict:
    if len(q) < 2:
        return {"n": int(len(q))}
    floor, floor90 = ece_floor(q, t)
    conf = q >= CONFIDENT
    return {"n": int(len(q)), "ece": round(ece(q, t), 4), "floor": round(floor, 4), "floor_p90": round(floor90, 4),
            "pearson": round(pearson(q, t), 3), "mean_q": round(float(q.mean()), 3),
            "mean_oks": round(float(t.mean()), 3), "confident": int(conf.sum()),
            "confident_wrong_share": round(float((t[conf] < WRONG_BELOW).mean()), 4) if conf.any() else None}


def found_right(s: dict, pictures: int) -> float:
    """The share of the pictures whose own person (the crop's, LSPET's athlete: truth row 0) has a pose matched to
    them one to one at OKS >= 0.5 (`s`: scored()): found with a right pose."""
    hit = (s["kind"] == MATCHED) & (s["person"] == 0) & (s["target"].astype(float) >= WRONG_BELOW)
    return len(np.unique(s["row"][hit])) / max(pictures, 1)


def figures(rows: list[dict], quality: str = "quality") -> dict:
    s = scored(rows, quality)
    if not len(s.get("q", [])):
        return {"poses": 0}
    use = s["kind"] != "uncovered"
    q, t = s["q"][use], s["target"][use].astype(float)
    out = {"pictures": len(rows), "poses": int(len(s["q"])), "uncovered": int((~use).sum()),
           "found_right": round(found_right(s, len(rows)), 4), "one_to_one": calibration_line(q, t)}
    shared_inside = s["inside"][use].astype(float)
    ok = np.isfinite(shared_inside)
    out["inside_only_shared"] = calibration_line(q[ok], shared_inside[ok])
    out["either_side"] = calibration_line(q, s["either_side"][use].astype(float))
    down = s["upside_down"][use].astype(bool)
    out["upside_down"] = {"as_labelled": calibration_line(q[down], t[down]),
                          "either_side": calibration_line(q[down], s["either_side"][use][down].astype(float))}
    for name, flag in (("duplicates", s["kind"][use] == DUPLICATE), ("merges", s["merge"][use].astype(bool)),
                       ("cut", s["cut"][use].astype(bool)), ("half", s["half"][use].astype(bool))):
        rest = calibration_line(q[~flag], t[~flag])
        out[name] = {"n": int(flag.sum()), "mean_q": round(float(q[flag].mean()), 3) if flag.any() else None,
                     "mean_oks": round(float(t[flag].mean()), 3) if flag.any() else None,
                     "confident": int((flag & (q >= CONFIDENT)).sum()), "ece_without": rest.get("ece")}
    out["matched"] = int((s["kind"] == MATCHED).sum())
    out["absent_calls"] = absent_calls(rows, quality)
    return out


def absent_calls(rows: list[dict], quality: str = "quality") -> dict:
    """Of the poses matched one to one, the labelled keypoints inside the picture called absent, the labelled ones
    outside it (a cut person's) and the keypoints labelled absent called so, by posecal's visibility rule as shipped
    (calibration.quality.occluded_rule with the keypoint quality and in_frame) and by the probabilities alone:
    what a user who drops absent keypoints loses, and keeps out. LSPET labels every limb joint inside the picture,
    COCO leaves out those its annotators cannot place."""
    from posecal.calibration.quality import occluded_rule

    labelled, outside, unlabelled = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in rows:
        people = r["people"]
        if not people or people[0].get("visibility_probs") is None:
            continue
        s = score_row(r, np.array([p[quality] for p in people]))
        w, h = r["size"]
        for i, p in enumerate(people):
            if s.kind[i] != MATCHED:
                continue
            truth = r["truth"][s.person[i]]
            inside = (truth[:, 0] >= 0) & (truth[:, 0] <= w - 1) & (truth[:, 1] >= 0) & (truth[:, 1] <= h - 1)
            lab, unlab = (truth[:, 2] > 0) & inside, truth[:, 2] == 0
            if r["world"] == "lspet":
                unlab &= np.arange(len(truth)) >= 5    # LSPET has no face joints to label
            for rule, kq in (("shipped", p["keypoint_quality"]), ("probabilities_alone", None)):
                # the ratio (2.0) splits present keypoints only: absent does not depend on it
                absent = occluded_rule(p["visibility_probs"], 2.0, kq, p["in_frame"]) == 0
                labelled[rule].append(absent[lab])
                outside[rule].append(absent[(truth[:, 2] > 0) & ~inside])
                unlabelled[rule].append(absent[unlab])
    share = lambda parts: round(float(np.concatenate(parts).mean()), 4) if sum(map(len, parts)) else None   # noqa: E731
    return {rule: {"labelled_called_absent": share(labelled[rule]), "labelled": int(sum(map(len, labelled[rule]))),
                   "outside_called_absent": share(outside[rule]), "outside": int(sum(map(len, outside[rule]))),
                   "unlabelled_called_absent": share(unlabelled[rule]),
                   "unlabelled": int(sum(map(len, unlabelled[rule])))} for rule in labelled}


def worst(rows: list[dict], n: int = 50, quality: str = "quality") -> list[dict]:
    """The n confident poses (Q >= 0.7) with the lowest one-to-one OKS, to look at by eye."""
    out = []
    for r in rows:
        if not r["people"]:
            continue
        people = r["people"]
        q = np.array([p[quality] for p in people])
        s = score_row(r, q)
        for i, p in enumerate(people):
            if q[i] >= CONFIDENT and s.kind[i] != "uncovered" and s.target[i] < WRONG_BELOW:
                out.append({"name": r["name"], "pose": i, "q": round(float(q[i]), 3),
                            "oks": round(float(s.target[i]), 3), "kind": str(s.kind[i]), "merge": bool(s.merge[i]),
                            "half": bool(s.half[i]), "cut": bool(s.cut[i]),
                            "box": [round(float(v)) for v in p["box"]]})
    return sorted(out, key=lambda d: d["oks"])[:n]


def load_rows(path) -> list[dict]:
    return pickle.loads(Path(path).read_bytes())["rows"]


def report(args) -> None:
    result = {}
    for path in args.rows:
        rows = load_rows(path)
        world = rows[0]["world"] if rows else Path(path).stem
        result[world] = figures(rows, args.quality + "_quality" if args.quality == "raw" else "quality")
        line = result[world]["one_to_one"]
        print(f"{world}: {result[world]['pictures']} pictures, own person found with a right pose "
              f"{result[world]['found_right']}; {result[world]['poses']} poses ({result[world]['uncovered']} on "
              f"nobody labelled); "
              f"Q ECE {line.get('ece')} (floor {line.get('floor')}, p90 {line.get('floor_p90')}), "
              f"r {line.get('pearson')}, wrong among Q>=0.7 {line.get('confident_wrong_share')} "
              f"of {line.get('confident')}")
        inside = result[world]["inside_only_shared"]
        print(f"  inside the picture, shared: ECE {inside.get('ece')} (floor {inside.get('floor')}), "
              f"wrong among Q>=0.7 {inside.get('confident_wrong_share')}")
        sides = result[world]["either_side"]
        print(f"  against the labels or their left-right mirror, whichever fits (a bound: it forgives the pose's own "
              f"swaps too): ECE {sides.get('ece')} (floor {sides.get('floor')}), r {sides.get('pearson')}, wrong "
              f"among Q>=0.7 {sides.get('confident_wrong_share')}")
        down = result[world]["upside_down"]
        line, sides = down["as_labelled"], down["either_side"]
        print(f"  upside down (hips above shoulders): {line['n']} poses, ECE {line.get('ece')} (floor "
              f"{line.get('floor')}, p90 {line.get('floor_p90')}), mean Q {line.get('mean_q')} OKS "
              f"{line.get('mean_oks')}, wrong among Q>=0.7 {line.get('confident_wrong_share')} (labels or mirror "
              f"{sides.get('confident_wrong_share')})")
        for k in ("duplicates", "merges", "cut", "half"):
            d = result[world][k]
            print(f"  {k}: {d['n']} (confident {d['confident']}), mean Q {d['mean_q']} OKS {d['mean_oks']}, "
                  f"ECE without them {d['ece_without']}")
        for rule, d in result[world]["absent_calls"].items():
            print(f"  called absent ({rule}): {d['labelled_called_absent']} of {d['labelled']} labelled keypoints "
                  f"inside the picture, {d['outside_called_absent']} of {d['outside']} outside it, "
                  f"{d['unlabelled_called_absent']} of {d['unlabelled']} unlabelled")
        if args.worst:
            result[world]["worst"] = worst(rows, args.worst, "raw_quality" if args.quality == "raw" else "quality")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def same_spot_pairs(people, pixels: float = SAME_SPOT_PX, least: int = SAME_SPOT_KEYPOINTS) -> list[tuple]:
    """Pairs (i, j, n) of poses of one picture putting n >= least keypoints both call present within `pixels` of
    each other: one person posed twice (two people never put that many joints of one name on one spot)."""
    out = []
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            a, b = people[i], people[j]
            both = (np.asarray(a.visibility) >= 1) & (np.asarray(b.visibility) >= 1)
            n = int(((np.linalg.norm(a.keypoints - b.keypoints, axis=1) <= pixels) & both).sum())
            if n >= least:
                out.append((i, j, n))
    return out


def clip_pairs(args) -> None:
    """`predict CLIP --every N` as the API runs it: the poses that share a spot, frame by frame."""
    from posecal import Predictor
    predictor = Predictor(args.model, threads=args.threads)
    cap = cv2.VideoCapture(str(args.clip))
    index, frames, poses, pairs = 0, 0, 0, []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % args.every == 0:
            people = predictor(bgr).people
            frames += 1
            poses += len(people)
            pairs += [(index, i, j, n, round(people[i].pose_quality, 2), round(people[j].pose_quality, 2))
                      for i, j, n in same_spot_pairs(people)]
        index += 1
    print(f"{Path(args.clip).name} every {args.every}: {frames} frames, {poses} poses, {len(pairs)} pairs of poses "
          f"on one person (>= {SAME_SPOT_KEYPOINTS} keypoints within {SAME_SPOT_PX:g} px): {pairs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("pairs")
    c.add_argument("clip", nargs="?", default=str(SHARED / "videos/vtest_pedestrians_20s.avi"))
    c.add_argument("--every", type=int, default=10)
    c.add_argument("--model", default="accurate")
    c.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("run")
    r.add_argument("--world", choices=("val", "lspet", "train", "val_turned"), required=True)
    r.add_argument("--orientations", default=1, type=lambda v: v if v == "auto" else int(v))
    r.add_argument("--shard", default="0/1", help="i/n: every n-th crop from the i-th (train, val)")
    r.add_argument("--rows", required=True)
    r.add_argument("--model", default="accurate")
    r.add_argument("--limit", type=int)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--precision", default="auto", choices=("auto", "float", "int8"),
                   help="the shipped graphs to run (float: what auto runs on a CPU without VNNI)")
    p = sub.add_parser("report")
    p.add_argument("rows", nargs="+")
    p.add_argument("--json")
    p.add_argument("--worst", type=int, default=0)
    p.add_argument("--quality", choices=("reported", "raw"), default="reported")
    args = ap.parse_args()
    {"run": run, "report": report, "pairs": clip_pairs}[args.command](args)


if __name__ == "__main__":
    main()
