"""Fit p(person) (posecal/calibration/person.py) for a model and store it in a model file's calibration.

    python tools/fit_person_verifier.py IN.pt OUT.pt [--train-crops 1500] [--threads 1]

Boxes, each labelled person (IoU >= 0.5 with a labelled person of the photo) or not (IoU < 0.3 with every one;
those between are left out), on the COCO crops (../shared/data/coco-val2017-crops):
- the shipped SSD's boxes at 0.1 (the permissive threshold trust-guided detection starts from): the boxes a user's
  pictures give, persons and the detector's mistakes alike;
- the labelled person's own box (whole, cut, partly hidden, seen from behind: whatever the crop shows);
- a shifted copy of it (moved by 0.55-0.9 of its width or height: a box beside its person) and a part of it (the
  top, bottom, left or right 30-45 %: an arm, the legs), both not persons unless IoU >= 0.5 says they are;
- a random box in the widest strip of the crop that holds no labelled person.
Each box goes through the model (the product's estimator, flip test, calibrated) and person_features reads its pose.
The logistic score is fitted on `--train-crops` crops of the train split (the detector's best MAX_DETECTOR_BOXES
boxes of each, beside the made-up ones). Its isotonic calibration is fitted on the boxes bench/trust_detection.py
records (run it first: its cache is read), as the product meets them: the SSD's boxes on the val crops with even
image ids and on person-free regions of train crops; the val crops with odd ids and scikit-image's photos without
people are judged here (ECE beside its floor, AUROC) and by bench/trust_detection.py. Records are cached in
runs/person_verifier/.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from detector_recall import iou, others_in_crop  # noqa: E402

from posecal.calibration.person import (FEATURES, fit_person_score, fit_person_verifier,  # noqa: E402
                                        person_features)
from posecal.metrics.calibration import auroc, binary_ece_floor, ece  # noqa: E402
from posecal.models.checkpoint import atomic_save, read_torch_file  # noqa: E402

DATA = ROOT.parent / "shared/data/coco-val2017-crops"
IS_PERSON, NOT_PERSON = 0.5, 0.3
KINDS = ("detector", "labelled", "shifted", "part", "empty")
# the detector's best boxes per crop that are kept (at 0.1 the SSD gives ~16 a crop, most of them on one person)
MAX_DETECTOR_BOXES = 5


def made_boxes(box: np.ndarray, people: np.ndarray, w: int, h: int, rng: np.random.Generator) -> list:
    """[(kind, box)] of the made-up boxes for a crop whose labelled person has `box` (x, y, w, h)."""
    x, y, bw, bh = box
    out = [("labelled", box.copy())]
    ax = rng.integers(2)
    shift = rng.uniform(0.55, 0.9) * rng.choice([-1, 1])
    out.append(("shifted", np.array([x + shift * bw, y, bw, bh]) if ax == 0 else np.array([x, y + shift * bh, bw, bh])))
    share = rng.uniform(0.3, 0.45)
    side = rng.integers(4)
    part = [np.array([x, y, bw, bh * share]), np.array([x, y + bh * (1 - share), bw, bh * share]),
            np.array([x, y, bw * share, bh]), np.array([x + bw * (1 - share), y, bw * share, bh])][side]
    out.append(("part", part))
    x0, y0 = people[:, 0].min(), people[:, 1].min()
    x1, y1 = (people[:, 0] + people[:, 2]).max(), (people[:, 1] + people[:, 3]).max()
    sx, sy, sw, sh = max([(0, 0, x0, h), (x1, 0, w - x1, h), (0, 0, w, y0), (0, y1, w, h - y1)],
                         key=lambda s: min(s[2], s[3]))
    if min(sw, sh) >= 48:
        ew, eh = rng.uniform(0.5, 1.0) * sw, rng.uniform(0.5, 1.0) * sh
        out.append(("empty", np.array([sx + rng.uniform(0, sw - ew), sy + rng.uniform(0, sh - eh), ew, eh])))
    clipped = []
    for kind, b in out:
        bx0, by0 = np.clip(b[:2], 0, [w, h])
        bx1, by1 = np.clip(b[:2] + b[2:], 0, [w, h])
        if bx1 - bx0 >= 8 and by1 - by0 >= 8:
            clipped.append((kind, np.array([bx0, by0, bx1 - bx0, by1 - by0])))
    return clipped


def records(model: str, split: str, limit: int, threads: int, seed: int = 0) -> dict:
    """{"people": PersonPose per box, "label" (1, 0 or -1 left out), "kind", "image_id"} for a split."""
    from posecal.detect.detector import load_detector
    from posecal.inference.predictor import Predictor

    cache = ROOT / "runs/person_verifier" / f"{Path(model).stem}_{split}_{limit}_{seed}.pkl"
    if cache.is_file():
        out = pickle.loads(cache.read_bytes())
        made_wrong = np.isin(out["kind"], [KINDS.index("shifted"), KINDS.index("part")])
        out["label"] = np.where(made_wrong & (out["label"] < 0), 0, out["label"])   # caches labelled before
        return out
    predictor = Predictor(model, threads=threads, detector=None)
    detector = load_detector("default", 0.1, threads=threads)
    coco = json.loads((DATA / f"annotations/{split}.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    rng = np.random.default_rng(seed)
    images = coco["images"]
    if limit:
        images = [images[i] for i in np.sort(rng.permutation(len(images))[:limit])]
    out = {"people": [], "label": [], "kind": [], "image_id": []}
    for n, im in enumerate(images):
        ann = anns[im["id"]]
        bgr = cv2.imread(str(DATA / "images" / im["file_name"]))
        if bgr is None:
            continue
        h, w = bgr.shape[:2]
        target = np.array(ann["bbox"], float)
        people = np.concatenate([others_in_crop(ann, by_photo[ann["orig_image_id"]], w, h), target[None]])
        boxes, scores = detector(bgr)
        top = np.argsort(-scores, kind="stable")[:MAX_DETECTOR_BOXES]
        kinds = [("detector", b) for b in boxes[top]] + made_boxes(target, people, w, h, rng)
        arr = np.array([b for _, b in kinds])
        persons = predictor.estimate([(bgr, arr, np.ones(len(arr)))])[0]
        overlap = iou(arr, people).max(1)
        for (kind, _), p, o in zip(kinds, persons, overlap):
            out["people"].append(p)
            made_wrong = kind in ("shifted", "part")   # a box beside its person or on a part: not a person box
            out["label"].append(1 if o >= IS_PERSON else 0 if o < NOT_PERSON or made_wrong else -1)
            out["kind"].append(KINDS.index(kind))
            out["image_id"].append(im["id"])
        if n % 100 == 0:
            print(f"{split}: {n}/{len(images)} crops, {len(out['label'])} boxes", flush=True)
    out = {k: (v if k == "people" else np.asarray(v)) for k, v in out.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def bench_records(model: str, args) -> dict:
    """The val crops' records of bench/trust_detection.py (its cache, made by running it first): the shipped
    SSD's boxes at 0.1 on the val crops, on person-free regions of train crops and on scikit-image's photos
    without people, each labelled by IoU with the photo's labelled persons (the regions and photos: nobody)."""
    cache = ROOT / "runs/trust_detection" / f"{Path(model).stem}_0_{args.patches}_0.1.pkl"
    if not cache.is_file():
        raise SystemExit(f"{cache}: run python bench/trust_detection.py --model {model} first")
    rec = pickle.loads(cache.read_bytes())
    cols = rec["cols"]
    crop = cols[:, 1] == 0
    label = np.where(crop, np.where(cols[:, 7] >= IS_PERSON, 1, np.where(cols[:, 7] < NOT_PERSON, 0, -1)), 0)
    tuning = (crop & (cols[:, 2] % 2 == 0)) | (cols[:, 1] == 1)
    return {"people": rec["people"], "label": label,
            "set": cols[:, 1].astype(int), "tuning": tuning & (label >= 0), "held": ~tuning & (label >= 0)}


