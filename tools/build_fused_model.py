"""Assemble a fusing model (posecal/models/trust/fusion.py): a MoveNet model with a trust model (default: the
shipped accurate model; its weights unchanged) whose trust model picks each keypoint among the flip test's
passes, and with --second among a second pose network's keypoints too (posecal's `fast` network). Pack it
afterwards (`posecal pack ... --calibrate-on`): the calibration must be fitted anew, on the fused outputs.

    python tools/build_fused_model.py runs/accurate_fused/best_model.pt --second none   # the accurate model
    python tools/build_fused_model.py runs/best_fused/best_model.pt --second fast       # the best model
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.models.checkpoint import load_model, model_from_config, save_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="model file to write")
    ap.add_argument("--base", default="accurate", help="MoveNet model with a trust model, kept as it is")
    ap.add_argument("--second", default="fast", help="posecal EfficientNet-Lite0 model whose pose network is added "
                                                     "as the second opinion, or none (the flip passes only)")
    args = ap.parse_args()
    base, cfg, meta = load_model(args.base)
    if not cfg.trust:
        raise SystemExit(f"{args.base}: the fusion's judge is the trust model; this model has none")
    cfg = replace(cfg, fusion=True, second_opinion=args.second != "none")
    model = model_from_config(cfg, imagenet=False)
    weights = {k: v for k, v in base.state_dict().items() if not k.startswith("second_opinion.")}
    if cfg.second_opinion:
        second, second_cfg, _ = load_model(args.second)
        if second_cfg.backbone != "efficientnet_lite0" or second_cfg.input_channels != "rgb":
            raise SystemExit(f"{args.second}: the second opinion is an EfficientNet-Lite0 posecal model")
        weights |= {f"second_opinion.{k}": v for k, v in second.state_dict().items()
                    if k.startswith(("backbone.", "heatmap_head."))}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    save_model(model, cfg, args.out, meta={"base": str(args.base), "second_opinion": str(args.second),
                                           "trust_checkpoint": meta.get("trust_checkpoint")})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
