"""Pseudo-labels for people nobody labelled (issue 62 item 4), kept only where posecal's own trust says they are
right, with the filter's thresholds chosen and judged on val.

    python lab/tools/pseudo_labels.py judge  [--limit N] [--json bench/results/pseudo_labels_val.json]
    python lab/tools/pseudo_labels.py harvest --out runs/pseudo/train_pseudo.json [--limit N] [--min-keypoints 6]
    python lab/tools/pseudo_labels.py merge --pseudo runs/pseudo/train_pseudo.json \
        --out runs/pseudo/train_with_pseudo.json

What a pseudo-label is: the shipped `accurate` model (flip test, its calibration) run on a person's box at three
scales (0.9, 1.0, 1.1 of the box about its centre: the multi-scale ensemble); a keypoint is kept (v = 2) where
  - the ensemble agrees: every scale's keypoint within `max_spread` x sqrt(box area) of their mean, and
  - the trust model is sure: mean keypoint quality (predicted OPKS) >= `min_quality` and mean p(visible) >=
    `min_visible`;
every other keypoint is left unlabelled (0, 0, 0: no loss), and a person with fewer than `min_keypoints` kept is
dropped. `keep_mask` is that filter (tests/training/test_pseudo_labels.py).

`judge` runs the ensemble on val's labelled people (their labelled boxes) and reports, for each threshold setting
of a small grid, how many labelled visible keypoints the filter keeps and how many of those are right (OPKS >= 0.5
against the label), on val's even annotation ids (where the setting is chosen: the loosest whose precision is at
least --precision) and on its odd ids (where the chosen setting is judged). Keypoints kept where the label is
v = 0 are counted apart (the label cannot say whether they are right).

`harvest` runs posecal's own person finding (Predictor("accurate"), the defaults) on the train crops and keeps the
people no label covers (no labelled keypoint of the crop's person or of any other labelled person of its
photograph, posecal.data.neighbours, inside the box), pseudo-labelled with the chosen setting, as a COCO keypoint
file over the same images (`"pseudo": true` on each annotation). `merge` writes train.json with them added (ids
above train's), a file `data.train_annotations` can name beside the same images folder. What this tool does not do:
train on them; that is a GPU run's (lab/tools/gpu_train.md), and whether they help is judged on val there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from posecal.data.coco import load_coco_persons, read_image, read_json  # noqa: E402
from posecal.data.neighbours import by_photo, neighbours_in_crop  # noqa: E402
from posecal.inference.record_posing import RecordPosing, record_predictor  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402
from posecal.metrics.oks import opks  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "coco-val2017-crops"
SCALES = (0.9, 1.0, 1.1)
VISIBLE = 2   # the visibility class index of "visible" (absent, occluded, visible)


@dataclass(frozen=True)
class Filter:
    min_quality: float = 0.7     # mean predicted OPKS over the scales
    min_visible: float = 0.8     # mean p(visible) over the scales
    max_spread: float = 0.05     # largest distance of a scale's keypoint from their mean, x sqrt(box area)
    min_keypoints: int = 6       # a person with fewer kept keypoints is dropped


GRID = [Filter(q, v, s) for q in (0.3, 0.5, 0.7, 0.8) for v in (0.4, 0.6, 0.8, 0.9) for s in (0.05, 0.1, 0.2)]


def keep_mask(keypoints, quality, visible_probs, box, rule: Filter) -> tuple[np.ndarray, np.ndarray]:
    """The pseudo-label filter. keypoints (S, K, 2), quality (S, K), visible_probs (S, K, 3): the ensemble's S
    answers for one person; box (4,) x, y, w, h. Returns the kept keypoints (K,) bool and their mean positions
    (K, 2)."""
    keypoints = np.asarray(keypoints, np.float64)
    mean = keypoints.mean(0)
    spread = np.linalg.norm(keypoints - mean, axis=-1).max(0)
    size = np.sqrt(max(float(box[2]) * float(box[3]), 1.0))
    keep = ((spread <= rule.max_spread * size)
            & (np.asarray(quality, np.float64).mean(0) >= rule.min_quality)
            & (np.asarray(visible_probs, np.float64)[..., VISIBLE].mean(0) >= rule.min_visible))
    return keep, mean


def scaled_boxes(box, scales=SCALES) -> np.ndarray:
    """(S, 4) the box scaled about its centre."""
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2, y + h / 2
    return np.array([[cx - s * w / 2, cy - s * h / 2, s * w, s * h] for s in scales])


def ensemble(estimator, bgr, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped model's answers for one box at every scale: keypoints (S, K, 2), keypoint quality (S, K),
    visibility probabilities (S, K, 3)."""
    boxes = scaled_boxes(box)
    people = estimator.estimate([(bgr, boxes, np.ones(len(boxes)))])[0]
    return (np.stack([p.keypoints for p in people]), np.stack([p.keypoint_quality for p in people]),
            np.stack([p.visibility_probs for p in people]))


