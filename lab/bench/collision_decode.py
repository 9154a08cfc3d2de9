"""Left/right collisions in the decode (issue 62 item 3): would a decoder that keeps a joint off its mirror help?

    python lab/bench/collision_decode.py [--model posecal/weights/posecal_accurate.pt] [--radius 1 2] [--ratio 0.3 0.8] [--limit N]

Of the val split's wrong keypoints, a quarter sit on another joint of the same person, mostly the mirror joint
(bench/hard_people.py). Counted per labelled left/right pair here: both right, a full swap (each on the other's
place), a collision (one right, its mirror predicted on the same spot), other. Then the tried decoder: MoveNet's
centre-guided decode (posecal/codec/movenet.py) per pass, and where a pair's keypoint cells lie within --radius
cells, the lower-scored one is decoded again with the winner's neighbourhood (--suppress cells) taken out of its
heatmap, kept where that peak is at least --ratio of its first; then the flip merge as shipped. Each variant's
share posed right (OKS >= 0.5) and mean OKS, on val's even annotation ids (where a variant would be chosen) and odd
ones (where it is judged), against the shipped decode on the same outputs. The raw outputs are caught from the
PyTorch model's pass (torch, GT boxes, flip test) and mapped to the photograph by each crop's affine matrix.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import posecal.models.estimator as estimator_module  # noqa: E402
from posecal.codec.movenet import (DISTANCE_BIAS, _first_argmax_2d, centre_cells, coordinate_scale,  # noqa: E402
                                   merge_flip, movenet_to_crop_pixels)
from posecal.data.coco import load_coco_persons  # noqa: E402
from posecal.inference.estimator import predict_records  # noqa: E402
from posecal.inference.opener import open_model  # noqa: E402
from posecal.skeleton import COCO_SIGMAS, flip_permutation  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "coco-val2017-crops"
PERM = flip_permutation(17)
PAIRS = [(i, PERM[i]) for i in range(17) if PERM[i] > i]


def caught_outputs(model: str, limit: int = 0, batch: int = 32):
    """(records, image keypoints, each pass's raw MoveNet outputs (crops then mirrors, per batch), the merged
    network-space keypoints): one PyTorch pass over val with flip test."""
    caught, shipped = [], estimator_module.decode_crops

    def catch(center, regress, heatmap, offset, n):
        result = shipped(center, regress, heatmap, offset, n)
        caught.append(([t.detach().clone() for t in (center, regress, heatmap, offset)], result[0].numpy()))
        return result

    estimator_module.decode_crops = catch
    records = load_coco_persons(DATA / "annotations/val.json", DATA / "images")[: limit or None]
    opened = open_model(model, "torch", True, 2)
    pred = predict_records(opened.runner, records, opened.config.input_wh, flip=True, progress=False,
                           batch_size=batch)
    estimator_module.decode_crops = shipped
    per_batch = caught[::2]   # the trust model's decode, then the reported one: the same arrays twice
    return pred, per_batch


def decode(center, regress, heatmap, offset, radius: float = 0, suppress: float = 2.0, ratio: float = 0.0):
    """MoveNet's decode (codec/movenet.py's steps) with the collision rule when radius > 0 -> crop pixels, scores."""
    n, k, h, w = heatmap.shape
    batch = torch.arange(n)
    cy, cx = centre_cells(center).unbind(-1)
    reg = regress[batch, :, cy, cx].view(n, k, 2)
    ry, rx = cy.float()[:, None] + reg[..., 0], cx.float()[:, None] + reg[..., 1]
    gy, gx = torch.arange(h, dtype=torch.float32).view(h, 1), torch.arange(w, dtype=torch.float32).view(1, w)
    weighted = heatmap / (torch.sqrt((gy - ry[..., None, None]) ** 2 + (gx - rx[..., None, None]) ** 2)
                          + DISTANCE_BIAS)
    ky, kx = _first_argmax_2d(weighted)
    bi, ki = batch[:, None].expand(n, k), torch.arange(k)[None].expand(n, k)
    scores = heatmap[bi, ki, ky, kx]
    for left, right in PAIRS if radius > 0 else ():
        hit = torch.sqrt(((ky[:, left] - ky[:, right]) ** 2 + (kx[:, left] - kx[:, right]) ** 2).float()) <= radius
        lower = scores[:, left] < scores[:, right]
        lose, win = torch.where(lower, left, right), torch.where(lower, right, left)
        wy, wx = ky[batch, win].float(), kx[batch, win].float()
        away = torch.sqrt((gy - wy[:, None, None]) ** 2 + (gx - wx[:, None, None]) ** 2) > suppress
        ny, nx = _first_argmax_2d(weighted[batch, lose] * away)
        again = heatmap[batch, lose, ny, nx]
        ok = hit & (again >= ratio * scores[batch, lose])
        ky[batch[ok], lose[ok]], kx[batch[ok], lose[ok]], scores[batch[ok], lose[ok]] = ny[ok], nx[ok], again[ok]
    off = offset.view(n, k, 2, h, w)[bi, ki, :, ky, kx]
    y = (ky.float() + off[..., 0]) * coordinate_scale(h)
    x = (kx.float() + off[..., 1]) * coordinate_scale(w)
    return movenet_to_crop_pixels(torch.stack([x * 4 * w, y * 4 * h], -1)), scores


def image_keypoints(per_batch, pred, **rule) -> np.ndarray:
    """Every person's keypoints in the photograph under a decode rule: each batch decoded and flip-merged, then
    mapped by the affine map that takes the shipped decode's network-space keypoints to its reported ones."""
    out, row = np.empty_like(pred.keypoints), 0
    for arrays, shipped_xy in per_batch:
        xy, scores = decode(*arrays, **rule)
        n = xy.shape[0] // 2
        merged, _ = merge_flip(xy[:n], scores[:n], xy[n:], scores[n:], arrays[2].shape[-1] * 4)
        for i in range(n):
            fit, *_ = np.linalg.lstsq(np.c_[shipped_xy[i].astype(np.float64), np.ones(17)],
                                      pred.keypoints[row + i], rcond=None)
            out[row + i] = np.c_[merged[i].numpy().astype(np.float64), np.ones(17)] @ fit
        row += n
    return out


