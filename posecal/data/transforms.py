"""Top-down crop geometry and augmentation.

Coordinate convention: integer coordinates are pixel centres (COCO keypoints and cv2.warpAffine agree).
A box of width w centred at c maps to an output of W pixels so that the box edges land on the output's
pixel edges (-0.5 and W-0.5). The same formula at 1/4 resolution gives the heatmap frame, so image,
crop and heatmap coordinates convert exactly, and a horizontal flip is x -> W-1-x in every frame
(no ad-hoc one-pixel shift is needed in flip testing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from posecal.skeleton import LOWER_BODY, UPPER_BODY, flip_permutation

PADDING = 1.25


def box_to_center_scale(box_xywh, aspect: float, padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Person box [x, y, w, h] -> centre and region size (w, h) with aspect w/h = `aspect`, padded."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box must have positive finite width and height, got {list(box_xywh)}")
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h]) * padding


def crop_matrix(center, size, rotation_deg: float, out_wh) -> np.ndarray:
    """2x3 matrix mapping image pixels to an output of out_wh pixels covering `size` around `center`.

    Rotation is counter-clockwise in degrees (a positive angle turns the person anticlockwise in the crop).
    """
    out_w, out_h = out_wh
    s = out_w / float(size[0])
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    rot = np.array([[cos, sin], [-sin, cos]])
    out_c = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    t = out_c - rot @ np.asarray(center, dtype=np.float64)
    return np.hstack([rot, t[:, None]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map (..., 2) points with a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp(image: np.ndarray, m: np.ndarray, out_wh) -> np.ndarray:
    return cv2.warpAffine(image, m, (int(out_wh[0]), int(out_wh[1])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def flip_keypoints(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Mirror (K, >=2) keypoints in a frame `width` pixels wide and swap left/right joints."""
    out = np.array(keypoints, dtype=np.float64, copy=True)
    out[:, 0] = width - 1 - out[:, 0]
    return out[flip_permutation(len(out))]


@dataclass
class AugmentConfig:
    flip_prob: float = 0.5
    scale_range: float = 0.35
    rotation_max: float = 45.0
    rotation_prob: float = 0.6
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    color_jitter: float = 0.3


def half_body_region(keypoints: np.ndarray, aspect: float, rng: np.random.Generator):
    """Centre and size of an upper- or lower-body region, or None when too few joints are labelled."""
    labelled = keypoints[:, 2] > 0
    upper = [i for i in UPPER_BODY if labelled[i]]
    lower = [i for i in LOWER_BODY if labelled[i]]
    chosen = upper if (rng.random() < 0.5 and len(upper) > 2) or len(lower) < 3 else lower
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    w, h = hi - lo
    if w < 1 or h < 1:
        return None
    center, size = box_to_center_scale([lo[0], lo[1], w, h], aspect, padding=1.5)
    return center, size


def sample_augmentation(cfg: AugmentConfig, rng: np.random.Generator) -> tuple[float, float, bool]:
    """Draw (scale factor, rotation in degrees, flip)."""
    scale = float(np.clip(1 + rng.normal() * cfg.scale_range / 2, 1 - cfg.scale_range, 1 + cfg.scale_range))
    rot = 0.0
    if rng.random() < cfg.rotation_prob:
        rot = float(np.clip(rng.normal() * cfg.rotation_max / 2, -cfg.rotation_max, cfg.rotation_max))
    return scale, rot, bool(rng.random() < cfg.flip_prob)


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation in [1-strength, 1+strength] (uint8 in, uint8 out)."""
    if strength <= 0:
        return image
    img = image.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img *= b
    mean = img.mean()
    img = (img - mean) * c + mean
    gray = img.mean(axis=2, keepdims=True)
    img = (img - gray) * s + gray
    return np.clip(img, 0, 255).astype(np.uint8)
