"""posecal's own evidence at another estimator's keypoints: what `posecal calibrate fit|apply --images` adds to
the calibrator's inputs.

Two estimators that agree are likely right, and posecal sees the image where a score alone cannot: for each
result, posecal's model (the shipped default) runs on the result's own box, through the same crop and inference
path as `posecal eval` (`predict_records`), and per keypoint gives
- its heatmap value at the estimator's keypoint (the point mapped into the heatmap's pixels, bilinear),
- the distance from the estimator's keypoint to posecal's, relative to the person's size (sqrt of box area),
- its visibility probabilities (not labelled / occluded / visible, the model's stored calibration applied).
posecal's outputs are kept in memory per (image, box), so asking again for the same person costs nothing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from posecal.calibration.conformal import person_scale
from posecal.calibration.quality import calibration_from_meta
from posecal.models.checkpoint import SHIPPED_MODELS, load_model, model_file, require_coco_keypoints
from posecal.data.coco import PersonRecord
from posecal.data.topdown import input_to_heatmap
from posecal.data.transforms import apply_affine
from posecal.errors import PosecalInputError
from posecal.inference.topdown import predict_records

EVIDENCE_INPUTS = ("heatmap value", "distance", "visibility probs")


@dataclass
class Evidence:
    """Per result (N) and keypoint (K)."""

    heatmap_value: np.ndarray      # (N, K) posecal's heatmap at the estimator's keypoint
    distance: np.ndarray           # (N, K) |estimator's keypoint - posecal's| / sqrt(box area)
    visibility_probs: np.ndarray   # (N, K, 3)


def heatmap_values(heatmaps, matrices, points) -> np.ndarray:
    """(N, K, h, w) heatmaps of crops made with (N, 2, 3) image -> input matrices, read at (N, K, 2) image
    points: bilinear, 0 outside the heatmap."""
    hm = np.asarray(heatmaps, np.float64)
    n, k = hm.shape[:2]
    xy = input_to_heatmap(np.stack([apply_affine(p, m) for p, m in zip(np.asarray(points, np.float64), matrices)]))
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    coords = np.stack([ni.ravel(), ki.ravel(), xy[..., 1].ravel(), xy[..., 0].ravel()])
    return map_coordinates(hm, coords, order=1, mode="constant", cval=0.0).reshape(n, k)


def evidence_at(points, boxes, own_keypoints, visibility_probs, heatmaps, matrices) -> Evidence:
    """Evidence at (N, K, 2) estimator keypoints of persons in (N, 4) boxes, from posecal's outputs on those
    boxes: its keypoints (N, K, 2) in image pixels, visibility probabilities, heatmaps and crop matrices."""
    points = np.asarray(points, np.float64)
    dist = np.linalg.norm(points - np.asarray(own_keypoints), axis=-1) / person_scale(boxes)[:, None]
    return Evidence(heatmap_values(heatmaps, matrices, points), dist, np.asarray(visibility_probs, np.float64))


def model_fingerprint(path) -> str:
    """First 16 hex digits of the model file's sha256: which posecal model the evidence came from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class PosecalEvidence:
    """posecal's model (default: the shipped one) as a source of evidence; posecal's outputs are cached per
    (image file, box) for the life of this object (memory only)."""

    def __init__(self, model_path=None, flip: bool = False, batch_size: int = 16, progress: bool = False):
        # the fast shipped model by default: evidence for another estimator's results, at a few ms a person
        path = model_file(model_path) if model_path else SHIPPED_MODELS["fast"]
        self.model, self.config, meta = load_model(path)
        require_coco_keypoints(self.config, path)
        if not self.model.has_quality_heads:
            raise PosecalInputError(f"{path}: posecal's evidence needs a model with visibility heads")
        self.calibration = calibration_from_meta(meta, str(path))
        self.description = {"model": path.name, "sha256_16": model_fingerprint(path), "flip_test": flip}
        self.flip, self.batch_size, self.progress = flip, batch_size, progress
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, image_paths: list[str], boxes, points) -> Evidence:
        """Evidence for N persons: their image files, (N, 4) x, y, w, h boxes and (N, K, 2) estimator keypoints."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        keys = [(str(p), tuple(np.round(b, 3))) for p, b in zip(image_paths, boxes)]
        todo = list(dict.fromkeys(key for key in keys if key not in self._cache))
        if todo:
            records = [PersonRecord(p, i, np.array(b), np.zeros((len(points[0]), 3)), float(b[2] * b[3]))
                       for i, (p, b) in enumerate(todo)]
            pred = predict_records(self.model, records, self.config.input_wh, flip=self.flip,
                                   batch_size=self.batch_size, progress=self.progress, calibration=self.calibration,
                                   keep_heatmaps=True)
            if len(pred.records) < len(records):
                bad = sorted({r.image_path for r in records} - {r.image_path for r in pred.records})
                raise PosecalInputError(f"{bad[0]}: image could not be read for posecal's evidence"
                                        + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
            for j, r in enumerate(pred.records):
                self._cache[todo[r.image_id]] = (pred.keypoints[j], pred.visibility_probs[j], pred.heatmaps[j],
                                                 pred.matrices[j])
        own, probs, maps, mats = (np.stack(v) for v in zip(*(self._cache[key] for key in keys)))
        return evidence_at(points, boxes, own, probs, maps, mats)
