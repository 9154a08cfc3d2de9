"""Assemble a fusing model (posecal/models/trust/fusion.py, assembled by posecal/models/assemble.py): a
MoveNet model with a trust model (default: the shipped accurate model; its weights unchanged) whose trust model
picks each keypoint among the flip test's passes, and with --second among a second pose network's keypoints too
(posecal's `fast` network). Pack it afterwards (`posecal pack ... --calibrate-on`): the calibration must be fitted
anew, on the fused outputs. On the fine-tuned accurate model neither gains AP (MODEL_CARD.md), so none is shipped.

    python tools/build_fused_model.py runs/accurate_fused/best_model.pt --second none   # the flip passes
    python tools/build_fused_model.py runs/best_fused/best_model.pt --second fast       # + the fast network
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.models.checkpoint import save_model  # noqa: E402
from posecal.models.assemble import fused_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="model file to write")
    ap.add_argument("--base", default="accurate", help="MoveNet model with a trust model, kept as it is")
    ap.add_argument("--second", default="fast", help="posecal EfficientNet-Lite0 model whose pose network is added "
                                                     "as the second opinion, or none (the flip passes only)")
    args = ap.parse_args()
    try:
        model, cfg, meta = fused_model(args.base, None if args.second == "none" else args.second)
    except PosecalInputError as e:
        raise SystemExit(str(e))
    save_model(model, cfg, args.out, meta=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
