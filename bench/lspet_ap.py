"""Keypoint AP on LSPET (python bench/lspet_ap.py [--models accurate best FILE ...] [--persons 600]).

LSPET's 12 limb joints mapped onto COCO-17 (face keypoints unlabelled, so COCO's OKS counts the limbs only), GT
boxes, flip test, pose score = each model's own (predicted OKS), pycocotools' AP. LSPET has no held-out split
here: the shipped networks saw some of it in training (the `fast` network all of it, the trust model 4,000 of
its persons as augmented crops), so this compares models on sports poses rather than estimating unseen-data AP.
The persons: the last --persons images in file order (the same ones for every model). The accurate model's
fine-tune packed all of LSPET, these persons too; tools/pack_training_data.py now leaves them out by default
(--lspet-holdout 600), so a network trained on a newer pack is scored here on persons it never saw.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from posecal.data.coco import as_coco_file, load_lspet
from posecal.inference.scoring import keypoint_confidence, pose_scores
from posecal.inference.estimator import predict_records
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.models.checkpoint import load_model
from posecal.calibration.quality import calibration_from_meta

LSPET = Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["published", "accurate"])
    ap.add_argument("--persons", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = load_lspet(LSPET / "annotations" / "lspet.json", LSPET / "images")[-args.persons:]
    gt = load_coco_gt(as_coco_file(records))
    print(f"LSPET, last {len(records)} persons, GT boxes, flip test, pose score oks")
    for name in args.models:
        model, cfg, meta = load_model(name)
        cal = calibration_from_meta(meta, name)
        pred = predict_records(model, records, cfg.input_wh, flip=True, progress=False, calibration=cal)
        score = pose_scores(pred)["oks"]
        res = coco_keypoint_results([r.image_id for r in pred.records], pred.keypoints, keypoint_confidence(pred),
                                    score)
        m = coco_keypoint_ap(gt, res)
        print(f"{name}: AP {m['ap']:.1f}, AP50 {m['ap50']:.1f}, AP75 {m['ap75']:.1f}, AR {m['ar']:.1f}")


if __name__ == "__main__":
    main()
