"""Assemble a model file: a MoveNet model's pose network (default: the shipped accurate model's, unchanged) with
a trained trust model in place of its quality heads (posecal.models.assemble.with_trust). Pack it afterwards
(`posecal pack ... --calibrate-on`). `posecal train-trust CONFIG` builds its own model file; this puts an
existing trust model on another network:

    python tools/build_trust_model.py accurate runs/thunder_ft/with_trust.pt --base runs/thunder_ft/best_model.pt
    python tools/build_trust_model.py runs/trust/train/best.pt runs/accurate_trust/best_model.pt

The trust may be a trust training checkpoint or a model file that carries one (a shipped name or a path), e.g.
the shipped one put on a fine-tuned MoveNet (lab/tools/gpu_train.md section 5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.models.assemble import with_trust  # noqa: E402
from posecal.models.checkpoint import save_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trust", help="trust checkpoint (posecal.training.trust: best.pt or last.pt), or a model "
                                  "file with a trust model (e.g. accurate)")
    ap.add_argument("out", help="model file to write")
    ap.add_argument("--base", default="accurate", help="MoveNet model whose pose network is kept")
    ap.add_argument("--any-network", action="store_true",
                    help="build even when the trust model was trained on another network's keypoints")
    args = ap.parse_args()
    try:
        model, cfg, meta = with_trust(args.trust, args.base, args.any_network)
    except PosecalInputError as e:
        raise SystemExit(str(e))
    save_model(model, cfg, args.out, meta=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
