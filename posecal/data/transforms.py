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

from posecal.skeleton import COCO_LIMBS, LOWER_BODY, UPPER_BODY, flip_permutation

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


def rotated_box(box_xywh, rotation_deg: float) -> np.ndarray:
    """Axis-aligned box [x, y, w, h] of `box_xywh` turned by `rotation_deg` about its centre."""
    x, y, w, h = (float(v) for v in box_xywh)
    c, s = abs(math.cos(math.radians(rotation_deg))), abs(math.sin(math.radians(rotation_deg)))
    rw, rh = w * c + h * s, w * s + h * c
    return np.array([x + (w - rw) / 2, y + (h - rh) / 2, rw, rh])


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


def person_crop_matrix(box_xywh, input_wh, rotation_deg: float = 0.0) -> np.ndarray:
    """Inference crop of a person box, turned by `rotation_deg` (counter-clockwise).

    The region is fitted to the box *as it appears after the turn* (`rotated_box`): a lying person turned by 90°
    stands upright in a portrait crop that holds all of them, instead of being cut at both ends by the upright
    box's frame. This is the geometry the pose network was trained on (augment.rotation_rebox).
    """
    box = rotated_box(box_xywh, rotation_deg) if rotation_deg else box_xywh
    center, size = box_to_center_scale(box, input_wh[0] / input_wh[1])
    return crop_matrix(center, size, rotation_deg, input_wh)


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
    """Training augmentation. The defaults are the first model's recipe; configs/pose_all.yaml adds the
    full-circle rotation, truncation and occluders that people in sports photos and cut-off frames need."""

    flip_prob: float = 0.5
    scale_range: float = 0.35
    rotation_max: float = 45.0
    rotation_prob: float = 0.6
    # With this probability the rotation is uniform over the full circle instead (upside-down, lying people).
    rotation_full_prob: float = 0.0
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    color_jitter: float = 0.3
    # Truncation: the image is cut on one side of the person (as by a photo's border); the box shrinks to
    # what is left and the keypoints beyond the cut become absent (v = 0).
    truncation_prob: float = 0.0
    truncation_range: tuple[float, float] = (0.2, 0.55)   # fraction of the box cut away
    # Synthetic occluders pasted over body parts; labelled keypoints they cover become occluded (v = 1).
    occluder_prob: float = 0.0
    occluder_max: int = 3
    occluder_size: tuple[float, float] = (0.12, 0.4)     # side, as a fraction of the crop height
    # Re-box rotated people: the crop covers the box of the rotated person (what a detector gives for a lying or
    # upside-down person) instead of the upright box turned with the picture, whose 3:4 frame cuts a person at
    # 90 degrees at both ends and never shows a whole one lying down.
    rotation_rebox: bool = False
    # Detector-like boxes: the box's centre moves by N(0, box_jitter) of its width/height and each side scales by
    # exp(N(0, box_jitter)), as a detector's box differs from the annotator's (the trust model must judge
    # keypoints in crops framed the way users' crops are framed, not only around GT boxes).
    box_jitter: float = 0.0
    # Video-like degradation of the crop: Gaussian or motion blur, JPEG recompression at quality 15-60.
    blur_prob: float = 0.0
    jpeg_prob: float = 0.0
    # Video-like resolution: with small_prob the crop is shrunk until the person is small_height[0..1] px tall (a
    # person far from a camera) and enlarged back, so the network sees the detail such a person has; and sensor
    # noise (Gaussian, sigma 2-8 grey levels) with noise_prob. Trust learnt on full-resolution photos alone
    # over-trusts keypoints of small, blurred people in video.
    small_prob: float = 0.0
    small_height: tuple[float, float] = (40.0, 200.0)
    noise_prob: float = 0.0
    # People in front: with paste_person_prob another training person is pasted over or beside the
    # target (a soft mask drawn from its labelled skeleton, its size paste_person_scale times the target's, its
    # centre moved sideways by paste_person_shift of the crop's width, either way); the target's labelled
    # keypoints it covers become occluded. The commonest occluder in COCO's photos is another person, and the
    # pasted person's joints are known, so the loss can also tell the network not to answer with them.
    paste_person_prob: float = 0.0
    paste_person_scale: tuple[float, float] = (0.8, 1.25)
    paste_person_shift: tuple[float, float] = (0.2, 0.6)


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
    if cfg.rotation_full_prob > 0 and rng.random() < cfg.rotation_full_prob:
        rot = float(rng.uniform(-180.0, 180.0))
    elif rng.random() < cfg.rotation_prob:
        rot = float(np.clip(rng.normal() * cfg.rotation_max / 2, -cfg.rotation_max, cfg.rotation_max))
    return scale, rot, bool(rng.random() < cfg.flip_prob)


