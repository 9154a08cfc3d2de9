"""Training losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from posecal.codec.heatmap_torch import SOFT_ARGMAX_BETA, soft_argmax
from posecal.codec.movenet import centre_cells, crop_pixels_to_cells


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


# MoveNet's keypoint heatmaps, measured on val crops, fall to 0.62 / 0.22 / 0.08 of their peak 1 / 2 / 3 cells
# away: about a Gaussian of 1.1 cells, the width its targets are given here so fine-tuning keeps their shape.
MOVENET_SIGMA = 1.1


def centernet_focal(logits: torch.Tensor, target: torch.Tensor, positive: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (Zhou et al. 2019; MoveNet's heatmaps are CenterNet heatmaps):
    -(1-p)^2 log p at each keypoint's own cell, -(1-y)^4 p^2 log(1-p) elsewhere, summed per map and divided by
    the number of keypoints that count (weight: (N, K), 1 for a labelled keypoint inside the crop).
    logits, target: (N, K, H, W); positive: bool (N, K, H, W), the one cell a keypoint's Gaussian peaks in."""
    p = torch.sigmoid(logits)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos = -((1 - p) ** 2) * log_p * positive
    neg = -((1 - target) ** 4) * p ** 2 * log_not_p * ~positive
    w = weight.float()
    return ((pos + neg).sum((-2, -1)) * w).sum() / w.sum().clamp(min=1)


def negative_cells_loss(logits: torch.Tensor, cells: torch.Tensor, negatives: torch.Tensor,
                        own_cells: torch.Tensor, normaliser: torch.Tensor, min_cells: float = 2.0) -> torch.Tensor:
    """-p^2 log(1-p) summed over the 3x3 cells around each valid negative (a place keypoint type k must not be
    answered: the target's left/right partner, a neighbour's joint k), divided by `normaliser` (the heatmap
    term's count of keypoints, so the two terms share a scale). A negative within min_cells of the keypoint's own
    cell says nothing and is left out.
    logits: (N, K, H, W); cells: (N, K, M, 2) x, y in cells; negatives: (N, K, M) valid; own_cells: (N, K, 2)."""
    n, k, h, w = logits.shape
    m = cells.shape[2]
    dev = logits.device
    near = ((cells - own_cells[:, :, None]) ** 2).sum(-1) < min_cells ** 2
    valid = negatives.bool() & ~near
    step = torch.tensor([-1.0, 0.0, 1.0], device=dev)
    cx = (cells[..., 0].round()[..., None, None] + step.view(1, 3)).expand(n, k, m, 3, 3).reshape(n, k, m * 9)
    cy = (cells[..., 1].round()[..., None, None] + step.view(3, 1)).expand(n, k, m, 3, 3).reshape(n, k, m * 9)
    ok = valid.repeat_interleave(9, dim=2) & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    flat = logits.reshape(n, k, h * w)
    index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
    z = flat.gather(2, index)
    p = torch.sigmoid(z)
    return (-(p ** 2) * F.logsigmoid(-z) * ok).sum() / normaliser


def movenet_pose_losses(movenet, keypoints: torch.Tensor, weight: torch.Tensor,
                        sigma: float = MOVENET_SIGMA, regress_weight: float = 1.0,
                        negatives: torch.Tensor | None = None, negative_weight: float = 0.0) -> dict:
    """Fine-tuning MoveNet's own heads from posecal's labels, in the units its decode reads
    (posecal.codec.movenet): keypoint heatmaps (focal loss to Gaussians at each keypoint's cell), sub-cell
    offsets (L1 at the 3x3 cells around it, where the decode's arg-max lands) and the regression from the
    person centre the decode picks (L1 at that cell, to the keypoint). The centre head gets no loss: the crop
    is centred on its person, and the regression is trained relative to whichever centre is picked.

    movenet: MoveNetOutput; keypoints: (N, K, 3) x, y in input-crop pixels and v; weight: (N, K) labelled and
    inside the crop (the dataset's target_weight). Returns heatmap, offset, regress and pose = heatmap + offset +
    regress_weight x regress."""
    heat, offset, regress = movenet.heatmap_logits, movenet.offset, movenet.regress
    n, k, h, w = heat.shape
    dev = heat.device
    cells = crop_pixels_to_cells(keypoints[..., :2].to(dev).float(), h, w)        # (N, K, 2) x, y in cells
    weight = weight.to(dev).float()
    cx = cells[..., 0].round().clamp(0, w - 1)
    cy = cells[..., 1].round().clamp(0, h - 1)
    gx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, w)
    gy = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, h, 1)
    d2 = (gx - cx[..., None, None]) ** 2 + (gy - cy[..., None, None]) ** 2
    target = torch.exp(-d2 / (2 * sigma ** 2))
    terms = {"heatmap": centernet_focal(heat, target, d2 == 0, weight)}

    # offsets at the 3x3 cells around each keypoint's cell: target = keypoint - cell, channels (dy, dx)
    off = offset.view(n, k, 2, h, w)
    bi = torch.arange(n, device=dev).view(n, 1, 1).expand(n, k, 9)
    ki = torch.arange(k, device=dev).view(1, k, 1).expand(n, k, 9)
    step = torch.tensor([-1, 0, 1], device=dev, dtype=torch.float32)
    ny = (cy[..., None, None] + step.view(3, 1)).expand(n, k, 3, 3).reshape(n, k, 9)
    nx = (cx[..., None, None] + step.view(1, 3)).expand(n, k, 3, 3).reshape(n, k, 9)
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    yi, xi = ny.clamp(0, h - 1).long(), nx.clamp(0, w - 1).long()
    pred = off[bi, ki, :, yi, xi]                                                  # (N, K, 9, 2) (dy, dx)
    want = torch.stack([cells[..., 1, None] - ny, cells[..., 0, None] - nx], -1)
    ow = (inside * weight[..., None]).float()
    terms["offset"] = ((pred - want).abs().sum(-1) * ow).sum() / ow.sum().clamp(min=1)

    # regression at the centre cell the decode picks (the centre head is not trained, so it is stable)
    centre = centre_cells(movenet.center.detach())                                 # (N, 2) (cy, cx)
    b = torch.arange(n, device=dev)
    reg = regress[b, :, centre[:, 0], centre[:, 1]].view(n, k, 2)                  # (N, K, 2) (dy, dx)
    want = torch.stack([cells[..., 1] - centre[:, :1].float(), cells[..., 0] - centre[:, 1:].float()], -1)
    terms["regress"] = ((reg - want).abs().sum(-1) * weight).sum() / weight.sum().clamp(min=1)
    terms["pose"] = terms["heatmap"] + terms["offset"] + regress_weight * terms["regress"]
    if negatives is not None and negative_weight > 0:
        negatives = negatives.to(dev).float()
        neg_cells = crop_pixels_to_cells(negatives[..., :2], h, w)
        terms["negatives"] = negative_cells_loss(heat, neg_cells, negatives[..., 2] > 0,
                                                 torch.stack([cx, cy], -1), weight.sum().clamp(min=1))
        terms["pose"] = terms["pose"] + negative_weight * terms["negatives"]
    return terms