def judge(args) -> None:
    """Each grid setting on val's labelled people: keypoints kept and how many are right, even and odd ids."""
    estimator = record_predictor(RecordPosing(model="accurate", threads=args.threads)).estimator
    records = load_coco_persons(DATA / "annotations" / "val.json", DATA / "images")[: args.limit or None]
    t0, answers, image, path = time.time(), [], None, None
    for r in records:
        if r.image_path != path:
            image, path = read_image(r.image_path), r.image_path
        answers.append(ensemble(estimator, image, r.bbox))
    print(f"{len(records)} val persons, ensemble of {len(SCALES)} scales in {time.time() - t0:.0f} s")
    rows = []
    for rule in GRID:
        row = {"filter": asdict(rule)}
        for half, parity in (("even", 0), ("odd", 1)):
            kept = right = kept_unlabelled = visible = 0
            for r, (kp, q, vp) in zip(records, answers):
                if r.ann_id % 2 != parity:
                    continue
                keep, mean = keep_mask(kp, q, vp, r.bbox, rule)
                labelled = r.keypoints[:, 2] > 0
                good = opks(mean, r.keypoints[:, :2], r.area) >= 0.5
                kept += int((keep & labelled).sum())
                right += int((keep & labelled & good).sum())
                kept_unlabelled += int((keep & ~labelled).sum())
                visible += int((r.keypoints[:, 2] == 2).sum())
            row[half] = {"kept_labelled": kept, "precision": round(right / max(kept, 1), 4),
                         "kept_share_of_visible": round(kept / max(visible, 1), 4), "kept_unlabelled": kept_unlabelled}
        rows.append(row)
    chosen = max((r for r in rows if r["even"]["precision"] >= args.precision),
                 key=lambda r: r["even"]["kept_labelled"], default=None)
    print(f"{'quality':>8}{'visible':>8}{'spread':>7} | even: kept  prec  share | odd: kept  prec  share")
    for r in rows:
        f, e, o = r["filter"], r["even"], r["odd"]
        mark = " <- chosen (even ids)" if r is chosen else ""
        print(f"{f['min_quality']:>8}{f['min_visible']:>8}{f['max_spread']:>7} | {e['kept_labelled']:>10}"
              f"{e['precision']:>6.3f}{e['kept_share_of_visible']:>7.3f} | {o['kept_labelled']:>9}"
              f"{o['precision']:>6.3f}{o['kept_share_of_visible']:>7.3f}{mark}")
    write_json_atomic({"command": "python lab/tools/pseudo_labels.py judge" + (f" --limit {args.limit}" if args.limit
                                                                          else ""),
                       "persons": len(records), "scales": SCALES, "precision_wanted": args.precision,
                       "chosen": chosen, "grid": rows}, args.json)
    print(f"wrote {args.json}")


def covered(box, labelled_points: np.ndarray) -> bool:
    """Does any labelled keypoint (N, 2) lie inside the box: is this someone a label already speaks for?"""
    x, y, w, h = box
    inside = ((labelled_points[:, 0] >= x) & (labelled_points[:, 0] <= x + w)
              & (labelled_points[:, 1] >= y) & (labelled_points[:, 1] <= y + h))
    return bool(inside.any())


