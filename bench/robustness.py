"""Robustness to rotated and bottom-truncated people: COCO keypoint AP per condition (python bench/robustness.py).

Each condition rewrites the val split (images and a COCO annotation file, in a temporary folder) and then
runs exactly what `posecal eval` runs on it: `load_coco_persons` with the GT boxes, `predict_records` with
flip test and the model's own decoding (DARK; MoveNet's centre-guided decode for a MoveNet model), and pycocotools AP of the model's default pose score (`oks` when the model has
quality heads, else `heatmap`). Images are rewritten as PNG, so rotation by 0 degrees reproduces the
original pixels and the 0-degree AP is the plain `posecal eval` AP of the same persons.

Conditions (the definitions the numbers in the model card rest on):

* rot THETA, THETA in 0, 45, 90, 135, 180: the image is rotated about the centre of the GT person box by
  THETA degrees counter-clockwise (cv2.getRotationMatrix2D) onto a canvas just big enough to hold the whole
  rotated image (black border). Labelled keypoints are rotated with it. The new GT box is the axis-aligned
  box of the 4 rotated corners of the original box (what a detector would give for the rotated person);
  `area` is kept (rotation preserves area, so OKS tolerances are unchanged).
* bottom40: the bottom 40 % of the model's input region is cut away. That region is the GT box made the model's
  input aspect (3:4 w:h for the fast model, square for MoveNet) and padded 1.25 (`box_to_center_scale` with the model's input aspect); with centre cy and height H
  the cut line is y_cut = cy + H/2 - 0.4 H. The image keeps only rows y < y_cut (as if the photo ended
  there), the box is clipped to y < y_cut, labelled keypoints with y >= y_cut become absent (v = 0) and
  `num_keypoints` is recounted; `area` is kept (the person's scale, hence the OKS tolerance, is unchanged).
  Persons left with no labelled keypoint are dropped from the GT (counted in the output).
  It also reports how well the visibility head flags the cut-away keypoints as absent (predicted absent =
  visibility class argmax is 0), over the persons kept and their keypoints labelled before the cut:
  recall = cut-away predicted absent / cut-away,
  precision = cut-away predicted absent / (labelled before the cut and predicted absent).

`ratio` is AP(condition) / AP(rot 0).

Usage: python bench/robustness.py [--model CKPT] [--annotations VAL.json --images DIR] [--max-persons N]
                                  [--threads 2] [--out FILE.json] [--orientations 4|auto]
"""
from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from posecal.cli.parser import orientations_arg
from posecal.export.session import open_onnx_model
from posecal.models.checkpoint import load_model
from posecal.models.config import default_decode
from posecal.data.coco import load_coco_persons, read_image, read_json
from posecal.data.transforms import box_to_center_scale
from posecal.inference.estimator import predict_records
from posecal.io import write_json_atomic
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.inference.scoring import keypoint_confidence, pose_scores, predicted_labelled

CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-val2017-crops"
ANGLES = (0, 45, 90, 135, 180)
CUT_FRACTION = 0.4
# Fields of the source annotations that describe the original crop; they are wrong once the image changes.
STALE_FIELDS = ("crop_transform", "orig_bbox")


def rotation_canvas(image_wh, center, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """2x3 matrix rotating an image of image_wh about `center` by `angle` degrees counter-clockwise, shifted
    so the whole rotated image fits, and that canvas's (w, h). Coordinates: integer = pixel centre (cv2's)."""
    w, h = image_wh
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), 1.0)
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    rot = corners @ m[:, :2].T + m[:, 2]
    lo, hi = rot.min(0), rot.max(0)
    m[:, 2] += -0.5 - lo                            # the canvas's outer pixel edge is at -0.5
    size = np.ceil(hi - lo - 1e-6).astype(int)      # tolerance: cos(90) is 6e-17, not 0
    return m, (int(size[0]), int(size[1]))


def rotate_person(image: np.ndarray, ann: dict, angle: float) -> tuple[np.ndarray, dict]:
    """Rotate a one-person image and its COCO annotation about the GT box centre (see the module docstring).

    Returns the rotated image and a new annotation: labelled keypoints rotated (unlabelled ones stay 0, 0, 0),
    bbox = axis-aligned box of the rotated box corners, area unchanged.
    """
    x, y, w, h = (float(v) for v in ann["bbox"])
    m, canvas = rotation_canvas((image.shape[1], image.shape[0]), (x + w / 2, y + h / 2), angle)
    out = cv2.warpAffine(image, m, canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    lab = kp[:, 2] > 0
    kp[lab, :2] = kp[lab, :2] @ m[:, :2].T + m[:, 2]
    corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) @ m[:, :2].T + m[:, 2]
    lo, hi = corners.min(0), corners.max(0)
    new = {k: v for k, v in ann.items() if k not in STALE_FIELDS}
    new.update(keypoints=[float(v) for v in kp.reshape(-1)], bbox=[float(lo[0]), float(lo[1]),
                                                                   float(hi[0] - lo[0]), float(hi[1] - lo[1])])
    return out, new


