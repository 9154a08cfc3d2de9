"""The calibration step of producing a shipped model (`posecal pack --calibrate-on ANN --images DIR`).

Runs the model's raw heads on a labelled set the pose network never trained on, reports how calibrated
the outputs are before and after with 5-fold cross-fitting (each person's calibrated outputs come from
maps fitted on the other folds, folds split by original photograph so that no photo is on both sides),
then fits the maps on the whole set for shipping. Re-running it after retraining re-calibrates the model.
"""
from __future__ import annotations

import numpy as np

from posecal.calibration.quality import QualityCalibration, cross_fit, fit_quality_calibration, truth_of
from posecal.data.coco import load_coco_persons, read_coco
from posecal.errors import PosecalInputError
from posecal.inference.estimator import predict_records
from posecal.metrics.calibration import ece, pearson
from posecal.metrics.visibility import binary_report

FOLDS = 5


def photo_groups(annotations, ann_ids) -> np.ndarray:
    """The original photograph of each person (`orig_image_id` of crop data sets, else `image_id`)."""
    data = read_coco(annotations)
    photo = {a["id"]: a.get("orig_image_id", a["image_id"]) for a in data["annotations"]}
    return np.array([photo.get(int(i), -1 - n) for n, i in enumerate(ann_ids)])


def summary(raw: dict, keypoints, boxes, gt, area) -> dict:
    """Keypoint ECE, pose ECE and Pearson, visibility NLL and binary F1, and radius coverage of outputs."""
    ks, labelled, gt_oks = truth_of(keypoints, gt, area)
    has = np.isfinite(gt_oks)
    v = np.asarray(gt)[..., 2].astype(int)
    probs = raw["visibility_probs"].reshape(-1, raw["visibility_probs"].shape[-1])
    out = {"keypoint_ece": ece(raw["opks"][labelled], ks[labelled]),
           "pose_ece": ece(np.clip(raw["oks"][has], 0, 1), gt_oks[has]),
           "pose_pearson": pearson(raw["oks"][has], gt_oks[has]),
           "visibility_nll": float(-np.log(np.clip(probs[np.arange(v.size), v.ravel()], 1e-12, None)).mean()),
           "visibility_binary_f1": binary_report(v > 0, raw["visibility_probs"].argmax(-1) > 0)["f1"]}
    if "keypoint_radius" in raw:
        err = np.linalg.norm(np.asarray(keypoints) - np.asarray(gt)[..., :2], axis=-1)
        inside = err <= raw["keypoint_radius"]
        per_type = [inside[labelled[:, k], k].mean() for k in range(labelled.shape[1])]
        out |= {"radius_coverage": float(inside[labelled].mean()), "radius_coverage_min": float(min(per_type)),
                "radius_coverage_max": float(max(per_type))}
    return {k: round(float(v), 4) for k, v in out.items()}


def calibrate_model(model, cfg, annotations, images, flip: bool = True, batch_size: int = 32,
                    progress: bool = True) -> tuple[QualityCalibration, dict]:
    """(calibration fitted on every person, {"raw": ..., "cross_fitted": ...} summaries)."""
    if not model.has_quality_heads:
        raise PosecalInputError("calibration needs a model with quality heads (this one has only heatmaps)")
    records = load_coco_persons(annotations, images)
    if not records:
        raise PosecalInputError(f"{annotations}: no person with labelled keypoints to calibrate on")
    pred = predict_records(model, records, cfg.input_wh, flip=flip, batch_size=batch_size, progress=progress)
    if len(pred.records) < 2 * FOLDS:
        raise PosecalInputError(f"{annotations}: {len(pred.records)} readable persons; calibration needs "
                                f"at least {2 * FOLDS}")
    gt = np.stack([r.keypoints for r in pred.records])
    area = np.array([r.area for r in pred.records])
    boxes = np.stack([r.bbox for r in pred.records])
    raw = {"oks": pred.oks, "opks": pred.opks, "visibility_probs": pred.visibility_probs}
    args = (pred.oks, pred.opks, pred.visibility_probs, pred.keypoints, boxes, gt, area)
    groups = photo_groups(annotations, [r.ann_id for r in pred.records])
    honest = cross_fit(*args, folds=FOLDS, groups=groups)
    report = {"persons": len(pred.records), "folds": FOLDS,
              "raw": summary(raw, pred.keypoints, boxes, gt, area),
              "cross_fitted": summary(honest, pred.keypoints, boxes, gt, area)}
    cal = fit_quality_calibration(*args, source=str(annotations))
    cal.fit_info["cross_fitted"] = report
    return cal, report
