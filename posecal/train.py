"""`posecal train`: heatmap training with AdamW + warmup/cosine, per-epoch val AP, atomic checkpoints, resume."""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from posecal.checkpoint import atomic_save, load_state_from, model_from_config, save_model
from posecal.config import TrainConfig, to_dict
from posecal.data.coco import load_coco_persons, load_lspet
from posecal.data.topdown import TopDownDataset
from posecal.errors import PosecalInputError
from posecal.inference import predict_records
from posecal.losses import (hard_mined_l1, heatmap_mse, opks_bce, visibility_ce, visibility_class_weights,
                            visibility_target)
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.quality_targets import online_targets
from posecal.scoring import keypoint_confidence, pose_scores

STRATEGIES = ("s1", "s2", "s3")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def validate(model, cfg: TrainConfig, val_records, gt, flip: bool) -> dict:
    """Val AP per pose-score mode; `ap` is the selection metric (the `oks` mode, the default, once heads exist)."""
    preds = predict_records(model, val_records, cfg.model.input_wh, flip=flip, progress=False)
    ids = [r.image_id for r in val_records] if cfg.max_val_persons else None
    conf = keypoint_confidence(preds)
    metrics = {}
    for mode, scores in pose_scores(preds).items():
        if mode == "mmpose":
            continue
        results = coco_keypoint_results([r.image_id for r in preds.records], preds.keypoints, conf, scores)
        ap = coco_keypoint_ap(gt, results, image_ids=ids)
        metrics.update({k if mode == "heatmap" else f"{k}_{mode}": v for k, v in ap.items()})
    if "ap_oks" in metrics:
        metrics["ap_heatmap"], metrics["ap"] = metrics["ap"], metrics["ap_oks"]
    return metrics


def head_weight(cfg: TrainConfig, epoch: int) -> float:
    """S2 staging: 0 before head_start_epoch, then a linear ramp to 1."""
    if cfg.strategy != "s2" or epoch >= cfg.head_start_epoch + cfg.head_ramp_epochs:
        return 1.0
    if epoch < cfg.head_start_epoch:
        return 0.0
    return (epoch - cfg.head_start_epoch + 1) / (cfg.head_ramp_epochs + 1)


def freeze_pose(model) -> None:
    """S3: backbone and heatmap head fixed (weights and BatchNorm statistics)."""
    for module in (model.backbone, model.heatmap_head):
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


def quality_losses(model, out, batch, cfg: TrainConfig, class_weights, heatmaps_for_targets) -> dict:
    targets = online_targets(heatmaps_for_targets, batch["keypoints"], batch["area"])
    out = model.forward_heads(out)
    vis_t = visibility_target(targets.visibility, cfg.model.visibility_classes)
    has_labelled = targets.labelled.any(1)
    return {"oks": hard_mined_l1(out.oks[has_labelled], targets.oks[has_labelled], enabled=cfg.hard_mining),
            "opks": opks_bce(out.opks_logits, targets.opks, targets.labelled),
            "vis": visibility_ce(out.vis_logits, vis_t, class_weights)}