def cut_line_y(bbox, input_wh, fraction: float = CUT_FRACTION) -> float:
    """y where the bottom `fraction` of the model's input region for this GT box begins."""
    (_, cy), (_, region_h) = box_to_center_scale(bbox, aspect=input_wh[0] / input_wh[1])
    return float(cy + region_h / 2 - fraction * region_h)


def truncate_bottom(image: np.ndarray, ann: dict, input_wh,
                    fraction: float = CUT_FRACTION) -> tuple[np.ndarray, dict, np.ndarray]:
    """Cut away the bottom `fraction` of the model's input region, as if the photo ended at the cut line.

    Returns the image rows y < y_cut, the annotation with its box clipped to y < y_cut and the labelled
    keypoints at y >= y_cut made absent (x = y = v = 0, num_keypoints recounted), and the (K,) bool mask of
    the keypoints the cut made absent.
    """
    y_cut = cut_line_y(ann["bbox"], input_wh, fraction)
    rows = int(np.clip(math.ceil(y_cut), 0, image.shape[0]))   # pixel rows r < y_cut
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    cut = (kp[:, 2] > 0) & (kp[:, 1] >= y_cut)
    kp[cut] = 0.0
    x, y, w, h = (float(v) for v in ann["bbox"])
    new = {k: v for k, v in ann.items() if k not in STALE_FIELDS}
    new.update(keypoints=[float(v) for v in kp.reshape(-1)], num_keypoints=int((kp[:, 2] > 0).sum()),
               bbox=[x, y, w, min(y + h, y_cut) - y])
    return image[:rows], new, cut


def absent_stats(pred_absent: np.ndarray, cut: np.ndarray, still_labelled: np.ndarray) -> dict:
    """Recall and precision of 'predicted absent' for the cut-away keypoints, among the keypoints labelled
    before the cut (cut | still_labelled); all arguments (N, K) bool."""
    before = cut | still_labelled
    hit = int((pred_absent & cut).sum())
    flagged = int((pred_absent & before).sum())
    n_cut = int(cut.sum())
    return {"recall": round(hit / n_cut, 4) if n_cut else None,
            "precision": round(hit / flagged, 4) if flagged else None,
            "n_cut": n_cut, "n_still_labelled": int(still_labelled.sum()), "n_predicted_absent": flagged}


