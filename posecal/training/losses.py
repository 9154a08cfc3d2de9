"""Training losses."""
from __future__ import annotations

import torch

from posecal.codec.heatmap import SOFT_ARGMAX_BETA, soft_argmax


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-keypoint-weighted MSE (unlabelled or out-of-crop keypoints do not count), as in SimpleBaseline."""
    w = weight[:, :, None, None]
    return 0.5 * ((pred - target) ** 2 * w).mean()


def integral_l1(heatmaps: torch.Tensor, target_xy: torch.Tensor, weight: torch.Tensor,
                beta: float = SOFT_ARGMAX_BETA) -> torch.Tensor:
    """Integral regression's loss (Sun et al. 2018): L1 between the heatmaps' soft-argmax and the GT, both in
    heatmap pixels, |dx| + |dy| averaged over the keypoints with target weight (labelled, inside the crop).

    Beside the heatmap MSE it trains the coordinate the soft-argmax decoder reads, which the MSE alone does
    not: a heatmap can match its Gaussian closely and still have its mass's centre off the peak.
    """
    err = (soft_argmax(heatmaps, beta) - target_xy.float()).abs().sum(-1)
    w = weight.float()
    return (err * w).sum() / w.sum().clamp(min=1)


def hard_mined_l1(pred: torch.Tensor, target: torch.Tensor, fraction: float = 0.25,
                  enabled: bool = True) -> torch.Tensor:
    """OKS-Net loss: L1, with the largest `fraction` of the batch's losses replaced by e^{2L} - 1.

    e^{2L} - 1 equals 2L near 0 and grows fast, so badly mis-scored poses dominate the gradient.
    """
    loss = (pred - target).abs()
    if enabled and loss.numel() > 1:
        k = max(1, int(round(fraction * loss.numel())))
        idx = loss.detach().topk(k).indices
        hard = torch.zeros_like(loss, dtype=torch.bool)
        hard[idx] = True
        loss = torch.where(hard, torch.expm1(2 * loss), loss)
    return loss.mean()


def opks_bce(logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """BCE against the soft OPKS target on labelled keypoints.

    A proper scoring rule: its minimiser is the expected OPKS, which is what a calibrated keypoint
    quality must be (an L1 loss would learn the median of the bimodal OPKS, i.e. 0 or 1).
    """
    mask = labelled.float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * mask).sum() / mask.sum().clamp(min=1)


def visibility_class_weights(counts) -> torch.Tensor:
    """Weighted-CE class weights: largest class count / class count (classes never seen get weight 1)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    w = torch.where(counts > 0, counts.max() / counts.clamp(min=1), torch.ones_like(counts))
    return w.float()


def visibility_ce(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted cross-entropy over (N, K, C) logits and (N, K) classes, normalised by the weights used.

    `mask` (N, K) leaves out keypoints whose visibility the labels do not tell (LSPET); without it this is
    torch's class-weighted mean cross-entropy.
    """
    c = logits.shape[-1]
    t = target.reshape(-1)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, c), t, reduction="none")
    w = class_weights.to(logits.dtype)[t]
    if mask is not None:
        w = w * mask.reshape(-1).to(w.dtype)
    return (ce * w).sum() / w.sum().clamp(min=1e-12)


def visibility_target(v: torch.Tensor, num_classes: int) -> torch.Tensor:
    """COCO v (0/1/2) -> class: itself for ternary, labelled (v > 0) for binary."""
    return v if num_classes == 3 else (v > 0).long()
