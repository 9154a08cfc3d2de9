"""`posecal eval`: predictions on a COCO keypoint file and COCO AP per pose-score mode (pycocotools)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posecal.checkpoint import load_model
from posecal.data.coco import load_coco_persons
from posecal.errors import PosecalInputError
from posecal.inference import predict_records
from posecal.io import write_json_atomic
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt


@dataclass
class EvalConfig:
    annotations: str
    images: str
    out: str
    model: str | None = None       # None: the shipped default model
    boxes: str | None = None       # COCO detection results JSON; None: GT boxes
    flip: bool = True
    decode: str = "dark"
    batch_size: int = 32
    threads: int = 2
    progress: bool = True


def pose_scores(heatmap_scores: np.ndarray) -> dict[str, np.ndarray]:
    """Pose-score modes computable from the keypoint heatmap peaks (N, K)."""
    return {"heatmap": heatmap_scores.mean(1)}


def evaluate(cfg: EvalConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    model, mcfg, _ = load_model(cfg.model)
    records = load_coco_persons(cfg.annotations, cfg.images, boxes_file=cfg.boxes)
    if not records:
        raise PosecalInputError(f"{cfg.annotations}: no person with labelled keypoints to evaluate")
    preds = predict_records(model, records, mcfg.input_wh, flip=cfg.flip, batch_size=cfg.batch_size,
                            decode_method=cfg.decode, progress=cfg.progress)
    image_ids = [r.image_id for r in preds.records]
    scores = pose_scores(preds.heatmap_scores)
    box_scores = np.array([r.score for r in preds.records])
    gt = load_coco_gt(cfg.annotations)
    metrics = {"num_instances": len(preds.records), "num_skipped": len(records) - len(preds.records),
               "boxes": "detections" if cfg.boxes else "gt", "flip_test": cfg.flip, "decode": cfg.decode,
               "ap": {}, "ap50": {}, "ap75": {}, "ar": {}}
    results = None
    for mode, s in scores.items():
        res = coco_keypoint_results(image_ids, preds.keypoints, preds.heatmap_scores, s * box_scores)
        ap = coco_keypoint_ap(gt, res)
        for key in ("ap", "ap50", "ap75", "ar"):
            metrics[key][mode] = round(ap[key], 3)
        if results is None:
            results = res
    for res, rec in zip(results, preds.records):
        res["file_name"] = rec.file_name
    metrics["seconds"] = round(time.time() - t0, 2)
    out = Path(cfg.out)
    write_json_atomic(results, out / "results.json", indent=None)
    write_json_atomic(metrics, out / "metrics.json")
    return metrics