SETS = ("val crops", "person-free regions of train crops", "photos without people")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="packed model file with a calibration (a shipped name works too)")
    ap.add_argument("out", help="model file to write: the same with p(person) in its calibration")
    ap.add_argument("--train-crops", type=int, default=600)
    ap.add_argument("--patches", type=int, default=200, help="bench/trust_detection.py's --patches")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    train = records(args.model, "train", args.train_crops, args.threads)
    val = bench_records(args.model, args)
    fit = train["label"] >= 0
    score = fit_person_score(person_features([p for p, f in zip(train["people"], fit) if f]),
                             train["label"][fit])
    feats = person_features(val["people"])
    verifier = fit_person_verifier(score, feats[val["tuning"]], val["label"][val["tuning"]], {
        "source": f"tools/fit_person_verifier.py: score on {int(fit.sum())} boxes of {args.train_crops} train crops, "
                  f"calibrated on {int(val['tuning'].sum())} detector boxes of the val crops with even image ids "
                  "and person-free regions of train crops"})
    p = verifier.calibration(verifier.score(feats))
    report = {"weights": dict(zip(FEATURES, np.round(score.weights, 3).tolist())),
              "train_boxes_by_kind": {KINDS[k]: {"boxes": int((fit & (train["kind"] == k)).sum()),
                                                 "share_person": round(float(train["label"][fit & (train["kind"] == k)].mean()), 3)}
                                      for k in range(len(KINDS)) if (fit & (train["kind"] == k)).any()}}
    for name in ("tuning", "held"):
        part = val[name]
        floor, floor90 = binary_ece_floor(p[part])
        report[name] = {"boxes": int(part.sum()), "persons": int(val["label"][part].sum()),
                        "ece": round(ece(p[part], val["label"][part]), 4), "floor": round(floor, 4),
                        "floor_p90": round(floor90, 4), "auroc": round(auroc(p[part], val["label"][part] == 1), 4),
                        "by_set": {SETS[k]: {"boxes": int((part & (val["set"] == k)).sum()),
                                             "mean_p": round(float(p[part & (val["set"] == k)].mean()), 3),
                                             "share_person": round(float(val["label"][part & (val["set"] == k)].mean()), 3)}
                                   for k in range(len(SETS)) if (part & (val["set"] == k)).any()}}
    verifier.fit_info["judged_held_out"] = {k: report["held"][k] for k in ("boxes", "persons", "ece", "floor", "auroc")}
    print(json.dumps(report, indent=1))
    from posecal.models.checkpoint import model_file

    ckpt = read_torch_file(model_file(args.model))
    ckpt["meta"]["calibration"]["person"] = verifier.to_dict()
    atomic_save(ckpt, args.out)
    (ROOT / "runs/person_verifier").mkdir(parents=True, exist_ok=True)
    (ROOT / "runs/person_verifier/report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
