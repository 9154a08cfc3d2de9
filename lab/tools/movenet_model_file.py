"""Write a model file of Google's MoveNet SinglePose network as ported, with no quality heads: the base that
`posecal train-trust` reads the keypoints of (`base:` in lab/configs/trust_fast_lightning.yaml).

    python lab/tools/movenet_model_file.py lightning runs/fast_lightning/lightning.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from posecal.models.checkpoint import model_from_config, save_model  # noqa: E402
from posecal.models.config import MOVENET_VARIANTS, ModelConfig, network_input  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=sorted(v for v in MOVENET_VARIANTS.values()))
    ap.add_argument("out", help="model file to write")
    args = ap.parse_args()
    cfg = network_input(ModelConfig(backbone=f"movenet_{args.variant}", imagenet=True, quality_heads=False),
                        given=())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_model(model_from_config(cfg).eval(), cfg, args.out, meta={"pose_network": f"movenet_{args.variant}"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