# Sides a person is cut on, with their odds: photos cut people at the bottom far more often than elsewhere.
TRUNCATION_SIDES = (("bottom", 0.55), ("top", 0.1), ("left", 0.175), ("right", 0.175))


def cut_line(box_xywh, side: str, fraction: float) -> float:
    """Image coordinate (x for left/right, y for top/bottom) where cutting `fraction` of the box on `side` falls."""
    x, y, w, h = (float(v) for v in box_xywh)
    return {"bottom": y + h * (1 - fraction), "top": y + h * fraction,
            "right": x + w * (1 - fraction), "left": x + w * fraction}[side]


def truncate(image: np.ndarray, box_xywh, keypoints: np.ndarray, side: str, line: float):
    """Cut the image at `line` on `side` of the person, as if the photo ended there.

    Pixels beyond the line become black (what the crop shows past a real border), the box shrinks to the part
    that is left and keypoints beyond the line become absent (v = 0). Returns (image, box, keypoints).
    """
    img = image.copy()
    kp = np.array(keypoints, dtype=np.float64, copy=True)
    x0, y0, w, h = (float(v) for v in box_xywh)
    x1, y1 = x0 + w, y0 + h
    c = int(np.clip(np.ceil(line - 0.5), 0, img.shape[1] if side in ("left", "right") else img.shape[0]))
    if side == "bottom":
        img[c:] = 0
        y1, gone = min(y1, line), kp[:, 1] > line
    elif side == "top":
        img[:c] = 0
        y0, gone = max(y0, line), kp[:, 1] < line
    elif side == "right":
        img[:, c:] = 0
        x1, gone = min(x1, line), kp[:, 0] > line
    elif side == "left":
        img[:, :c] = 0
        x0, gone = max(x0, line), kp[:, 0] < line
    else:
        raise ValueError(f"side must be bottom/top/left/right, got {side!r}")
    kp[gone, 2] = 0
    return img, np.array([x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)]), kp


def sample_truncation(cfg: AugmentConfig, box_xywh, rng: np.random.Generator):
    """(side, line) of a random cut, or None when this sample is not truncated."""
    if cfg.truncation_prob <= 0 or rng.random() >= cfg.truncation_prob:
        return None
    names, odds = zip(*TRUNCATION_SIDES)
    side = names[rng.choice(len(names), p=np.array(odds) / sum(odds))]
    return side, cut_line(box_xywh, side, float(rng.uniform(*cfg.truncation_range)))


