"""The flip test only where trust is unsure: AP and pose crops against the flip always and never.

    python lab/bench/flip_unsure.py [--world val|lspet] [--persons N] [--model accurate]

GT boxes, the shipped graphs (float), pose score = pose quality. Each person is posed once without the flip test;
a person whose unflipped pose quality is under t is posed again with it (the flip graph runs the crop and its
mirror: 2 crops), and that pose is reported. Printed per t: the share flipped, pose crops per person (1 + 2 x
share; the flip always: 2), AP, and the pose ECE of the reported poses beside its floor. val: the 822 val crops
(the threshold is chosen here); lspet: its last 600 photos (sports, judged only).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from posecal.calibration.quality import calibration_from_meta
from posecal.data.coco import as_coco_file, load_coco_persons, load_lspet
from posecal.inference.estimator import predict_records
from posecal.inference.opener import open_model
from posecal.inference.scoring import keypoint_confidence
from posecal.metrics.calibration import ece, ece_floor
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.metrics.oks import opks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def world(name: str, persons: int | None):
    """(records, pycocotools COCO of their labels)."""
    if name == "val":
        root = DATA / "coco-val2017-crops"
        records = load_coco_persons(root / "annotations" / "val.json", root / "images")
    else:
        root = DATA / "lspet"
        records = load_lspet(root / "annotations" / "lspet.json", root / "images")[-600:]
    records = records[:persons] if persons else records
    return records, load_coco_gt(as_coco_file(records))


def posed(model: str, records, flip: bool):
    opened = open_model(model, flip=flip, threads=2)
    cal = calibration_from_meta(opened.meta, model)
    return predict_records(opened.runner, records, opened.config.input_wh, flip=flip, progress=False,
                           calibration=cal)


def scored(gt, records, keypoints, confidence, quality) -> tuple[float, float, tuple]:
    """(AP, pose ECE, its floor) of poses ranked and rated by `quality`."""
    ap = coco_keypoint_ap(gt, coco_keypoint_results([r.image_id for r in records], keypoints, confidence,
                                                    quality))["ap"]
    truth_kp = np.stack([r.keypoints for r in records])
    area = np.array([r.area for r in records])
    lab = truth_kp[..., 2] > 0
    ks = opks(keypoints, truth_kp[..., :2], area)
    oks = (ks * lab).sum(1) / np.maximum(lab.sum(1), 1)
    has = lab.any(1)
    return ap, ece(quality[has], oks[has]), ece_floor(quality[has], oks[has])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=("val", "lspet"), default="val")
    ap.add_argument("--persons", type=int, default=None)
    ap.add_argument("--model", default="accurate-float")
    args = ap.parse_args()
    records, gt = world(args.world, args.persons)
    plain, flipped = posed(args.model, records, False), posed(args.model, records, True)
    q_plain = np.array([p.pose_quality for p in plain.people])
    q_flip = np.array([p.pose_quality for p in flipped.people])
    print(f"{args.world}: {len(records)} persons, GT boxes, {args.model}")
    print("t | flipped | crops/person | AP | pose ECE (floor, p90)")
    rows = [("never", np.zeros(len(records), bool)), ("always", np.ones(len(records), bool))]
    rows += [(f"{t:.1f}", q_plain < t) for t in THRESHOLDS]
    for name, unsure in rows:
        kp = np.where(unsure[:, None, None], flipped.keypoints, plain.keypoints)
        conf = np.where(unsure[:, None], keypoint_confidence(flipped), keypoint_confidence(plain))
        quality = np.where(unsure, q_flip, q_plain)
        a, e, (floor, p90) = scored(gt, records, kp, conf, quality)
        crops = 2.0 if name == "always" else 1 + 2 * unsure.mean()   # the flip always: one pass of 2 crops
        print(f"{name} | {unsure.mean():.3f} | {crops:.2f} | {a:.1f} | {e:.4f} ({floor:.4f}, {p90:.4f})")


if __name__ == "__main__":
    main()
