"""The calibrated estimate of every labelled person that the audit holds the labels against: from posecal's
model on the persons' boxes (GT boxes by default), or from any estimator's calibrated COCO keypoint results.

One array set per annotation (aligned by annotation id), so the labels can be swapped for another version of
the same file (a corrected or a corrupted one) without running the model again: `save` / `load` keep it in an
.npz file.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from posecal.data.coco import image_file, read_json
from posecal.errors import PosecalInputError
from posecal.evaluation.results import RADIUS_TARGET, ResultSet, gt_persons, load_results, match_annotations, \
    result_boxes
from posecal.inference.topdown import Predictions
from posecal.io import write_atomic
from posecal.metrics.coco_ap import load_coco_gt

TRUST_FIELDS = ("pose_quality", "visibility_probs", "keypoint_radius")


@dataclass
class Estimates:
    """N persons, each standing for one annotation."""

    annotation_ids: np.ndarray     # (N,)
    image_paths: np.ndarray        # (N,) str ("" where unknown)
    boxes: np.ndarray              # (N, 4) the box the estimate was made in
    keypoints: np.ndarray          # (N, K, 2) image pixels
    visibility_probs: np.ndarray   # (N, K, 3) absent / occluded / visible, calibrated
    keypoint_radius: np.ndarray    # (N, K) pixels holding the true keypoint with probability radius_coverage
    pose_quality: np.ndarray       # (N,) expected OKS
    radius_coverage: float
    heatmap_scores: np.ndarray | None = None   # (N, K) raw heatmap peaks (model path only)

    def save(self, path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        write_atomic(path, lambda f: np.savez_compressed(f, **arrays))

    @classmethod
    def load(cls, path) -> "Estimates":
        with np.load(path, allow_pickle=False) as z:
            kw = {k: z[k] for k in z.files}
        kw["radius_coverage"] = float(kw["radius_coverage"])
        return cls(**kw)


def from_predictions(pred: Predictions, coverage: float) -> Estimates:
    """posecal's calibrated predictions on GT boxes: each record is its annotation."""
    if pred.keypoint_radius is None or pred.visibility_probs is None or pred.visibility_probs.shape[-1] != 3:
        raise PosecalInputError("the audit needs a calibrated model with ternary visibility and keypoint radii "
                                "(the shipped models have them)")
    return Estimates(np.array([r.ann_id for r in pred.records]), np.array([r.image_path for r in pred.records]),
                     np.array([r.bbox for r in pred.records], np.float64).reshape(-1, 4), pred.keypoints,
                     pred.visibility_probs, pred.keypoint_radius, pred.oks, coverage, pred.heatmap_scores)


def from_result_set(res: ResultSet, annotations, images=None, source: str = "results",
                    coverage: float = RADIUS_TARGET) -> Estimates:
    """Results matched to the annotations' persons (as `posecal eval --results` matches them); each matched
    result stands for its annotation. The trust fields are those `posecal calibrate apply` adds."""
    missing = [f for f in TRUST_FIELDS if getattr(res, f) is None]
    if missing:
        raise PosecalInputError(f"{source}: every entry needs {', '.join(missing)} (calibrated results: run "
                                "`posecal calibrate apply` on them first)")
    if res.visibility_probs.shape[-1] != 3:
        raise PosecalInputError(f"{source}: 'visibility_probs' must have 3 classes (absent, occluded, visible)")
    gt = load_coco_gt(annotations)
    idx, anns = match_annotations(res, gt_persons(gt))
    if not len(idx):
        raise PosecalInputError(f"{source}: no result matches a labelled person of {annotations}")
    files = {int(im["id"]): im.get("file_name", "") for im in gt.dataset.get("images", [])}
    paths = [image_file(images, files[int(a["image_id"])]) if images and files.get(int(a["image_id"])) else ""
             for a in anns]
    return Estimates(np.array([int(a["id"]) for a in anns]), np.array(paths, dtype=str), result_boxes(res)[idx],
                     res.keypoints[idx], res.visibility_probs[idx], res.keypoint_radius[idx],
                     res.pose_quality[idx], coverage)


def from_results_file(results, annotations, images=None) -> Estimates:
    read_json(annotations)   # a missing or broken file is one line, not a pycocotools traceback
    return from_result_set(load_results(results), annotations, images, str(results))
