"""`--orientations auto`: AP and cost per threshold on upright, 90- and 180-degree turned val persons
(python bench/orientation_auto.py --model M.onnx --max-persons 400).

The splits are bench/robustness.py's rot 0 / rot 90 / rot 180 (the image turned about the person's box centre,
the GT box re-made around the turned box). Every person is estimated once per crop turn (0, 90, 180, 270, the
model's flip test and decode, as `posecal eval`), and for each threshold t the auto rule is applied offline:
upright when the upright raw predicted OKS >= t, else the turn with the highest raw predicted OKS (upright on
ties), which is what `orientation.keep_best_turn` does at run time. Printed per t: AP of each split (pose score
`oks`, raw), the share of upright persons that would get the extra turns, and the cost on upright data in
network passes per person (1 + 3 x that share). Rows for 1 (upright only) and 4 (always all turns) frame them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import CROPS, rewrite_split, rotate_person, select_persons  # noqa: E402

from posecal.data.coco import load_coco_persons, read_json  # noqa: E402
from posecal.export.session import open_onnx_model  # noqa: E402
from posecal.inference.orientation import ORIENTATIONS, torso_tilt  # noqa: E402
from posecal.data.images import read_image  # noqa: E402
from posecal.data.transforms import apply_affine, invert_affine  # noqa: E402
from posecal.inference.estimator import Estimator  # noqa: E402
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt  # noqa: E402
from posecal.models.checkpoint import load_model  # noqa: E402

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
TILTS = (45.0, 60.0, 90.0)


def turns_of(model, cfg, ann_file: Path, image_dir: Path):
    """Per turn (0, 90, 180, 270): (records, raw outputs with "keypoints" in image pixels) of every person of the
    split, through the one estimator's crop-and-network step (flip test, the model's decode, no calibration)."""
    records = load_coco_persons(ann_file, image_dir)
    estimator = Estimator(model, cfg.input_wh, None, flip=True, batch_size=32)
    images = {}
    for r in records:
        if r.image_path not in images:
            images[r.image_path] = read_image(r.image_path)
    prepared = [(images[r.image_path], None, None) for r in records]
    owners = [(n, np.asarray(r.bbox, np.float64), 1.0) for n, r in enumerate(records)]
    turns = []
    for rotation in ORIENTATIONS[4]:
        res = estimator._infer(prepared, owners, rotation)
        res["keypoints"] = np.stack([apply_affine(xy, invert_affine(m)) for xy, m in zip(res["xy"], res["matrices"])])
        turns.append((records, res))
    return turns


def ap_of(turns, choice: np.ndarray, ann_file: Path) -> float:
    recs = turns[0][0]
    kp = np.stack([turns[c][1]["keypoints"][i] for i, c in enumerate(choice)])
    oks = np.array([turns[c][1]["oks"][i] for i, c in enumerate(choice)])
    conf = np.stack([turns[c][1]["opks"][i] for i, c in enumerate(choice)])
    res = coco_keypoint_results([r.image_id for r in recs], kp, conf, np.clip(oks, 0, 1))
    return coco_keypoint_ap(load_coco_gt(ann_file), res)["ap"]


def auto_choice(turns, threshold: float, tilt: float | None = None) -> np.ndarray:
    """tilt: also turn persons whose upright torso (hips -> shoulders) leans more than this many degrees."""
    scores = np.stack([t[1]["oks"] for t in turns])                 # (4, N)
    best = scores.argmax(0)
    if threshold is None:
        return best
    redo = scores[0] < threshold
    if tilt is not None:
        redo |= torso_tilt(turns[0][1]["keypoints"]) > tilt
    return np.where(redo, best, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="accurate", help="model file, shipped name or exported .onnx (flip test)")
    ap.add_argument("--annotations", default=str(CROPS / "annotations" / "val.json"))
    ap.add_argument("--images", default=str(CROPS / "images"))
    ap.add_argument("--max-persons", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if str(args.model).endswith(".onnx"):
        model = open_onnx_model(args.model, flip=True, threads=args.threads)
        cfg = model.config
    else:
        model, cfg, _ = load_model(args.model)
    data = select_persons(read_json(args.annotations), args.max_persons)
    splits = {}
    with tempfile.TemporaryDirectory(prefix="posecal_auto_") as tmp:
        for angle in (0, 90, 180):
            folder = Path(tmp) / str(angle)
            ann_file, _ = rewrite_split(data, Path(args.images), folder,
                                        lambda img, ann, a=angle: (*rotate_person(img, ann, a), None))
            splits[angle] = (turns_of(model, cfg, ann_file, folder / "images"), ann_file)
            print(f"rot {angle}: {len(splits[angle][0][0][0])} persons estimated in 4 turns", flush=True)
        print("| orientations | rot 0 AP | rot 90 AP | rot 180 AP | upright persons turned | passes per upright person |")
        print("|---|---|---|---|---|---|")
        rows = [("1", 1e9, None), ("4", None, None)] + [(f"auto, t = {t:g}", t, None) for t in THRESHOLDS]
        rows += [(f"auto, t = {t:g} or torso tilt > {a:g} deg", t, a) for t in (0.0, 0.1, 0.2) for a in TILTS]
        for name, t, tilt in rows:
            aps = [ap_of(turns, auto_choice(turns, t, tilt) if t != 1e9 else np.zeros(len(turns[0][0]), int), ann)
                   for turns, ann in (splits[a] for a in (0, 90, 180))]
            up = splits[0][0][0][1]["oks"]
            redo = np.zeros(len(up), bool) if t == 1e9 else np.ones(len(up), bool) if t is None else up < t
            if tilt is not None:
                redo |= torso_tilt(splits[0][0][0][1]["keypoints"]) > tilt
            share = float(redo.mean())
            print(f"| {name} | {aps[0]:.1f} | {aps[1]:.1f} | {aps[2]:.1f} | {share:.3f} | {1 + 3 * share:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