def oks_and_pairs(points: np.ndarray, records) -> tuple[np.ndarray, Counter]:
    """Each person's OKS (COCO's, their area) and the left/right pair outcomes."""
    oks, pairs = np.full(len(records), np.nan), Counter()
    for i, r in enumerate(records):
        gt, v = r.keypoints[:, :2], r.keypoints[:, 2] > 0
        ks = lambda p, j: np.exp(-np.sum((p - gt[j]) ** 2) / (2 * r.area * (2 * COCO_SIGMAS[j]) ** 2 + 1e-9))  # noqa: E731
        if v.any():
            oks[i] = np.mean([ks(points[i, j], j) for j in np.flatnonzero(v)])
        for a, b in PAIRS:
            if not (v[a] and v[b]):
                continue
            aa, bb, ab, ba = (ks(points[i, a], a) >= .5, ks(points[i, b], b) >= .5, ks(points[i, a], b) >= .5,
                              ks(points[i, b], a) >= .5)
            pairs["both right" if aa and bb else "full swap" if ab and ba and not (aa or bb) else
                  "collision" if (aa and ba) or (bb and ab) else "other"] += 1
    return oks, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "posecal/weights/posecal_accurate.pt"))
    ap.add_argument("--radius", type=float, nargs="+", default=[1, 2])
    ap.add_argument("--suppress", type=float, nargs="+", default=[2.0])
    ap.add_argument("--ratio", type=float, nargs="+", default=[0.3, 0.8])
    ap.add_argument("--limit", type=int, default=0, help="the first N val persons only (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pred, per_batch = caught_outputs(args.model, args.limit)
    even = np.array([r.ann_id % 2 == 0 for r in pred.records])
    base_oks, base_pairs = oks_and_pairs(image_keypoints(per_batch, pred), pred.records)
    print(f"{args.model}: {len(pred.records)} val persons; labelled left/right pairs: {dict(base_pairs)}")

    def line(name, oks, pairs):
        cells = [f"{split} right {np.nanmean(oks[m] >= .5):.4f} mean OKS {np.nanmean(oks[m]):.4f}"
                 for split, m in (("even", even), ("odd", ~even))]
        print(f"{name:34s} {' | '.join(cells)} | collisions {pairs['collision']} swaps {pairs['full swap']}")

    line("shipped decode", base_oks, base_pairs)
    for radius, suppress, ratio in itertools.product(args.radius, args.suppress, args.ratio):
        line(f"radius {radius} suppress {suppress} ratio {ratio}",
             *oks_and_pairs(image_keypoints(per_batch, pred, radius=radius, suppress=suppress, ratio=ratio),
                            pred.records))


if __name__ == "__main__":
    main()
