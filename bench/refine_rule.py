"""Which kept people a staged crop should refine (issue 90 item 2): AP and pose trust when only the looks whose pose
quality is below T get the refinement (the mirror pass), for several T, on labelled boxes.

    python bench/refine_rule.py [--world val|lspet] [--model accurate] [--precision float] [--threads 2]
                                [--thresholds 0 0.5 0.6 0.7 0.8 0.9 1.01]

Each person is posed once as a look and once refined (posecal's Estimator.look, then Estimator.refine: the
product's two stages), GT boxes, pose score = pose quality; T = 1.01 refines everyone (the flip test as it
was), T = 0 no one (no flip test). For each T: COCO AP (pycocotools), pose ECE of the reported quality against
the true OKS beside its floor (truth redrawn around the quality with its bin's spread), Pearson r, and the share
refined (the mirror pass costs about one pose pass a refined person). Worlds: `val` (822 COCO val crops: where
the rule is chosen), `lspet` (LSPET's last 600 persons, never trained on by the trust model or in the pose
network's newer packs: where it is judged).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from posecal.data.coco import as_coco_file, load_coco_persons, load_lspet
from posecal.data.images import read_image
from posecal.inference.estimator import runs_of_one_picture
from posecal.inference.predictor import Predictor
from posecal.metrics.calibration import ece, ece_floor, pearson
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.metrics.oks import oks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def world_records(world: str):
    if world == "val":
        d = SHARED / "coco-val2017-crops"
        return load_coco_persons(d / "annotations" / "val.json", d / "images")
    d = SHARED / "lspet"
    return load_lspet(d / "annotations" / "lspet.json", d / "images")[-600:]


def looks_and_refined(predictor: Predictor, records, chunk: int = 48):
    """(looks, refined): a PersonPose per record, as the look and as its refinement."""
    est = predictor.estimator
    looks, refined = [], []
    for start in range(0, len(records), chunk):
        prepared = [(read_image(path), np.array([r.bbox for r in group], float), np.ones(len(group)))
                    for path, group in runs_of_one_picture(records[start:start + chunk])]
        people = [p for ps in est.look(prepared) for p in ps]
        before = [copy.copy(p) for p in people]
        for b in before:
            b.look = None
        est.refine(people)
        looks += before
        refined += people
    return looks, refined


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="val", choices=("val", "lspet"))
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--precision", default="float")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01])
    args = ap.parse_args()
    records = world_records(args.world)
    predictor = Predictor(args.model, precision=args.precision, threads=args.threads, detector=None)
    if not predictor.estimator.staged:
        raise SystemExit(f"{args.model} ({predictor.precision}) has no look and refine graphs")
    looks, refined = looks_and_refined(predictor, records)
    gt = load_coco_gt(as_coco_file(records))
    truth = lambda people: np.array([oks(p.keypoints, r.keypoints[:, :2], r.keypoints[:, 2], r.area)  # noqa: E731
                                     for p, r in zip(people, records)])
    t_look, t_ref = truth(looks), truth(refined)
    q_look = np.array([p.pose_quality for p in looks])
    print(f"{args.world}: {len(records)} persons, GT boxes, {args.model} {predictor.precision}")
    print("T     refined  AP    pose ECE (floor, p90)   r")
    for t in args.thresholds:
        pick = q_look < t
        people = [r if k else lk for lk, r, k in zip(looks, refined, pick)]
        q = np.array([p.pose_quality for p in people])
        true = np.where(pick, t_ref, t_look)
        res = coco_keypoint_results([r.image_id for r in records], np.stack([p.keypoints for p in people]),
                                    np.stack([p.keypoint_quality for p in people]), q)
        m = coco_keypoint_ap(gt, res)
        floor, p90 = ece_floor(q, true)
        print(f"{t:<5.2f} {pick.mean():6.1%}  {m['ap']:4.1f}  {ece(q, true):.4f} ({floor:.4f}, {p90:.4f})  "
              f"{pearson(q, true):.3f}")


if __name__ == "__main__":
    main()
