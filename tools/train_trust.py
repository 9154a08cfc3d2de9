"""Train posecal's trust model on stored samples (tools/trust_samples.py writes them). Resumable: run again.

    python tools/train_trust.py --samples runs/trust_samples --out runs/trust --epochs 1

Initialised from the shipped `fast` model's pose network (EfficientNet-Lite0 + heatmap head, trained here with
truncation, occluders and visibility labels). Then tools/build_trust_model.py and `posecal pack`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.models.assemble import trust_weights  # noqa: E402
from posecal.models.checkpoint import SHIPPED_MODELS, read_torch_file  # noqa: E402
from posecal.training.trust import TrustTrainConfig, train_trust  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="runs/trust_samples")
    ap.add_argument("--out", default="runs/trust")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-minutes", type=float, default=0.0)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", help="start from this trust model's weights: a previous stage's best.pt, or a model "
                                   "file with a trust model (e.g. accurate)")
    ap.add_argument("--only", nargs="+", help="sample folders to use (default: every epoch* folder)")
    args = ap.parse_args()
    samples = Path(args.samples)
    dirs = args.only or sorted(str(p) for p in samples.glob("epoch*") if any(p.glob("shard_*.npz")))
    cfg = TrustTrainConfig(sample_dirs=dirs, val_dir=str(samples / "val"), out_dir=args.out, epochs=args.epochs,
                           lr=args.lr, max_minutes=args.max_minutes, save_every=args.save_every,
                           threads=args.threads)
    print(f"samples: {', '.join(dirs)}", flush=True)
    init = trust_weights(args.init) if args.init else None
    base = samples / "base.json"
    trained_for = json.loads(base.read_text())["pose_fingerprint"] if base.is_file() else None
    train_trust(cfg, read_torch_file(SHIPPED_MODELS["fast"])["state_dict"], log=lambda s: print(s, flush=True),
                init_trust=init, trained_for=trained_for)


if __name__ == "__main__":
    main()