def paste_occluders(crop: np.ndarray, keypoints: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator):
    """Paste 1..occluder_max occluders over labelled keypoints of an input crop (in place on a copy).

    Each occluder is a rectangle or ellipse centred near a random labelled keypoint, filled with a patch of
    the crop taken elsewhere (texture that looks like scene or clothing) or a noisy random colour. Returns the
    new crop and a (K,) bool mask of the keypoints whose pixel is covered. Keypoints keep their heatmap target
    (the position is known); their visibility target becomes occluded.
    """
    h, w = crop.shape[:2]
    out = crop.copy()
    covered = np.zeros(len(keypoints), dtype=bool)
    labelled = np.flatnonzero(keypoints[:, 2] > 0)
    if len(labelled) == 0:
        return out, covered
    for _ in range(int(rng.integers(1, cfg.occluder_max + 1))):
        ow = int(max(4, rng.uniform(*cfg.occluder_size) * h))
        oh = int(max(4, ow * rng.uniform(0.5, 2.0)))
        ow, oh = min(ow, w), min(oh, h)
        cx, cy = keypoints[rng.choice(labelled), :2] + rng.normal(0, 0.05 * h, 2)
        x0 = int(np.clip(round(cx - ow / 2), 0, w - ow))
        y0 = int(np.clip(round(cy - oh / 2), 0, h - oh))
        if rng.random() < 0.5:
            sx, sy = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
            patch = crop[sy:sy + oh, sx:sx + ow].astype(np.float32)
        else:
            patch = rng.uniform(0, 255, 3)[None, None, :] + rng.normal(0, 20, (oh, ow, 1))
        mask = np.zeros((oh, ow), np.uint8)
        if rng.random() < 0.5:
            mask[:] = 1
        else:
            cv2.ellipse(mask, (ow // 2, oh // 2), (max(ow // 2, 1), max(oh // 2, 1)), 0, 0, 360, 1, -1)
        region = out[y0:y0 + oh, x0:x0 + ow]
        region[mask > 0] = np.clip(patch, 0, 255).astype(np.uint8)[mask > 0]
        full = np.zeros((h, w), bool)
        full[y0:y0 + oh, x0:x0 + ow] = mask > 0
        px = np.round(keypoints[:, 0]).astype(int)
        py = np.round(keypoints[:, 1]).astype(int)
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        covered[inside] |= full[py[inside], px[inside]]
    covered &= keypoints[:, 2] > 0
    return out, covered


def person_mask(keypoints: np.ndarray, wh, height: float) -> np.ndarray:
    """A soft (H, W) float mask in [0, 1] of a person drawn from its labelled keypoints (K, 3) in a frame of wh
    pixels: limbs as thick lines, joints as discs, the torso filled, the head a disc; `height` (the person's
    height in the frame's pixels) sets the thickness. Edges are blurred so that a pasted person blends in."""
    w, h = int(wh[0]), int(wh[1])
    mask = np.zeros((h, w), np.float32)
    labelled = keypoints[:, 2] > 0
    t = max(2, int(round(0.09 * height)))
    pts = np.round(keypoints[:, :2]).astype(np.int32)
    for a, b in COCO_LIMBS:
        if labelled[a] and labelled[b]:
            cv2.line(mask, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), 1.0, t, cv2.LINE_AA)
    for i in np.flatnonzero(labelled):
        cv2.circle(mask, tuple(int(v) for v in pts[i]), max(1, int(0.7 * t)), 1.0, -1, cv2.LINE_AA)
    torso = [5, 6, 12, 11]
    if labelled[torso].all():
        cv2.fillConvexPoly(mask, pts[torso], 1.0, cv2.LINE_AA)
    face = [i for i in range(5) if labelled[i]]
    if face:
        centre = np.round(keypoints[face, :2].mean(0)).astype(int)
        cv2.circle(mask, (int(centre[0]), int(centre[1])), max(2, int(1.3 * t)), 1.0, -1, cv2.LINE_AA)
    sigma = max(0.5, t / 4)
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma), 0.0, 1.0)


