"""Write the trust model's training and validation samples (posecal/training/trust_samples.py).

    python tools/trust_samples.py --out runs/trust_samples_conditions --epochs 2

Each epoch holds COCO train (all) + `--lspet` LSPET persons drawn anew from those the trust model may train on
(`lspet_trust_split`: 1,000 are kept out for bench/trust_conditions.py), augmented with `--config`'s augment
block (default configs/trust/conditions_samples.yaml: cut by the frame, detector-like boxes, blur and JPEG,
occluders, rotation), with the base model's keypoints (default: the shipped accurate model's MoveNet,
onnxruntime, its own decode). `--no-flip-share` of each epoch is decoded without the flip test (folder
`epochN_noflip`), the rest with it (`epochN`), since users run both. `val/` is the val split's plain test-time
crops. Resumable: existing shards are kept.
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
from posecal.io import write_json_atomic  # noqa: E402
from posecal.models.assemble import pose_fingerprint  # noqa: E402
from posecal.models.checkpoint import load_model  # noqa: E402
from posecal.training.config import load_train_config  # noqa: E402
from posecal.training.trust_samples import lspet_trust_split, write_samples  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/trust_samples_conditions")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lspet", type=int, default=4000, help="LSPET persons per epoch")
    ap.add_argument("--no-flip-share", type=float, default=0.4, help="share of each epoch decoded without flip")
    ap.add_argument("--model", default="accurate", help="base model (shipped name or file)")
    ap.add_argument("--config", default="configs/trust/conditions_samples.yaml", help="its augment: block is used")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base_model, cfg, _ = load_model(args.model)
    augment = load_train_config(args.config).augment
    coco = DATA / "coco-val2017-crops"
    train = load_coco_persons(coco / "annotations/train.json", coco / "images")
    lspet = load_lspet(DATA / "lspet/annotations/lspet.json", DATA / "lspet/images")
    lspet_train, _ = lspet_trust_split(len(lspet))
    val = load_coco_persons(coco / "annotations/val.json", coco / "images")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"model": str(args.model), "pose_fingerprint": pose_fingerprint(base_model)}, out / "base.json")
    with_flip = cached_onnx(args.model, flip=True, threads=args.threads)
    write_samples(with_flip, val, cfg.input_wh, out / "val", augment=None)
    for epoch in range(args.epochs):
        rng = np.random.default_rng(epoch)
        picked = rng.choice(lspet_train, min(args.lspet, len(lspet_train)), replace=False)
        records = train + [lspet[i] for i in picked]
        records = [records[i] for i in rng.permutation(len(records))]
        cut = int(round(len(records) * (1 - args.no_flip_share)))
        write_samples(with_flip, records[:cut], cfg.input_wh, out / f"epoch{epoch}", augment=augment,
                      seed=100 + epoch)
        if cut < len(records):
            without = cached_onnx(args.model, flip=False, threads=args.threads)
            write_samples(without, records[cut:], cfg.input_wh, out / f"epoch{epoch}_noflip", augment=augment,
                          seed=200 + epoch, flip=False)


if __name__ == "__main__":
    main()
