"""MoveNet SinglePose's centre-guided decode, reproducing the ops at the end of Google's graph exactly.

The TF.js graph decodes its four stride-4 CenterNet outputs (posecal/models/backbones/movenet.py) itself; this is
that decode, read op by op from the graph JSON, so that the port gives the original graph's keypoints:

1. Person centre: the centre heatmap times a fixed table favouring the crop centre,
   ``w_c[y, x] = 1 / (sqrt((y - H/2)^2 + (x - W/2)^2) + 1.8)`` (rounded to float16 as the graph stores it); the
   first arg-max over H*W is (cy, cx). Why: a top-down crop is centred on its person.
2. Regressed keypoints: (cy + dy_k, cx + dx_k), from the regression output's channels (2k, 2k+1) at the centre.
3. Keypoint cell: each keypoint heatmap divided by (distance to the regressed position + 1.8); first arg-max is
   (ky, kx). Why: the heatmaps fire on every person; this keeps the chosen centre's peak.
4. Sub-cell: ``y = (ky + dy_k) * c``, ``x = (kx + dx_k) * c`` with the offsets at (ky, kx) and the graph's own
   ``c = float16(1 / H)`` (for Lightning 0.026 % short of 1/48), coordinates in [0, 1] of the crop.
5. Score: the keypoint heatmap's sigmoid at (ky, kx) (not the distance-weighted value).

Units: `MoveNetKeypoints.normalized_yx` is the graph's layout (y, x in [0, 1]); `MoveNetKeypoints.xy` is in input
pixels, ``x_px = x_norm * S`` (S = 256 Thunder, 192 Lightning), no half-pixel shift, as the graph.
Functions take NCHW tensors, batched (`nhwc_to_nchw` converts TF.js's layout); float32 in the graph's order, so
arg-max ties break the same way (first index).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posecal.skeleton import flip_permutation

# add_5/y in the graph: 1.8 stored as float16 (= 1.7998046875), used for both the centre table and step 3.
DISTANCE_BIAS = float(np.float16(1.8))


def centre_weight_table(height: int, width: int) -> np.ndarray:
    """The graph's fixed centre-preference table (H, W): 1 / (distance to (H/2, W/2) + 1.8), float16-rounded.

    The graph stores this table as the float16 constant `truediv_2_recip` (TF constant-folded the division, the
    TF.js converter rounded the result to float16; the exact arithmetic of the folding cannot be read from the
    graph). Computed here in float32 and rounded to float16, it equals the
    Lightning table (48x48) bit for bit; for Thunder (64x64), 8 of the 4,096 cells (those at distance
    sqrt(1261) = 35.51 from the centre) land on the other side of a float16 rounding tie and differ by one
    float16 ulp (1.5e-5, 0.06 % relative). That changes the chosen centre only if two cells' weighted scores
    agree to 0.06 %; tests/models/test_movenet_port.py pins both facts against the graph's stored tables.
    """
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    dist = np.sqrt((ys - np.float32(height / 2)) ** 2 + (xs - np.float32(width / 2)) ** 2, dtype=np.float32)
    recip = np.float32(1.0) / (dist + np.float32(1.8))
    return recip.astype(np.float16).astype(np.float32)


def coordinate_scale(size: int) -> float:
    """The graph's normalising factor (constant `Reshape_13`): float16(1 / heatmap size)."""
    return float(np.float16(1.0 / size))


@dataclass
class MoveNetKeypoints:
    """Decoded keypoints of a batch of N crops (17 COCO keypoints)."""

    xy: torch.Tensor             # (N, 17, 2) x, y in network-input crop pixels (x_norm * S, y_norm * S)
    scores: torch.Tensor         # (N, 17) keypoint heatmap value (sigmoid) at the chosen cell
    normalized_yx: torch.Tensor  # (N, 17, 2) y, x in [0, 1], exactly the graph's output [..., :2]
    centre_cell: torch.Tensor    # (N, 2) int64 (cy, cx) of the chosen person centre, in heatmap cells
    keypoint_cell: torch.Tensor  # (N, 17, 2) int64 (ky, kx) heatmap cell each keypoint was taken from