def paste_person(crop: np.ndarray, keypoints: np.ndarray, person: np.ndarray, mask: np.ndarray):
    """Blend `person` (a crop of another person, the same size as `crop`) over `crop` through `mask` (H, W in
    [0, 1]). Returns the new crop and a (K,) bool array of the labelled `keypoints` (in crop pixels) whose pixel
    the pasted person covers (mask > 0.5): they are hidden now, so their visibility becomes occluded."""
    h, w = crop.shape[:2]
    alpha = mask[..., None]
    out = np.clip(crop.astype(np.float32) * (1 - alpha) + person.astype(np.float32) * alpha + 0.5, 0, 255)
    px = np.round(keypoints[:, 0]).astype(int)
    py = np.round(keypoints[:, 1]).astype(int)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h) & (keypoints[:, 2] > 0)
    covered = np.zeros(len(keypoints), bool)
    covered[inside] = mask[py[inside], px[inside]] > 0.5
    return out.astype(np.uint8), covered


def inside_frame(xy: np.ndarray, wh) -> np.ndarray:
    """Points whose pixel lies in a frame of wh pixels (pixel edges at -0.5 and W-0.5)."""
    xy = np.asarray(xy)
    return (xy[:, 0] >= -0.5) & (xy[:, 0] < wh[0] - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] < wh[1] - 0.5)


def jitter_box(box_xywh, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A detector-like version of a box: centre shifted and sides scaled by random amounts of `strength`."""
    x, y, w, h = (float(v) for v in box_xywh)
    cx, cy = x + w / 2 + rng.normal() * strength * w, y + h / 2 + rng.normal() * strength * h
    w, h = w * math.exp(rng.normal() * strength), h * math.exp(rng.normal() * strength)
    return np.array([cx - w / 2, cy - h / 2, max(w, 1.0), max(h, 1.0)])


def shrink(crop: np.ndarray, factor: float) -> np.ndarray:
    """The crop at `factor` (< 1) of its resolution, enlarged back to its size: the detail a smaller picture has."""
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def degrade(crop: np.ndarray, blur_prob: float, jpeg_prob: float, rng: np.random.Generator,
            cfg: AugmentConfig | None = None, person_height: float | None = None) -> np.ndarray:
    """Low resolution (cfg.small_prob: the person shrunk to cfg.small_height px, given the person's height in the
    crop), blur (Gaussian, or a motion streak in a random direction), sensor noise (cfg.noise_prob) and/or JPEG
    recompression, in that order, as video frames show."""
    out = crop
    if cfg is not None and cfg.small_prob > 0 and person_height and rng.random() < cfg.small_prob:
        factor = float(rng.uniform(*cfg.small_height)) / person_height
        if factor < 1.0:
            out = shrink(out, factor)
    if blur_prob > 0 and rng.random() < blur_prob:
        if rng.random() < 0.5:
            out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.6, 2.0)))
        else:
            n = int(rng.integers(3, 10))
            kernel = np.zeros((n, n), np.float32)
            kernel[n // 2] = 1.0 / n
            turn = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
            kernel = cv2.warpAffine(kernel, turn, (n, n))
            out = cv2.filter2D(out, -1, kernel / max(float(kernel.sum()), 1e-6))
    if cfg is not None and cfg.noise_prob > 0 and rng.random() < cfg.noise_prob:
        noise = rng.normal(0.0, float(rng.uniform(2.0, 8.0)), out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if jpeg_prob > 0 and rng.random() < jpeg_prob:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(out), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 61))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation in [1-strength, 1+strength] (uint8 in, uint8 out)."""
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    # Brightness x b, contrast x c about the mean, saturation x s about each pixel's grey value, all linear:
    # out = b*c * (s*img + (1-s)*grey(img)) + b*mean*(1-c), one 3x4 colour matrix that cv2.transform applies in
    # a single pass (~20x faster than the same steps in float numpy, the data loader's largest cost). The
    # offset's -0.5 turns its rounding into (nearly) the truncation of the former numpy steps: the two differ
    # by at most one grey level.
    a = b * c
    m = a * (s * np.eye(3) + (1 - s) / 3.0 * np.ones((3, 3)))
    offset = b * float(image.mean()) * (1 - c) - 0.5
    return cv2.transform(image, np.hstack([m, np.full((3, 1), offset)]).astype(np.float32))
