"""Write the trust model's training and validation samples (posecal/training/trust_samples.py).

    python tools/trust_samples.py --out runs/trust_samples --epochs 3

Each epoch folder holds COCO train (all) + `--lspet` LSPET persons drawn anew, augmented with the recipe the
accurate model's heads were trained with (configs/movenet_thunder_heads_s3.yaml: rotation with re-boxing,
truncation, occluders), with the base model's (default: the shipped accurate model's MoveNet, onnxruntime,
flip test) keypoints. `val/` is the val split's plain test-time crops. Resumable: existing shards are kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.data.coco import load_coco_persons, load_lspet  # noqa: E402
from posecal.export.cache import cached_onnx  # noqa: E402
from posecal.models.checkpoint import load_model  # noqa: E402
from posecal.training.config import load_train_config  # noqa: E402
from posecal.training.trust_samples import write_samples  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/trust_samples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lspet", type=int, default=4000, help="LSPET persons per epoch")
    ap.add_argument("--model", default="accurate", help="base model (shipped name or file)")
    ap.add_argument("--config", default="configs/movenet_thunder_heads_s3.yaml", help="its augment: block is used")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, cfg, _ = load_model(args.model)
    base = cached_onnx(args.model, flip=True, threads=args.threads)
    augment = load_train_config(args.config).augment
    coco = DATA / "coco-val2017-crops"
    train = load_coco_persons(coco / "annotations/train.json", coco / "images")
    lspet = load_lspet(DATA / "lspet/annotations/lspet.json", DATA / "lspet/images")
    val = load_coco_persons(coco / "annotations/val.json", coco / "images")
    out = Path(args.out)
    write_samples(base, val, cfg.input_wh, out / "val", augment=None)
    for epoch in range(args.epochs):
        rng = np.random.default_rng(epoch)
        records = train + [lspet[i] for i in rng.choice(len(lspet), min(args.lspet, len(lspet)), replace=False)]
        records = [records[i] for i in rng.permutation(len(records))]
        write_samples(base, records, cfg.input_wh, out / f"epoch{epoch}", augment=augment, seed=100 + epoch)


if __name__ == "__main__":
    main()