def nhwc_to_nchw(x) -> torch.Tensor:
    """TF.js tensors (N, H, W, C) to the port's (N, C, H, W), as float32 torch."""
    return torch.as_tensor(np.asarray(x, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


def _first_argmax_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of the first maximum of x (..., H, W) over its flattened H*W (row-major, as the graph)."""
    width = x.shape[-1]
    idx = x.flatten(-2).argmax(-1)
    row = torch.div(idx, width, rounding_mode="floor")
    return row, idx - row * width


def decode_movenet(center, regress, heatmap, offset) -> MoveNetKeypoints:
    """Reproduce the graph's decode from the four head outputs (NCHW, numpy or torch).

    center:  (N, 1, H, W) centre heatmap after sigmoid
    regress: (N, 34, H, W) centre-to-keypoint displacement, channels (dy_0, dx_0, dy_1, ...), heatmap cells
    heatmap: (N, 17, H, W) keypoint heatmaps after sigmoid
    offset:  (N, 34, H, W) sub-cell offsets, channels (dy_0, dx_0, ...), heatmap cells
    """
    center, regress, heatmap, offset = (torch.as_tensor(np.asarray(t) if not torch.is_tensor(t) else t)
                                        .float() for t in (center, regress, heatmap, offset))
    n, k, h, w = heatmap.shape
    if center.shape != (n, 1, h, w) or regress.shape != (n, 2 * k, h, w) or offset.shape != (n, 2 * k, h, w):
        raise ValueError(f"decode_movenet: inconsistent shapes center {tuple(center.shape)}, regress "
                         f"{tuple(regress.shape)}, heatmap {tuple(heatmap.shape)}, offset {tuple(offset.shape)}")
    device = heatmap.device
    batch = torch.arange(n, device=device)

    # 1. centre cell: sigmoid(centre) * fixed table, first arg-max
    cy, cx = centre_cells(center).unbind(-1)

    # 2. regressed positions (heatmap cells), read at the centre cell
    reg = regress[batch, :, cy, cx].view(n, k, 2)
    ry = cy.float()[:, None] + reg[..., 0]
    rx = cx.float()[:, None] + reg[..., 1]

    # 3. keypoint cells: heatmap / (distance to the regressed position + 1.8), first arg-max per keypoint
    gy = torch.arange(h, dtype=torch.float32, device=device).view(1, 1, h, 1)
    gx = torch.arange(w, dtype=torch.float32, device=device).view(1, 1, 1, w)
    dist = torch.sqrt((gy - ry[..., None, None]) ** 2 + (gx - rx[..., None, None]) ** 2)
    ky, kx = _first_argmax_2d(heatmap / (dist + DISTANCE_BIAS))

    # 4. offsets and 5. scores at the keypoint cells
    bi = batch[:, None].expand(n, k)
    ki = torch.arange(k, device=device)[None].expand(n, k)
    off = offset.view(n, k, 2, h, w)[bi, ki, :, ky, kx]          # (N, K, 2) (dy, dx)
    scores = heatmap[bi, ki, ky, kx]
    scale_y, scale_x = coordinate_scale(h), coordinate_scale(w)
    y = (ky.float() + off[..., 0]) * scale_y
    x = (kx.float() + off[..., 1]) * scale_x
    normalized_yx = torch.stack([y, x], -1)
    xy = torch.stack([x * (4 * w), y * (4 * h)], -1)
    return MoveNetKeypoints(xy=xy, scores=scores, normalized_yx=normalized_yx,
                            centre_cell=torch.stack([cy, cx], -1),
                            keypoint_cell=torch.stack([ky, kx], -1))


# MoveNet's decoded keypoints (x_norm * S, as the graph reports them) -> posecal's input-crop pixels (integer =
# pixel centre). The graph does not say which convention its normalised coordinates follow; they are read as
# pixel edges (crop pixel = graph value - 0.5), which scores on the val split as high as any shift tried
# (CHANGELOG.md).
MOVENET_PIXEL_SHIFT = -0.5


def movenet_to_crop_pixels(xy, shift: float = MOVENET_PIXEL_SHIFT):
    """(..., 2) keypoints in the graph's pixel units -> posecal's input-crop pixels."""
    return xy + shift


def crop_pixels_to_cells(xy, height: int, width: int, shift: float = MOVENET_PIXEL_SHIFT):
    """(..., 2) x, y in posecal's input-crop pixels -> MoveNet heatmap cells (x, y): the exact inverse of
    decode_movenet's cell + offset -> pixel map followed by movenet_to_crop_pixels, so that a training target
    made here decodes back to the pixel it came from (the graph's float16 scale included)."""
    scale = torch.tensor([coordinate_scale(width) * 4 * width, coordinate_scale(height) * 4 * height],
                         dtype=xy.dtype, device=xy.device)
    return (xy - shift) / scale


def centre_cells(center: torch.Tensor) -> torch.Tensor:
    """(N, 2) int64 (cy, cx): the person centre decode_movenet picks (its step 1) from (N, 1, H, W) sigmoid maps."""
    h, w = center.shape[-2:]
    table = torch.from_numpy(centre_weight_table(h, w)).to(center.device)
    return torch.stack(_first_argmax_2d(center[:, 0].float() * table), -1)


def decode_crops(center, regress, heatmap, offset, num_crops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MoveNet's raw outputs of `num_crops` crops (or 2 x num_crops: the crops, then their mirrors) -> keypoints
    (N, K, 2) in posecal's crop pixels and scores (N, K), torch: decoded apart and merged (merge_flip) under the
    flip test. What inference reports and what the trust model reads inside the graph."""
    kp = decode_movenet(center, regress, heatmap, offset)
    xy, scores = movenet_to_crop_pixels(kp.xy), kp.scores
    if xy.shape[0] != 2 * num_crops:
        return xy, scores
    n, width = num_crops, heatmap.shape[-1] * 4
    return merge_flip(xy[:n], scores[:n], xy[n:], scores[n:], width)


def mirrored_back(xy_mirror: torch.Tensor, scores_mirror: torch.Tensor, width: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints and scores decoded on mirrored crops -> the same on the crops (x -> width - 1 - x, left and right
    joints swapped)."""
    perm = torch.as_tensor(flip_permutation(xy_mirror.shape[1]), device=xy_mirror.device)
    back = xy_mirror[:, perm]
    return torch.stack([width - 1 - back[..., 0], back[..., 1]], -1), scores_mirror[:, perm]


# Flip test for the centre-guided decode: the crop and its mirror are decoded apart; where their keypoints agree
# (closer than this fraction of the crop side) the two are averaged, else the one with the higher score is kept.
# The rule and its fraction were chosen on the val split over a plain or a score-weighted mean of the two passes
# (CHANGELOG.md).
FLIP_AGREE = 0.04


def merge_flip(xy, scores, xy_mirror, scores_mirror, width: int):
    """Keypoints (N, K, 2) and scores (N, K) of crops and of their mirrors (decoded on the mirrored crop, in
    posecal's crop pixels) -> merged keypoints and scores of the crops. numpy in, numpy out; torch in, torch
    out (the trust model reads the merged keypoints inside the exported graph)."""
    if not torch.is_tensor(xy):
        merged, merged_scores = merge_flip(*(torch.as_tensor(np.asarray(a, np.float64))
                                             for a in (xy, scores, xy_mirror, scores_mirror)), width)
        return merged.numpy(), merged_scores.numpy()
    back, back_scores = mirrored_back(xy_mirror, scores_mirror, width)
    agree = (torch.linalg.vector_norm(xy - back, dim=-1) < FLIP_AGREE * width)[..., None]
    better = (scores >= back_scores)[..., None]
    merged = torch.where(agree, (xy + back) / 2, torch.where(better, xy, back))
    return merged, (scores + back_scores) / 2
