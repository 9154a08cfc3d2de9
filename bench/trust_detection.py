"""Trust-guided person detection: the detector at a permissive threshold, posecal's trust deciding who is a person
(python bench/trust_detection.py [--model accurate] [--limit N] [--patches 200]).

Boxes: the shipped SSD at --low (0.1), its own box NMS. Every box goes through the pose network and trust model
(the product's pipeline estimator, flip test, calibrated), and the bench records per box its detector score,
pose quality and visible-keypoint evidence. The rule (posecal.inference.pipeline.PersonRule, the product's own)
keeps a box when its score is >= 0.3 (today's threshold), or when its score is >= t_low and its pose says a person
is there: pose quality >= q and some keypoint predicted visible (pose NMS after, as the product does).

Data, each split in two so that the rule's knobs are chosen on one part and judged on the other:
* val crops (822, one labelled person each; other labelled people of the photo mapped in): tuning = even image
  ids, held-out = odd. Found = some kept box has IoU >= 0.5 with the labelled person.
* person-free pictures: --patches regions of the *train* crops that overlap no labelled person of their photo
  (tuning; COCO leaves some people unlabelled, so an "invented" person there may be a real one), and
  scikit-image's 22 photos without people (held out).
The rule chosen: the most tuning recall with at most MORE_INVENTED more invented persons on the tuning patches
than today's threshold. "False per crop" counts kept boxes on no labelled person of the photo: an upper bound, as
the crops' photos hold people COCO labelled without keypoints (not in the crops' files); the rule drops unsure
boxes lying inside a surer one (parts of a person, pipeline.TRUST_GUIDED_CONTAINED). Caches the per-box records in runs/trust_detection/MODEL.npz.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from detector_recall import iou, no_people_photos, others_in_crop
from posecal.inference.pipeline import TRUST_GUIDED_MIN_HEIGHT

DATA = Path(__file__).resolve().parents[2] / "shared/data/coco-val2017-crops"
TODAY = 0.3
T_LOW = (0.1, 0.15, 0.2, 0.25)
# Invented persons allowed on the tuning patches beyond today's (COCO leaves some people unlabelled, so some of
# these "inventions" are real people)
MORE_INVENTED = 1
QUALITY = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def person_free_patches(data: Path, n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Up to n regions (>= 96 px a side) of train crops that overlap no labelled person of their photograph."""
    coco = json.loads((data / "annotations/train.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    rng = np.random.default_rng(seed)
    out = []
    for k in rng.permutation(len(coco["images"])):
        im = coco["images"][k]
        ann = anns[im["id"]]
        w, h = im["width"], im["height"]
        people = others_in_crop(ann, by_photo[ann["orig_image_id"]], w, h)
        people = np.concatenate([people, np.array([ann["bbox"]])])
        x0, y0 = people[:, 0].min(), people[:, 1].min()
        x1, y1 = (people[:, 0] + people[:, 2]).max(), (people[:, 1] + people[:, 3]).max()
        # the widest strip left, right, above or below every person
        strips = [(0, 0, x0, h), (x1, 0, w - x1, h), (0, 0, w, y0), (0, y1, w, h - y1)]
        x, y, sw, sh = max(strips, key=lambda s: min(s[2], s[3]))
        if min(sw, sh) < 96:
            continue
        bgr = cv2.imread(str(data / "images" / im["file_name"]))
        out.append((f"train:{im['file_name']}", bgr[int(y):int(y + sh), int(x):int(x + sw)].copy()))
        if len(out) >= n:
            break
    return out


def records(model: str, data: Path, limit: int, patches: int, low: float, threads: int) -> dict:
    """Per box: picture index, set (0 val crop, 1 train patch, 2 skimage photo), detector score, pose quality,
    number of keypoints called visible, IoU with the labelled person, IoU with any labelled person; and the
    poses themselves for pose NMS."""
    from posecal.detect.detector import load_detector
    from posecal.inference.predictor import Predictor

    predictor = Predictor(model, threads=threads, detector=None)
    detector = load_detector("default", low, threads=threads)
    coco = json.loads((data / "annotations/val.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    pictures = []   # (set, name, bgr, target box or None, labelled boxes)
    for im in coco["images"][: limit or None]:
        ann = anns[im["id"]]
        pictures.append((0, im["id"], cv2.imread(str(data / "images" / im["file_name"])), np.array(ann["bbox"]),
                         others_in_crop(ann, by_photo[ann["orig_image_id"]], im["width"], im["height"])))
    pictures += [(1, name, bgr, None, np.zeros((0, 4))) for name, bgr in person_free_patches(data, patches)]
    pictures += [(2, name, bgr, None, np.zeros((0, 4))) for name, bgr in no_people_photos()]
    rows, people = [], []
    for n, (kind, name, bgr, target, labelled) in enumerate(pictures):
        boxes, scores = detector(bgr)
        if not len(boxes):
            continue
        persons = predictor.estimate([(bgr, boxes, scores)])[0]
        for box, score, p in zip(boxes, scores, persons):
            t = iou(box[None], target[None])[0, 0] if target is not None else 0.0
            any_ = iou(box[None], labelled).max(initial=0.0) if len(labelled) else t
            rows.append((n, kind, int(name) if kind == 0 else -1, score, p.pose_quality,
                         int((p.visibility == 2).sum()), t, max(any_, t)))
            people.append(p)
        if n % 100 == 0:
            print(f"{n}/{len(pictures)} pictures", flush=True)
    cols = np.array(rows, float)
    return {"cols": cols, "people": people, "n_patches": sum(p[0] == 1 for p in pictures)}


def judged(cols: np.ndarray, people: list, t_low: float, q: float, rows: np.ndarray) -> np.ndarray:
    """Kept boxes (a mask over cols): those the detector gives at t_low, through the product's own PersonRule
    with sure_score TODAY and confirm_quality q (pose NMS after); q > 1 is today's rule (the detector at 0.3)."""
    from posecal.inference.pipeline import DETECTOR, PersonRule

    rule = PersonRule(sure_score=TODAY, confirm_quality=q, unsure_min_height=TRUST_GUIDED_MIN_HEIGHT)
    keep = rows & (cols[:, 3] >= (TODAY if q > 1 else t_low))
    out = np.zeros(len(cols), bool)
    for n in np.unique(cols[keep, 0]):
        idx = np.flatnonzero(keep & (cols[:, 0] == n))
        kept = {id(p) for p in rule.keep([people[i] for i in idx], DETECTOR)}
        out[[i for i in idx if id(people[i]) in kept]] = True
    return out


def figures(cols, people, t_low, q, val_part: np.ndarray, n_val: int) -> dict:
    rows = np.ones(len(cols), bool)
    kept = judged(cols, people, t_low, q, rows)
    val = cols[:, 1] == 0
    in_part = val & val_part
    found = len(np.unique(cols[kept & in_part & (cols[:, 6] >= 0.5), 0]))
    false_val = int((kept & in_part & (cols[:, 7] < 0.5)).sum())
    return {"recall": found / n_val, "found": found, "false_per_crop": false_val / n_val,
            "invented_patches": int((kept & (cols[:, 1] == 1)).sum()),
            "invented_photos": int((kept & (cols[:, 1] == 2)).sum()),
            "photos_with_invented": len(np.unique(cols[kept & (cols[:, 1] == 2), 0]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--patches", type=int, default=200)
    ap.add_argument("--low", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results/trust_detection.json")
    args = ap.parse_args()
    cache = Path(__file__).resolve().parents[1] / "runs/trust_detection" / f"{Path(args.model).stem}_{args.limit}_{args.patches}_{args.low}.pkl"
    import pickle

    if cache.is_file():
        rec = pickle.loads(cache.read_bytes())
    else:
        rec = records(args.model, args.data, args.limit, args.patches, args.low, args.threads)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(rec))
    cols, people = rec["cols"], rec["people"]
    coco = json.loads((args.data / "annotations/val.json").read_text())
    ids = np.array([im["id"] for im in coco["images"][: args.limit or None]])
    tuning_ids, held_ids = ids[ids % 2 == 0], ids[ids % 2 == 1]
    tuning = np.isin(cols[:, 2], tuning_ids)
    held = np.isin(cols[:, 2], held_ids)
    base_t = figures(cols, people, TODAY, 2.0, tuning, len(tuning_ids))
    candidates = []
    for t_low in T_LOW:
        for q in QUALITY:
            f = figures(cols, people, t_low, q, tuning, len(tuning_ids))
            if f["invented_patches"] <= base_t["invented_patches"] + MORE_INVENTED:
                candidates.append((f["recall"], -f["false_per_crop"], t_low, q, f))
    best = max(candidates, key=lambda c: c[:2])
    t_low, q = best[2], best[3]
    result = {"model": args.model, "low": args.low, "chosen": {"t_low": t_low, "min_pose_quality": q},
              "today_tuning": base_t, "rule_tuning": best[4],
              "today_held_out": figures(cols, people, TODAY, 2.0, held, len(held_ids)),
              "rule_held_out": figures(cols, people, t_low, q, held, len(held_ids)),
              "permissive_alone_held_out": figures(cols, people, args.low, 0.0, held, len(held_ids)),
              "n": {"val_tuning": len(tuning_ids), "val_held_out": len(held_ids),
                    "patches": rec["n_patches"], "photos": 22}}
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
