"""Training the trust model (posecal/models/trust) on stored samples (posecal/training/trust_samples.py).

Targets are those of the base model's keypoints as stored: OPKS of each labelled keypoint, OKS of the pose over
its labelled keypoints, and the visibility the augmented crop shows (0 not labelled, 1 occluded, 2 visible;
weighted by whether the labels say, so LSPET teaches visibility only where augmentation made it known).

Two things make the trust model serve estimators other than the one whose keypoints it was trained on:
- score dropout: a share of persons is shown without the base's scores (NaN), so it rates keypoints from the
  image alone when an estimator gives no usable score;
- keypoint perturbation: a share of persons has some keypoints moved (jitter of a random size, left/right
  swaps), with targets recomputed from the truth, so it sees errors of other sizes and kinds than the base's.

Resumable: `last.pt` (weights, optimiser, step) is written atomically every `save_every` steps and at the end;
`best.pt` keeps the weights with the best validation score.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD
from posecal.io import write_atomic
from posecal.metrics.oks import opks
from posecal.models.trust.network import TRUST_INPUT, TrustNet, init_from_pose_model
from posecal.skeleton import FLIP_PAIRS
from posecal.training.trust_samples import load_shards

VIS_CLASS_WEIGHTS = (1.0, 2.0, 1.0)   # occluded is the rare class (about 8 % of COCO keypoints)
POSE_LR_SCALE = 0.3                   # learning rate of the trainable pose-network layers, relative


@dataclass
class TrustTrainConfig:
    """How the trust model trains (the `train:` part of a trust config, posecal.training.config)."""
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    epochs: float = 1.0               # passes over all samples (fractions allowed)
    warmup_steps: int = 30
    score_dropout: float = 0.3
    perturb_prob: float = 0.3
    swap_prob: float = 0.1
    save_every: int = 50
    max_minutes: float = 0.0          # 0: no limit; else stop (resumably) after this long
    seed: int = 0
    threads: int = 2
    lambda_opks: float = 1.0
    lambda_vis: float = 1.0
    lambda_oks: float = 1.0
    input_size: int = TRUST_INPUT     # the trust model's own square input (192 as shipped; 256: Thunder's crops)
    freeze_prefix: bool = True        # keep the stem and the blocks up to stride 16 as they start (TrustNet.frozen_prefix)


def normalise(crops_uint8: np.ndarray) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) -> posecal's normalised (N, 3, H, W)."""
    x = torch.from_numpy(crops_uint8).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def perturb(xy: np.ndarray, area: np.ndarray, rng: np.random.Generator, swap_prob: float) -> np.ndarray:
    """Move 1..K keypoints of each person by a jitter of random size (relative to the person), and with
    swap_prob swap one left/right pair: the kinds of error other estimators make."""
    xy = xy.copy()
    n, k = xy.shape[:2]
    scale = np.sqrt(np.maximum(area, 1.0))
    for i in range(n):
        moved = rng.random(k) < rng.uniform(0.1, 0.6)
        sigma = rng.choice([0.03, 0.08, 0.2, 0.4]) * scale[i]
        xy[i, moved] += rng.normal(0, sigma, (int(moved.sum()), 2))
        if rng.random() < swap_prob:
            a, b = FLIP_PAIRS[rng.integers(len(FLIP_PAIRS))]
            xy[i, [a, b]] = xy[i, [b, a]]
    return xy