def harvest(args) -> None:
    """Pseudo-labelled people of the train crops that no label covers, as a COCO keypoint file."""
    from posecal.inference.predictor import Predictor

    chosen = json.loads(Path(args.judged).read_text()).get("chosen") if args.judged else None
    rule = Filter(**chosen["filter"]) if chosen else Filter()
    rule = Filter(rule.min_quality, rule.min_visible, rule.max_spread, args.min_keypoints)
    data = read_json(DATA / "annotations" / "train.json")
    photos = by_photo(data["annotations"])
    files = {im["id"]: im for im in data["images"]}
    predictor = Predictor("accurate", threads=args.threads)
    anns, images, found, t0 = [], [], 0, time.time()
    for a in data["annotations"][: args.limit or None]:
        im = files[a["image_id"]]
        bgr = read_image(str(DATA / "images" / im["file_name"]))
        own = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        others, _ = neighbours_in_crop(a, photos[a["orig_image_id"]])
        points = np.concatenate([own[own[:, 2] > 0, :2]] + [o[o[:, 2] > 0, :2] for o in others])
        for person in predictor(bgr):
            if covered(person.box, points):
                continue
            found += 1
            kp, q, vp = ensemble(predictor.estimator, bgr, person.box)
            keep, mean = keep_mask(kp, q, vp, person.box, rule)
            if keep.sum() < rule.min_keypoints:
                continue
            triples = np.concatenate([mean, np.full((len(mean), 1), 2.0)], 1) * keep[:, None]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "iscrowd": 0, "pseudo": True,
                         "bbox": [round(float(v), 2) for v in person.box], "area": float(person.box[2] * person.box[3]),
                         "num_keypoints": int(keep.sum()), "keypoints": [round(float(v), 2) for v in triples.ravel()],
                         "pose_quality": round(float(person.pose_quality), 4)})
            if not images or images[-1]["id"] != im["id"]:
                images.append(im)
    write_json_atomic({"info": {"pseudo_labels": asdict(rule), "scales": SCALES, "model": "accurate",
                                "source": "train.json crops, people no label covers"},
                       "images": images, "annotations": anns, "categories": data["categories"]}, args.out)
    print(f"{min(len(data['annotations']), args.limit or 10 ** 9)} train crops in {time.time() - t0:.0f} s: "
          f"{found} people no label covers, {len(anns)} pseudo-labelled ({sum(a['num_keypoints'] for a in anns)} "
          f"keypoints; filter {asdict(rule)}); wrote {args.out}")


def merge(args) -> None:
    """train.json with the pseudo-labelled people added: one COCO keypoint file over the train crops."""
    train, pseudo = read_json(DATA / "annotations" / "train.json"), read_json(args.pseudo)
    first = max(a["id"] for a in train["annotations"]) + 1
    added = [a | {"id": first + n} for n, a in enumerate(pseudo["annotations"])]
    write_json_atomic(train | {"annotations": train["annotations"] + added,
                               "info": {**train.get("info", {}), "pseudo_labels": pseudo.get("info", {})}}, args.out)
    print(f"{len(train['annotations'])} labelled + {len(added)} pseudo-labelled persons; wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    j = sub.add_parser("judge", help="the filter's grid on val's labelled people (even ids choose, odd ids judge)")
    j.add_argument("--limit", type=int, default=0, help="first N val persons only (0: all)")
    j.add_argument("--precision", type=float, default=0.95, help="the precision a chosen setting must reach")
    j.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "pseudo_labels_val.json")
    j.add_argument("--threads", type=int, default=2)
    h = sub.add_parser("harvest", help="pseudo-labelled unlabelled people of the train crops")
    h.add_argument("--out", type=Path, required=True)
    h.add_argument("--judged", type=Path, default=ROOT / "bench" / "results" / "pseudo_labels_val.json",
                   help="judge's JSON: its chosen setting (default: Filter()'s when absent)")
    h.add_argument("--min-keypoints", type=int, default=Filter.min_keypoints)
    h.add_argument("--limit", type=int, default=0, help="first N train crops only (0: all)")
    h.add_argument("--threads", type=int, default=2)
    m = sub.add_parser("merge", help="train.json with harvest's people added, for data.train_annotations")
    m.add_argument("--pseudo", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.command == "harvest" and args.judged and not Path(args.judged).is_file():
        args.judged = None
    {"judge": judge, "harvest": harvest, "merge": merge}[args.command](args)


if __name__ == "__main__":
    main()
