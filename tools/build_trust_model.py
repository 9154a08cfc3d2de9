"""Assemble a model file: a MoveNet model's pose network (default: the shipped accurate model's, unchanged) with
a trained trust model in place of its quality heads. Pack it afterwards (`posecal pack ... --calibrate-on`).

    python tools/build_trust_model.py runs/trust/best.pt runs/accurate_trust/best_model.pt
    python tools/build_trust_model.py accurate runs/thunder_ft/with_trust.pt --base runs/thunder_ft/best_model.pt

The trust may also be a model file that carries one (a shipped name or a path): its trust model is taken as it
is, e.g. the shipped one put on a fine-tuned MoveNet (tools/gpu_train.md section 5).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.models.assemble import pose_fingerprint, trust_weights  # noqa: E402
from posecal.models.checkpoint import load_model, model_from_config, save_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trust", help="trust checkpoint (posecal.training.trust: best.pt or last.pt), or a model "
                                  "file with a trust model (e.g. accurate)")
    ap.add_argument("out", help="model file to write")
    ap.add_argument("--base", default="accurate", help="MoveNet model whose pose network is kept")
    ap.add_argument("--any-network", action="store_true",
                    help="build even when the trust model was trained on another network's keypoints")
    args = ap.parse_args()
    base, cfg, base_meta = load_model(args.base)
    cfg = replace(cfg, quality_heads=True, trust=True)
    model = model_from_config(cfg, imagenet=False)
    pose = {k: v for k, v in base.state_dict().items() if k.startswith(("backbone.", "heatmap_head."))}
    try:
        trust = trust_weights(args.trust)
    except PosecalInputError as e:
        raise SystemExit(str(e))
    missing, unexpected = model.load_state_dict(pose | {f"trust.{k}": v for k, v in trust.items()}, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    meta = {"trust_checkpoint": str(args.trust)} | {k: base_meta[k] for k in ("pose_network",) if k in base_meta}
    ckpt = torch.load(args.trust, map_location="cpu", weights_only=True) if Path(args.trust).is_file() else {}
    trained_for = ckpt.get("state", {}).get("trained_for") if "model" in ckpt else None
    if trained_for is not None:
        own = pose_fingerprint(model)
        if trained_for != own and not args.any_network:
            raise SystemExit(f"{args.trust}: its trust model was trained on network {trained_for}'s keypoints, this "
                             f"model's network is {own}; --any-network to build it anyway (then recalibrate)")
        meta["trust_trained_for"] = trained_for
    save_model(model, cfg, args.out, meta=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
