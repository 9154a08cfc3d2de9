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

from posecal.checkpoint import atomic_save, model_from_config, save_model
from posecal.config import TrainConfig, to_dict
from posecal.data.coco import load_coco_persons, load_lspet
from posecal.data.topdown import TopDownDataset
from posecal.inference import predict_records
from posecal.losses import heatmap_mse
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt


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
    preds = predict_records(model, val_records, cfg.model.input_wh, flip=flip, progress=False)
    scores = preds.heatmap_scores.mean(1)
    results = coco_keypoint_results([r.image_id for r in preds.records], preds.keypoints,
                                    preds.heatmap_scores, scores)
    ids = [r.image_id for r in val_records] if cfg.max_val_persons else None
    return coco_keypoint_ap(gt, results, image_ids=ids)


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

    dataset = TopDownDataset(records, cfg.model.input_wh, cfg.augment, cfg.model.sigma, seed=cfg.seed)
    model = model_from_config(cfg.model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
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
        t0, losses, seen = time.time(), [], 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for batch in bar:
            if state["step"] >= total:
                break
            for g in optim.param_groups:
                g["lr"] = lr_at(state["step"], total, cfg)
            images = batch["image"]
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            pred = model(images).heatmaps
            loss = heatmap_mse(pred, batch["heatmaps"], batch["target_weight"])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            state["step"] += 1
            losses.append(loss.item())
            seen += len(images)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]) * 1e3:.3f}e-3", lr=f"{optim.param_groups[0]['lr']:.1e}")
        state["epoch"] = epoch + 1
        entry = {"epoch": epoch + 1, "step": state["step"], "loss": float(np.mean(losses)) if losses else None,
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
