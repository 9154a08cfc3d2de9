"""Person detector recall, false persons, latency, whole-image pose quality (python bench/detector_recall.py [--pose]).

Person detector: recall at IoU >= 0.5 and false persons per image, on the val crops and on photos without
people; latency; and the pose quality that whole-image mode (`--detector none`) sees with and without a person.

Usage: python bench/detector_recall.py [--data ../shared/data/coco-val2017-crops] [--detector default|FILE.onnx]
                                       [--threshold 0.3] [--limit N] [--pose [--pose-only] [--save F.npz]]
                                       [--threads 1] [--grey]

Val crops: each crop has one labelled person; the other people of the same photograph (all in val, the split
is by photograph) are mapped into the crop with its crop_transform, so a detection on any labelled person is
not counted as false (unlabelled people in COCO photos still are: the false rate is an upper bound).
No-people photos: scikit-image's photos and textures without a person (coffee, cat, rocket, coins, ...).
--pose: also run the pose network on the whole image (whole-image mode, the product's settings: flip test,
calibrated heads) and print the pose-quality distribution on the crops (a person is there) and on the no-people
photos, and what `--min-pose-quality` 0.2 ... 0.5 keeps of each (the product's own rule, PersonPolicy.someone_there).
--pose-only skips the detector part; --save writes the pose qualities and visibility probabilities.
--grey: every picture (crops and no-people photos) made grey first, as a black-and-white photo reaches posecal
(three equal channels), which the shipped detector thresholds lower (posecal/detect/ssd.py).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from posecal.detect.detector import load_detector

NO_PEOPLE = ("coffee", "chelsea", "rocket", "coins", "moon", "horse", "hubble_deep_field", "immunohistochemistry",
             "page", "retina", "brick", "grass", "gravel", "logo", "clock", "colorwheel", "cell", "text",
             "checkerboard", "microaneurysms", "shepp_logan_phantom", "binary_blobs")
BINARY = ("horse", "binary_blobs")  # boolean images


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of x, y, w, h boxes."""
    ax0, ay0, ax1, ay1 = a[:, 0, None], a[:, 1, None], (a[:, 0] + a[:, 2])[:, None], (a[:, 1] + a[:, 3])[:, None]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    return inter / (a[:, 2:].prod(1)[:, None] + b[:, 2:].prod(1) - inter + 1e-9)


def others_in_crop(ann: dict, same_photo: list[dict], w: int, h: int) -> np.ndarray:
    (s, _, tx), (_, _, ty) = ann["crop_transform"]
    boxes = []
    for o in same_photo:
        x, y, bw, bh = o["orig_bbox"]
        x0, y0 = np.clip([s * x + tx, s * y + ty], 0, [w, h])
        x1, y1 = np.clip([s * (x + bw) + tx, s * (y + bh) + ty], 0, [w, h])
        if x1 - x0 > 2 and y1 - y0 > 2:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return np.array(boxes).reshape(-1, 4)


def person_free_patches(data: Path, n: int, seed: int = 0, split: str = "train") -> list[tuple[str, np.ndarray]]:
    """Up to n regions (>= 96 px a side) of a split's crops that overlap no labelled person of their photograph."""
    coco = json.loads((data / f"annotations/{split}.json").read_text())
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
        out.append((f"{split}:{im['file_name']}", bgr[int(y):int(y + sh), int(x):int(x + sw)].copy()))
        if len(out) >= n:
            break
    return out


def no_people_photos() -> list[tuple[str, np.ndarray]]:
    from skimage import data

    from posecal.inference.image_input import bgr_from_array

    return [(n, bgr_from_array(np.asarray(getattr(data, n)()) * (255 if n in BINARY else 1))) for n in NO_PEOPLE]


