"""The heatmap codec's PyTorch parts: what runs inside a network's graph or its training loss."""
from __future__ import annotations

import torch

from posecal.skeleton import flip_permutation

SOFT_ARGMAX_BETA = 20.0   # the sharpness of softmax(beta * heatmap), for the integral loss and its decode alike


def soft_argmax(heatmaps: torch.Tensor, beta: float = SOFT_ARGMAX_BETA) -> torch.Tensor:
    """(N, K, H, W) -> (N, K, 2) expected (x, y) in heatmap pixels under softmax(beta * heatmap).

    Differentiable (the integral loss trains through it) and computed in float32 whatever the input's dtype
    (autocast), since a bf16 softmax over ~1700 pixels loses the sub-pixel part.
    """
    n, k, h, w = heatmaps.shape
    p = torch.softmax(beta * heatmaps.float().reshape(n, k, h * w), -1).reshape(n, k, h, w)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


def flip_back(heatmaps_flipped: torch.Tensor) -> torch.Tensor:
    """Heatmaps predicted on a mirrored crop -> heatmaps of the original crop (mirror + left/right swap).

    No pixel shift is needed: the crop geometry is unbiased (posecal.data.transforms). Torch, so the flip
    test runs inside the model and its ONNX export.
    """
    perm = torch.as_tensor(flip_permutation(heatmaps_flipped.shape[1]), device=heatmaps_flipped.device)
    return torch.flip(heatmaps_flipped.index_select(1, perm), dims=[3])