def step_losses(model, batch, images, cfg: TrainConfig, class_weights, epoch: int) -> dict:
    """Loss terms of one step; 'total' is what is minimised."""
    if not cfg.model.quality_heads:
        pred = model(images).heatmaps
        loss = heatmap_mse(pred, batch["heatmaps"], batch["target_weight"])
        return {"total": loss, "heatmap": loss}
    if cfg.strategy == "s3":
        with torch.no_grad():  # the frozen part runs as at test time: flip test, heads read merged heatmaps
            out = model.forward_flip_test(images) if cfg.flip_targets else model.forward_pose(images)
        terms = quality_losses(model, out, batch, cfg, class_weights, out.heatmaps.float().numpy())
        terms["total"] = cfg.lambda_oks * terms["oks"] + cfg.lambda_opks * terms["opks"] + cfg.lambda_vis * terms["vis"]
        return terms
    out = model.forward_pose(images)
    hm_loss = heatmap_mse(out.heatmaps, batch["heatmaps"], batch["target_weight"])
    terms = quality_losses(model, out, batch, cfg, class_weights, out.heatmaps.detach().float().numpy())
    w = head_weight(cfg, epoch)
    terms["heatmap"] = hm_loss
    terms["total"] = cfg.lambda_heatmap * hm_loss + w * (
        cfg.lambda_oks * terms["oks"] + cfg.lambda_opks * terms["opks"] + cfg.lambda_vis * terms["vis"])
    return terms


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the best validation metrics. Files in cfg.out_dir: last.pt, best.pt, best_model.pt, log.json."""
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = load_coco_persons(cfg.data.train_annotations, cfg.data.train_images)
    if cfg.data.lspet_annotations:
        records += load_lspet(cfg.data.lspet_annotations, cfg.data.lspet_images)
    if cfg.max_train_persons:
        records = records[: cfg.max_train_persons]
    val_records = load_coco_persons(cfg.data.val_annotations, cfg.data.val_images)
    if cfg.max_val_persons:
        val_records = val_records[: cfg.max_val_persons]
    gt = load_coco_gt(cfg.data.val_annotations)

    if cfg.strategy not in STRATEGIES:
        raise PosecalInputError(f"strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")
    if cfg.strategy == "s3" and not (cfg.model.quality_heads and cfg.init_from):
        raise PosecalInputError("strategy s3 needs model.quality_heads: true and init_from: a trained pose model")
    dataset = TopDownDataset(records, cfg.model.input_wh, cfg.augment, cfg.model.sigma, seed=cfg.seed)
    counts = np.bincount(np.concatenate([r.keypoints[:, 2].astype(int) for r in records]), minlength=3)[:3]
    if cfg.model.visibility_classes == 2:
        counts = np.array([counts[0], counts[1:].sum()])
    class_weights = visibility_class_weights(counts)
    model = model_from_config(cfg.model, imagenet=cfg.model.imagenet and not cfg.init_from)
    if cfg.init_from:
        load_state_from(model, cfg.init_from)
    if cfg.strategy == "s3":
        freeze_pose(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    state = {"epoch": 0, "step": 0, "best_ap": -1.0, "log": []}
    if resume and (out / "last.pt").is_file():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        state = ckpt["state"]
        print(f"resumed from {out / 'last.pt'} at epoch {state['epoch']}, step {state['step']}")
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    while state["epoch"] < cfg.epochs and state["step"] < total:
        epoch = state["epoch"]
        dataset.set_epoch(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) > cfg.batch_size,
                            num_workers=cfg.num_workers, generator=gen, persistent_workers=False)
        model.train()
        if cfg.strategy == "s3":
            freeze_pose(model)
        t0, losses, seen = time.time(), [], 0
        terms_sum: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for batch in bar:
            if state["step"] >= total:
                break
            for g in optim.param_groups:
                g["lr"] = lr_at(state["step"], total, cfg)
            images = batch["image"]
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            terms = step_losses(model, batch, images, cfg, class_weights, epoch)
            loss = terms["total"]
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v.item()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            state["step"] += 1
            losses.append(loss.item())
            seen += len(images)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4g}", lr=f"{optim.param_groups[0]['lr']:.1e}")
        state["epoch"] = epoch + 1
        entry = {"epoch": epoch + 1, "step": state["step"], "loss": float(np.mean(losses)) if losses else None,
                 **{f"loss_{k}": v / max(len(losses), 1) for k, v in terms_sum.items() if k != "total"},
                 "crops_per_s": seen / max(time.time() - t0, 1e-9), "train_s": time.time() - t0}
        if (epoch + 1) % cfg.val_every == 0 or state["epoch"] >= cfg.epochs or state["step"] >= total:
            t1 = time.time()
            metrics = validate(model, cfg, val_records, gt, cfg.val_flip)
            entry.update({f"val_{k}": v for k, v in metrics.items()}, val_s=time.time() - t1)
            if metrics["ap"] > state["best_ap"]:
                state["best_ap"] = metrics["ap"]
                save_model(model, cfg.model, out / "best_model.pt",
                           meta={"epoch": epoch + 1, "val": metrics, "val_flip": cfg.val_flip})
        state["log"].append(entry)
        print(json.dumps(entry), flush=True)
        atomic_save({"model": model.state_dict(), "optim": optim.state_dict(), "state": state,
                     "config": to_dict(cfg)}, out / "last.pt")
        tmp = out / "log.json.tmp"
        tmp.write_text(json.dumps(state["log"], indent=1))
        tmp.replace(out / "log.json")
    return {"best_ap": state["best_ap"], "log": state["log"]}
