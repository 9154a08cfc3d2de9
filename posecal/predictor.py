"""Python API: `Predictor()(image, boxes)` -> typed per-person results with numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posecal.checkpoint import load_model
from posecal.data.coco import read_image
from posecal.data.topdown import to_tensor
from posecal.data.transforms import apply_affine, box_to_center_scale, crop_matrix, invert_affine, warp
from posecal.errors import PosecalInputError
from posecal.inference import infer_crops
from posecal.scoring import opks_pose_score


@dataclass
class PersonPose:
    """One person. Coordinates are image pixels (integer = pixel centre, as COCO)."""

    box: np.ndarray                    # (4,) x, y, w, h
    keypoints: np.ndarray              # (K, 2)
    keypoint_quality: np.ndarray       # (K,) predicted OPKS in [0, 1] (heatmap peak for models without heads)
    heatmap_scores: np.ndarray         # (K,) heatmap peak values (the classic "confidence")
    pose_quality: float                # predicted OKS of the pose (mean heatmap peak without heads)
    visibility: np.ndarray | None = None        # (K,) 0 not labelled / 1 occluded / 2 visible
    visibility_probs: np.ndarray | None = None  # (K, 3)
    box_score: float = 1.0


class Predictor:
    """Top-down pose estimation with calibrated quality. Images are RGB numpy arrays or file paths."""

    def __init__(self, model_path=None, device: str = "cpu", flip: bool = True, batch_size: int = 16):
        self.model, self.config, self.meta = load_model(model_path, device=device)
        self.device, self.flip, self.batch_size = device, flip, batch_size

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", **kwargs) -> "Predictor":
        return cls(path, device=device, **kwargs)

    def __call__(self, image, boxes=None, box_scores=None) -> list[PersonPose]:
        bgr = read_image(image) if isinstance(image, (str, Path)) else _rgb_to_bgr(image)
        h, w = bgr.shape[:2]
        boxes = np.array([[0, 0, w, h]], float) if boxes is None else np.asarray(boxes, float).reshape(-1, 4)
        box_scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, float)
        if len(boxes) == 0:
            return []
        aspect = self.config.input_wh[0] / self.config.input_wh[1]
        crops, mats = [], []
        for box in boxes:
            try:
                center, size = box_to_center_scale(box, aspect)
            except ValueError as e:
                raise PosecalInputError(f"box {box.tolist()}: {e}") from None
            m = crop_matrix(center, size, 0.0, self.config.input_wh)
            crops.append(to_tensor(warp(bgr, m, self.config.input_wh)))
            mats.append(m)
        people = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack(crops[start:start + self.batch_size]).to(self.device)
            res = infer_crops(self.model, batch, self.flip)
            for j in range(len(batch)):
                i = start + j
                xy = apply_affine(res["xy"][j], invert_affine(mats[i]))
                hs = res["heatmap_scores"][j]
                if "opks" in res:
                    probs = res["visibility_probs"][j]
                    quality = float(opks_pose_score(res["opks"][j], probs))
                    people.append(PersonPose(boxes[i], xy, res["opks"][j], hs, quality, probs.argmax(-1), probs,
                                             float(box_scores[i])))
                else:
                    people.append(PersonPose(boxes[i], xy, hs, hs, float(hs.mean()), box_score=float(box_scores[i])))
        return people


def _rgb_to_bgr(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        raise PosecalInputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, 2::-1])