def shown(bgr: np.ndarray, grey: bool) -> np.ndarray:
    """The picture as measured: as it is, or made grey (three equal channels, as posecal reads a grey file)."""
    return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if grey else bgr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/coco-val2017-crops"))
    ap.add_argument("--detector", default="default")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--limit", type=int, default=0, help="first N val crops only (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grey", action="store_true", help="make every picture grey first")
    ap.add_argument("--pose", action="store_true")
    ap.add_argument("--pose-only", action="store_true", help="with --pose: skip the detector measurements")
    ap.add_argument("--save", type=Path, help="with --pose: write the whole-image pose outputs to this .npz")
    args = ap.parse_args()
    data = Path(args.data)
    coco = json.loads((data / "annotations/val.json").read_text())
    if args.pose_only:
        pose_quality(coco["images"][: args.limit or None], data, no_people_photos(), args.threads, args.save)
        return
    det = load_detector(args.detector, args.threshold, threads=args.threads)
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    images = coco["images"][: args.limit or None]
    found, false, times = 0, 0, []
    for im in images:
        bgr = shown(cv2.imread(str(data / "images" / im["file_name"])), args.grey)
        ann = anns[im["id"]]
        t = time.perf_counter()
        boxes, _ = det(bgr)
        times.append(time.perf_counter() - t)
        gt = np.array([ann["bbox"]])
        if len(boxes):
            found += int(iou(gt, boxes).max() >= 0.5)
            labelled = others_in_crop(ann, by_photo[ann["orig_image_id"]], im["width"], im["height"])
            false += int((iou(boxes, labelled).max(1, initial=0) < 0.5).sum()) if len(labelled) else len(boxes)
    photos = [(n, shown(bgr, args.grey)) for n, bgr in no_people_photos()]
    false_np = sum(len(det(bgr)[0]) for _, bgr in photos)
    ms = 1000 * np.array(times)
    print(f"detector {args.detector} threshold {det.score_threshold}, {args.threads} thread(s)"
          + (", grey pictures" if args.grey else ""))
    print(f"val crops: {len(images)}; recall at IoU>=0.5: {found / len(images):.3f} ({found}/{len(images)}); "
          f"false persons per crop (not on any labelled person): {false / len(images):.3f}")
    print(f"no-people photos: {len(photos)}; false persons per photo: {false_np / len(photos):.3f} ({false_np})")
    print(f"latency per image: median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms")
    if args.pose:
        pose_quality(images, data, photos, args.threads, args.save)


def pose_quality(images, data: Path, photos, threads: int, save: Path | None = None) -> None:
    """Whole-image mode: pose quality and keypoints predicted visible, people vs no people, and what each
    --min-pose-quality keeps by the product's rule (someone_there) and by quality alone."""
    from posecal.inference.person_policy import STILL
    from posecal.inference.predictor import Predictor

    pred = Predictor(threads=threads, detector=None, min_pose_quality=0.0)   # flip test on, as `predict`

    def people_of(items):
        return [p[0] for p in pred.predict_many([(bgr, None, None) for bgr in items], bgr=True)]

    crops = [cv2.imread(str(data / "images" / im["file_name"])) for im in images]
    people, none = people_of(crops), people_of([bgr for _, bgr in photos])
    q_people, q_none = np.array([p.pose_quality for p in people]), np.array([p.pose_quality for p in none])
    if save is not None:
        np.savez(save, q_people=q_people, q_none=q_none, none_names=[n for n, _ in photos],
                 vis_people=np.array([p.visibility_probs for p in people]),
                 vis_none=np.array([p.visibility_probs for p in none]))
    print("whole-image pose quality, crops with a person: percentiles 1/5/10/50 = "
          + " / ".join(f"{np.percentile(q_people, p):.3f}" for p in (1, 5, 10, 50)))
    print("whole-image pose quality, no-people photos (sorted): " + ", ".join(f"{q:.3f}" for q in sorted(q_none)))
    print(f"--min-pose-quality | people dropped (of {len(people)}) | quality alone | non-people kept "
          f"(of {len(none)}) | quality alone")
    for t in (0.2, 0.3, 0.4, 0.5):
        kept = sum(STILL.someone_there(p, t) for p in people)
        kept_none = [n for (n, _), p in zip(photos, none) if STILL.someone_there(p, t)]
        print(f"{t:.1f} | {len(people) - kept} ({1 - kept / len(people):.1%}) | {int((q_people < t).sum())} | "
              f"{len(kept_none)} ({', '.join(kept_none) or '-'}) | {int((q_none >= t).sum())}")


if __name__ == "__main__":
    main()