def select_persons(data: dict, max_persons: int | None) -> dict:
    """The COCO file narrowed to its first `max_persons` evaluable persons (num_keypoints > 0, not crowd)."""
    anns = [a for a in data["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0]
    anns = anns[:max_persons] if max_persons else anns
    keep = {a["image_id"] for a in anns}
    return {**data, "images": [im for im in data["images"] if im["id"] in keep], "annotations": anns}


def rewrite_split(data: dict, image_dir: Path, folder: Path, transform) -> tuple[Path, dict]:
    """Apply transform(image, ann) -> (image, ann, extra) or None (drop the person) to every person and write
    the images (PNG, lossless) and the COCO file into `folder`. Returns (annotation path, {ann id: extra})."""
    images = {im["id"]: im for im in data["images"]}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    new_images, new_anns, extras = [], [], {}
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        res = transform(read_image(image_dir / im["file_name"]), copy.deepcopy(ann))
        if res is None:
            continue
        img, new_ann, extras[ann["id"]] = res
        name = Path(im["file_name"]).with_suffix(".png").name
        cv2.imwrite(str(folder / "images" / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        new_images.append({**im, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        new_anns.append(new_ann)
    ann_file = folder / "annotations.json"
    write_json_atomic({**data, "images": new_images, "annotations": new_anns}, ann_file, indent=None)
    return ann_file, extras


def evaluate_split(model, mcfg, ann_file: Path, image_dir: Path, batch_size: int = 32,
                   orientations: int | str = 1):
    """`posecal eval`'s AP path on a COCO file (GT boxes, flip test, the model's own decode): ({ap, ap50, score_mode}, preds)."""
    records = load_coco_persons(ann_file, image_dir)
    pred = predict_records(model, records, mcfg.input_wh, flip=True, batch_size=batch_size,
                           progress=False, orientations=orientations)
    scores = pose_scores(pred)
    mode = "oks" if "oks" in scores else "heatmap"
    box_scores = np.array([r.score for r in pred.records])
    results = coco_keypoint_results([r.image_id for r in pred.records], pred.keypoints,
                                    keypoint_confidence(pred), scores[mode] * box_scores)
    ap = coco_keypoint_ap(load_coco_gt(ann_file), results)
    return {"ap": round(ap["ap"], 2), "ap50": round(ap["ap50"], 2), "score_mode": mode,
            "persons": len(pred.records)}, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file or exported .onnx (default: the shipped default model)")
    ap.add_argument("--annotations", default=str(CROPS / "annotations" / "val.json"))
    ap.add_argument("--images", default=str(CROPS / "images"))
    ap.add_argument("--max-persons", type=int, help="only the first N persons of the file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the numbers to this JSON file")
    ap.add_argument("--orientations", type=orientations_arg, default=1, metavar="{1,4,auto}",
                    help="4 or auto: test-time orientation search, as `posecal eval --orientations 4|auto` "
                         "(default: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if str(args.model).endswith(".onnx"):   # an exported file (`posecal export`): onnxruntime, its flip test built in
        model = open_onnx_model(args.model, flip=True, threads=args.threads)
        mcfg = model.config
    else:
        model, mcfg, _ = load_model(args.model)
    data = select_persons(read_json(args.annotations), args.max_persons)
    image_dir = Path(args.images)
    print(f"model {args.model or 'default'}, {len(data['annotations'])} persons of {args.annotations}, "
          f"GT boxes, flip test, {default_decode(mcfg)} decoding, {args.orientations} orientation(s)")
    conditions = {}

    def run(name, transform):
        with tempfile.TemporaryDirectory(prefix="posecal_robust_") as tmp:
            ann_file, extras = rewrite_split(data, image_dir, Path(tmp), transform)
            metrics, pred = evaluate_split(model, mcfg, ann_file, Path(tmp) / "images",
                                           orientations=args.orientations)
        metrics["ratio"] = round(metrics["ap"] / conditions["rot 0"]["ap"], 3) if conditions else 1.0
        conditions[name] = metrics
        return metrics, pred, extras

    for angle in ANGLES:
        m, _, _ = run(f"rot {angle}", lambda img, ann, a=angle: (*rotate_person(img, ann, a), None))
        print(f"rot {angle:<4d}  AP {m['ap']:5.1f}  AP50 {m['ap50']:5.1f}  ratio {m['ratio']:.2f}", flush=True)

    def cut(img, ann):
        img, ann, mask = truncate_bottom(img, ann, mcfg.input_wh)
        return (img, ann, mask) if ann["num_keypoints"] > 0 else None

    m, pred, masks = run("bottom40", cut)
    m["dropped_persons"] = len(data["annotations"]) - m["persons"]
    line = (f"bottom40  AP {m['ap']:5.1f}  AP50 {m['ap50']:5.1f}  ratio {m['ratio']:.2f}  "
            f"({m['dropped_persons']} persons left with no labelled keypoint dropped)")
    if pred.visibility_probs is None:
        m["absent"] = None
        line += "  absent: n/a (no visibility head)"
    else:
        cut_mask = np.stack([masks[r.ann_id] for r in pred.records])
        still = np.stack([r.keypoints[:, 2] > 0 for r in pred.records])
        s = m["absent"] = absent_stats(~predicted_labelled(pred), cut_mask, still)
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        line += (f"\n          absent: recall {fmt(s['recall'])} precision {fmt(s['precision'])} "
                 f"(n={s['n_cut']} cut-away, {s['n_still_labelled']} still labelled keypoints)\n"
                 "          predicted absent = visibility argmax 0; recall = cut-away predicted absent / cut-away; "
                 "precision = cut-away predicted absent / labelled-before-cut predicted absent")
    print(line)
    seconds = round(time.time() - t0, 1)
    print(f"score mode {conditions['rot 0']['score_mode']}, ratio = AP / AP(rot 0), {seconds} s")
    if args.out:
        write_json_atomic({"model": args.model or "default", "annotations": str(args.annotations),
                           "persons": len(data["annotations"]), "boxes": "gt", "flip_test": True, "decode": "dark",
                           "orientations": args.orientations,
                           "cut_fraction": CUT_FRACTION, "conditions": conditions, "seconds": seconds}, args.out)


if __name__ == "__main__":
    main()
