"""Throughput probe for a training config: crops/s of the data loader alone and of the model's training step
alone (synthetic batches), each for a few seconds, so that the slower of the two, the epoch time and how many
epochs fit in a device session are known before a long run (lab/tools/gpu_train.md).

Usage: python lab/tools/gpu_probe.py CONFIG.yaml [--packed DIR] [--seconds 20] [--workers N] [--batch B] [--device D]
"""
from __future__ import annotations

import argparse
import time

import torch

from posecal.models.checkpoint import model_from_config
from posecal.training.config import load_train_config
from posecal.data.topdown import TopDownDataset
from posecal.training.losses import heatmap_mse
from posecal.training.train import EpochOrder, _amp, _device, _load_data, make_loader, optimizer_step


def loader_rate(cfg, records, seconds: float) -> float:
    ds = TopDownDataset(records, cfg.model.input_wh, cfg.augment, cfg.model.sigma, seed=cfg.seed)
    order = EpochOrder(len(ds), cfg.seed)
    loader = make_loader(ds, order, cfg, drop_last=True)
    n, t0, t_first = 0, time.time(), None
    for epoch in range(1000):
        order.set_epoch(epoch)
        for batch in loader:
            if t_first is None:    # worker start-up and the first batch are not counted
                t_first = time.time()
                continue
            n += len(batch["image"])
            if time.time() - t_first > seconds:
                rate = n / (time.time() - t_first)
                print(f"loader: {cfg.num_workers} workers, batch {cfg.batch_size}: {rate:.0f} crops/s "
                      f"(first batch after {t_first - t0:.1f} s)")
                return rate
    return float("nan")


def model_rate(cfg, seconds: float) -> float:
    device = _device(cfg)
    autocast, scaler = _amp(cfg, device)
    model = model_from_config(cfg.model, imagenet=False).to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    w, h = cfg.model.input_wh
    x = torch.randn(cfg.batch_size, 3, h, w, device=device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.rand(cfg.batch_size, 17, h // 4, w // 4, device=device)
    weight = torch.ones(cfg.batch_size, 17, device=device)

    def step():
        with autocast():
            loss = heatmap_mse(model(x).heatmaps, target, weight)
        optimizer_step(loss, optim, scaler)
        return loss

    for _ in range(3):     # warm-up (cudnn.benchmark picks its algorithms here)
        step().item()
    n, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        step()
        n += cfg.batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = n / (time.time() - t0)
    mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
    print(f"model step: batch {cfg.batch_size}, {cfg.model.input_wh[0]}x{cfg.model.input_wh[1]}, "
          f"amp {cfg.amp and device.type == 'cuda'} ({cfg.amp_dtype}): {rate:.0f} crops/s{mem}")
    return rate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--packed", help="override data.packed")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, help="override num_workers")
    ap.add_argument("--batch", type=int, help="override batch_size")
    ap.add_argument("--device", help="override device")
    args = ap.parse_args(argv)
    cfg = load_train_config(args.config)
    if args.packed:
        cfg.data.packed = args.packed
    if args.workers is not None:
        cfg.num_workers = args.workers
    if args.batch:
        cfg.batch_size = args.batch
    if args.device:
        cfg.device = args.device
    torch.set_num_threads(cfg.threads)
    records = _load_data(cfg)[0]
    n = len(records)
    m = model_rate(cfg, args.seconds)
    d = loader_rate(cfg, records, args.seconds)
    rate = min(m, d)
    epoch_s = n / rate
    print(f"bound: {'data loading' if d < m else 'the model'}; {n} persons: {epoch_s:.1f} s an epoch, "
          f"{cfg.epochs} epochs {cfg.epochs * epoch_s / 60:.1f} min (+ validation every {cfg.val_every})")


if __name__ == "__main__":
    main()