def batch_targets(xy: np.ndarray, gt: np.ndarray, area: np.ndarray) -> dict[str, torch.Tensor]:
    ks = opks(xy, gt[..., :2], area)
    labelled = gt[..., 2] > 0
    oks = (ks * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
    return {"opks": torch.from_numpy(ks).float(), "labelled": torch.from_numpy(labelled),
            "oks": torch.from_numpy(oks).float(), "has_labels": torch.from_numpy(labelled.any(1)),
            "vis": torch.from_numpy(gt[..., 2]).long()}


def trust_losses(out, targets: dict, vis_weight: torch.Tensor, weights: dict) -> dict[str, torch.Tensor]:
    lab = targets["labelled"].float()
    opks_loss = (F.binary_cross_entropy_with_logits(out.opks_logits, targets["opks"], reduction="none") * lab
                 ).sum() / lab.sum().clamp(min=1)
    cw = torch.tensor(VIS_CLASS_WEIGHTS, dtype=out.vis_logits.dtype, device=out.vis_logits.device)
    ce = F.cross_entropy(out.vis_logits.flatten(0, 1), targets["vis"].flatten(), weight=cw, reduction="none")
    vw = vis_weight.flatten() * cw[targets["vis"].flatten()]
    vis_loss = (ce * vis_weight.flatten()).sum() / vw.sum().clamp(min=1e-6)
    has = targets["has_labels"].float()
    oks_loss = (F.binary_cross_entropy(out.oks.clamp(1e-6, 1 - 1e-6), targets["oks"], reduction="none") * has
                ).sum() / has.sum().clamp(min=1)
    total = weights["opks"] * opks_loss + weights["vis"] * vis_loss + weights["oks"] * oks_loss
    return {"loss": total, "opks": opks_loss, "vis": vis_loss, "oks": oks_loss}


def make_batch(data: dict, idx: np.ndarray, cfg: TrustTrainConfig | None, rng: np.random.Generator | None):
    """(images, keypoints, scores, targets, vis_weight) for samples idx; cfg/rng None: as stored (validation)."""
    return (normalise(data["crops"][idx]), *batch_keypoints(data, idx, cfg, rng))


def batch_keypoints(data: dict, idx: np.ndarray, cfg: TrustTrainConfig | None, rng: np.random.Generator | None):
    """make_batch without the images: (keypoints, scores, targets, vis_weight) of samples idx, with keypoint
    perturbation and score dropout drawn from rng (cfg/rng None: as stored). `data` needs base_xy, base_scores,
    keypoints, area and visibility_weight (tools/trust_online.py calls it on crops made on the GPU)."""
    xy = data["base_xy"][idx].astype(np.float64)
    scores = data["base_scores"][idx].astype(np.float32).copy()
    gt, area = data["keypoints"][idx].astype(np.float64), data["area"][idx].astype(np.float64)
    if cfg is not None:
        moved = rng.random(len(idx)) < cfg.perturb_prob
        if moved.any():
            xy[moved] = perturb(xy[moved], area[moved], rng, cfg.swap_prob)
        scores[moved | (rng.random(len(idx)) < cfg.score_dropout)] = np.nan   # a moved point's score is stale
    return (torch.from_numpy(xy).float(), torch.from_numpy(scores), batch_targets(xy, gt, area),
            torch.from_numpy(data["visibility_weight"][idx]).float())


@torch.no_grad()
def predict_samples(model: TrustNet, data: dict, batch_size: int = 64, scores: bool = True) -> dict[str, np.ndarray]:
    """The trust outputs on stored samples, run where the model's weights are (CPU or GPU)."""
    model.eval()
    dev = next(model.parameters()).device
    outs = {"oks": [], "opks": [], "vis": []}
    for first in range(0, len(data["crops"]), batch_size):
        idx = np.arange(first, min(first + batch_size, len(data["crops"])))
        images, xy, s, _, _ = make_batch(data, idx, None, None)
        out = model(images.to(dev), xy.to(dev), s.to(dev) if scores else None)
        outs["oks"].append(out.oks.float().cpu().numpy())
        outs["opks"].append(torch.sigmoid(out.opks_logits.float()).cpu().numpy())
        outs["vis"].append(torch.softmax(out.vis_logits.float(), -1).cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def sample_scores(pred: dict, data: dict) -> dict[str, float]:
    """Validation figures on stored samples: pose and mean-OPKS Pearson, binary visibility F1 (labelled vs not,
    by argmax), occluded F1."""
    t = batch_targets(data["base_xy"].astype(np.float64), data["keypoints"].astype(np.float64),
                      data["area"].astype(np.float64))
    lab = t["labelled"].numpy()
    has = lab.any(1)
    pose_r = float(np.corrcoef(pred["oks"][has], t["oks"].numpy()[has])[0, 1])
    mean_true = (t["opks"].numpy() * lab).sum(1)[has] / lab.sum(1)[has]
    mean_pred = (pred["opks"] * lab).sum(1)[has] / lab.sum(1)[has]
    cls = pred["vis"].argmax(-1)
    gt_v = t["vis"].numpy()

    def f1(p, g):
        tp = (p & g).sum()
        return float(2 * tp / max(p.sum() + g.sum(), 1))
    return {"pose_pearson": pose_r, "opks_pearson": float(np.corrcoef(mean_pred, mean_true)[0, 1]),
            "binary_f1": f1(cls > 0, gt_v > 0), "absent_f1": f1(cls == 0, gt_v == 0),
            "occluded_f1": f1(cls == 1, gt_v == 1)}


def validation_score(scores: dict) -> float:
    """The one number best.pt is chosen by: binary visibility F1 + pose and OPKS Pearson + occluded F1."""
    return scores["binary_f1"] + scores["pose_pearson"] + scores["opks_pearson"] + scores["occluded_f1"]


def _lr(step: int, total: int, cfg: TrustTrainConfig, progress: float | None = None) -> float:
    """Linear warm-up over cfg.warmup_steps, then a cosine to lr * min_lr_ratio over the rest of `total` steps,
    or over `progress` (0..1, e.g. the share of a wall-clock budget spent) when given."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)) if progress is None else \
        min(1.0, max(0.0, progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train_trust(cfg: TrustTrainConfig, sample_dirs: list, val_dir, out_dir, init_state: dict | None = None,
                resume: bool = True, log=print, init_trust: dict | None = None, trained_for: str | None = None) -> dict:
    """Train (or resume) a trust model on the samples of `sample_dirs`, validated on `val_dir`'s, into out_dir
    (last.pt, best.pt, log.json); returns the training state with its total steps. init_state: a posecal Lite0
    model's state_dict for its pose network; init_trust: a trust model's own state_dict (a previous stage)."""
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = TrustNet(input_size=cfg.input_size)
    if init_state is not None:
        init_from_pose_model(model, init_state)
    if init_trust is not None:
        model.load_state_dict(init_trust)
    frozen = {id(p) for p in model.frozen_prefix()} if cfg.freeze_prefix else set()
    for p in model.parameters():
        p.requires_grad = id(p) not in frozen
    # the pose network it starts from learns slower than the new MLPs (its features are already good)
    pose = [p for m in (model.backbone, model.heatmap_head) for p in m.parameters() if p.requires_grad]
    pose_ids = {id(p) for p in pose}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in pose_ids]
    optim = torch.optim.AdamW([{"params": pose, "lr_scale": POSE_LR_SCALE}, {"params": heads, "lr_scale": 1.0}],
                              lr=cfg.lr, weight_decay=cfg.weight_decay)
    # trained_for: the fingerprint of the network whose keypoints the samples hold (models/assemble.py), kept in
    # every checkpoint so the model file built from it can name the network its trust model judges
    state = {"step": 0, "best": -1.0, "log": [], "trained_for": trained_for, "trust_input": cfg.input_size}
    last = out / "last.pt"
    if resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optim"])
        state = ck["state"]
        log(f"resumed at step {state['step']}")
    data = [load_shards(d) for d in sample_dirs]
    data = {k: np.concatenate([d[k] for d in data]) for k in data[0]}
    val = load_shards(val_dir)
    n = len(data["crops"])
    total = int(cfg.epochs * n // cfg.batch_size)
    order = np.random.default_rng(cfg.seed).permutation(np.tile(np.arange(n), int(math.ceil(cfg.epochs)) + 1))

    def save(path: Path, with_optim: bool) -> None:
        obj = {"model": model.state_dict(), "state": state}
        if with_optim:
            obj["optim"] = optim.state_dict()
        write_atomic(path, lambda f: torch.save(obj, f))

    def validate() -> dict:
        scores = sample_scores(predict_samples(model, val), val)
        score = validation_score(scores)
        entry = {"step": state["step"], **{k: round(v, 4) for k, v in scores.items()}}
        state["log"].append(entry)
        if score > state["best"]:
            state["best"] = score
            save(out / "best.pt", False)
        log(json.dumps(entry))
        model.train()
        return scores

    weights = {"opks": cfg.lambda_opks, "vis": cfg.lambda_vis, "oks": cfg.lambda_oks}
    start, running = time.time(), {}
    model.train()
    while state["step"] < total:
        step = state["step"]
        rng = np.random.default_rng((cfg.seed, step))
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        images, xy, scores, targets, vis_weight = make_batch(data, idx, cfg, rng)
        for g in optim.param_groups:
            g["lr"] = _lr(step, total, cfg) * g["lr_scale"]
        losses = trust_losses(model(images, xy, scores), targets, vis_weight, weights)
        optim.zero_grad()
        losses["loss"].backward()
        optim.step()
        state["step"] += 1
        for k, v in losses.items():
            running[k] = 0.9 * running.get(k, float(v.detach())) + 0.1 * float(v.detach())
        if state["step"] % 10 == 0:
            log(f"step {state['step']}/{total} " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f" {(time.time() - start) / 60:.1f} min")
        if state["step"] % cfg.save_every == 0 or state["step"] == total:
            validate()
            save(last, True)
        if cfg.max_minutes and time.time() - start > cfg.max_minutes * 60:
            save(last, True)
            log(f"stopped after {cfg.max_minutes} minutes at step {state['step']}; resume to go on")
            break
    write_atomic(out / "log.json", lambda f: f.write(json.dumps(state["log"], indent=1)), mode="w")
    return state | {"total": total}
