"""Heatmap codec: Gaussian targets and argmax/DARK/soft-argmax decoding (the flip test's flip-back, which runs inside
the network's graph, is in heatmap_torch.py).

Heatmap coordinates follow posecal.data.transforms (integer = pixel centre), so a keypoint encoded at
(x, y) in heatmap pixels decodes back to (x, y) up to the decoder's sub-pixel precision.
"""
from __future__ import annotations

import cv2
import numpy as np

from posecal.errors import require


def encode(keypoints_hm: np.ndarray, visible: np.ndarray, hm_wh, sigma: float = 2.0):
    """Gaussian heatmaps (K, H, W) with peak 1 at each keypoint, and per-keypoint target weights.

    A keypoint gets weight 1 when labelled and its centre lies inside the heatmap (so the Gaussian
    peak is present); otherwise its heatmap is zero and it does not count in the loss.
    """
    w, h = int(hm_wh[0]), int(hm_wh[1])
    k = len(keypoints_hm)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    x, y = keypoints_hm[:, 0].astype(np.float32), keypoints_hm[:, 1].astype(np.float32)
    inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    weight = ((np.asarray(visible) > 0) & inside & np.isfinite(x) & np.isfinite(y)).astype(np.float32)
    x = np.where(weight > 0, x, 0)
    y = np.where(weight > 0, y, 0)
    gx = np.exp(-((xs[None, :] - x[:, None]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((ys[None, :] - y[:, None]) ** 2) / (2 * sigma ** 2))
    heatmaps = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
    return heatmaps.reshape(k, h, w).astype(np.float32), weight


def _argmax(heatmaps: np.ndarray):
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    return (idx % w).astype(np.int64), (idx // w).astype(np.int64), scores


def decode_argmax(heatmaps: np.ndarray):
    """(N, K, H, W) -> coords (N, K, 2) in heatmap pixels, scores (N, K): the arg-max cell, moved a quarter cell
    towards the higher neighbour in x and in y (not at the map's border), and the peak value."""
    heatmaps = np.asarray(heatmaps)
    n, k, h, w = heatmaps.shape
    px, py, scores = _argmax(heatmaps)

    def at(y, x):
        return heatmaps[np.arange(n)[:, None], np.arange(k)[None], y, x]

    dx = at(py, np.minimum(px + 1, w - 1)) - at(py, np.maximum(px - 1, 0))
    dy = at(np.minimum(py + 1, h - 1), px) - at(np.maximum(py - 1, 0), px)
    x = px + 0.25 * np.sign(dx) * ((px > 0) & (px < w - 1))
    y = py + 0.25 * np.sign(dy) * ((py > 0) & (py < h - 1))
    return np.stack([x, y], -1).astype(np.float64), scores


CV_MAX_CHANNELS = 128   # channels OpenCV 5 takes in one image (CV_CN_MAX)


def decode_dark(heatmaps: np.ndarray, blur_kernel: int = 11):
    """DARK decoding (Zhang et al. 2020): Gaussian-smooth, then a second-order Taylor step on log-heatmaps."""
    n, k, h, w = heatmaps.shape
    px, py, scores = _argmax(heatmaps)
    fallback, _ = decode_argmax(heatmaps)
    hm = heatmaps.reshape(n * k, h, w).astype(np.float64)
    blurred = np.empty_like(hm)
    # A crop's maps in one call, as the channels of one image (OpenCV takes up to CV_MAX_CHANNELS): the same
    # separable filter per map without a Python call per keypoint, and per crop, so that a crop's keypoints do
    # not depend on which other crops share its batch (Ray's workers batch differently from one process).
    per_call = k if k <= CV_MAX_CHANNELS else 1
    for start in range(0, n * k, per_call):
        stop = start + per_call
        chunk = np.ascontiguousarray(hm[start:stop].transpose(1, 2, 0))
        b = cv2.GaussianBlur(chunk, (blur_kernel, blur_kernel), 0).reshape(h, w, -1)
        blurred[start:stop] = b.transpose(2, 0, 1)
    orig_max, bmax = hm.max((1, 2)), blurred.max((1, 2))
    blurred *= np.where(bmax > 0, orig_max / np.where(bmax > 0, bmax, 1.0), 1.0)[:, None, None]
    blurred = blurred.reshape(n, k, h, w)
    coords = np.stack([px, py], -1).astype(np.float64)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    # The Taylor step needs two pixels on each side; nearer the border the quarter-offset result is used.
    ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    x, y = np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)

    def at(dy, dx):   # the log-heatmap, only where the Taylor step reads it
        return np.log(np.maximum(blurred[ni, ki, y + dy, x + dx], 1e-10))

    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy ** 2
    valid = ok & (np.abs(det) > 1e-12) & (dxx < 0) & (dyy < 0)
    safe_det = np.where(valid, det, 1.0)
    ox = -(dyy * dx - dxy * dy) / safe_det
    oy = -(dxx * dy - dxy * dx) / safe_det
    # A step longer than one pixel means the quadratic model broke down there.
    valid &= (np.abs(ox) <= 1) & (np.abs(oy) <= 1)
    coords[..., 0] += ox
    coords[..., 1] += oy
    return np.where(valid[..., None], coords, fallback), scores


# Softmax sharpness of the soft-argmax. Heatmaps here are Gaussians of peak 1 on a background near 0, not the
# logits integral regression (Sun et al. 2018) normalises, so they are scaled before the softmax: with beta 20 a
# peak of 1 outweighs the ~1700 background pixels of a 36x48 map by ~10^5 and the result stays local; a beta
# near 1 would drag every keypoint towards the map's centre.
def decode_soft_argmax(heatmaps: np.ndarray, beta: float | None = None):
    """Integral-regression decoding: coords (N, K, 2) = soft_argmax, the one training's loss uses (PyTorch: the
    `train` extra, as models trained that way are; beta None: its SOFT_ARGMAX_BETA); scores (N, K) = heatmap peaks, as the other decoders give, so
    pose scores and confidences do not depend on the decoder."""
    require("torch")
    import torch

    from posecal.codec.heatmap_torch import SOFT_ARGMAX_BETA, soft_argmax

    maps = torch.from_numpy(np.ascontiguousarray(heatmaps))
    coords = soft_argmax(maps, SOFT_ARGMAX_BETA if beta is None else beta).double().numpy()
    return coords, heatmaps.reshape(*heatmaps.shape[:2], -1).max(-1)


DECODE_METHODS = ("dark", "argmax", "soft_argmax")


def decode(heatmaps: np.ndarray, method: str = "dark"):
    if method == "dark":
        return decode_dark(heatmaps)
    if method == "argmax":
        return decode_argmax(heatmaps)
    if method == "soft_argmax":
        return decode_soft_argmax(heatmaps)
    raise ValueError(f"unknown decode method {method!r} (use one of {', '.join(DECODE_METHODS)})")


# second_peak's numbers: a peak farther than this many heatmap cells from the keypoint's own cell is another place
# (the next person's joint, not the same joint's spread), a local maximum over a window of this many cells, and
# above this value (background noise stays under it)
SECOND_PEAK_CELLS = 6
SECOND_PEAK_WINDOW = 5
SECOND_PEAK_FLOOR = 0.05


def second_peak(heatmaps: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(N,) how strongly each crop's heatmaps (N, K, H, W) show a second body: per keypoint, the highest local
    maximum farther than SECOND_PEAK_CELLS from the cell the keypoint was taken from (`cells` (N, K, 2) x, y in
    heatmap cells), 0 where there is none, averaged over the keypoints. Why: the heatmaps fire on every person in
    the crop and the decode takes one peak a keypoint, so a crop holding two people shows each joint twice."""
    h = np.asarray(heatmaps, np.float32)
    if h.ndim != 4 or not h.size:
        return np.zeros(len(h))
    window = np.ones((SECOND_PEAK_WINDOW, SECOND_PEAK_WINDOW), np.uint8)   # a grey dilation is a maximum filter
    top = np.stack([cv2.dilate(np.ascontiguousarray(m.transpose(1, 2, 0)), window).reshape(*m.shape[1:], -1)
                    .transpose(2, 0, 1) for m in h])
    n, k, y, x = np.nonzero((h == top) & (h > SECOND_PEAK_FLOOR))   # the local maxima, a few per map
    c = np.asarray(cells, np.float64)[n, k]
    far = (y - c[:, 1]) ** 2 + (x - c[:, 0]) ** 2 > SECOND_PEAK_CELLS ** 2
    best = np.zeros(h.shape[:2])
    np.maximum.at(best, (n[far], k[far]), h[n[far], k[far], y[far], x[far]])
    return best.mean(-1)
