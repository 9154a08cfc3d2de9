"""The trust model on a GPU (lab/tools/gpu_train.md, "The trust model on a GPU"; tools/trust_online.py).

    python tools/gpu_trust.py weights CONFIG --out .gpu_data/trust_weights
        here, once: the two weight files the device run needs, small enough to carry: base.pt (the base model's
        pose network alone, fp16, a model file) and init.pt (the init's trust model, fp16, a trust checkpoint)
    python tools/gpu_trust.py train CONFIG --packed DIR [--base FILE] [--init FILE] [--out-dir DIR]
                                           [--max-minutes M] [--epochs E] [--device cpu] [--no-amp]
                                           [--batch-size N] [--workers N] [--val-every N] [--max-val-persons N]
                                           [--video-val]
        the online training run (tools/trust_online.py; on the device: --base/--init the files above,
        --packed the carried pack); CONFIG is a trust config (configs/trust/accurate_gpu.yaml), the flags
        override it
    python tools/gpu_trust.py probe CONFIG [--base FILE] [--init FILE] [--device cpu] [--batch-size N] [--steps N]
        a few training steps on random crops (no data): that the device path works, and its steps/s bound
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # trust_online.py, beside this tool
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.models.assemble import pose_fingerprint, trust_source  # noqa: E402
from posecal.models.checkpoint import atomic_save, load_model, save_model  # noqa: E402
from trust_online import OnlineOptions, load_online_config, probe_steps, run_online_trust  # noqa: E402


def write_weights(cfg, out: Path) -> None:
    """base.pt: cfg.base's pose network as a model file without quality outputs (fp16; its fingerprint is the
    base's, so a checkpoint trained on it builds onto cfg.base here); init.pt: cfg.init's trust model (fp16)."""
    out.mkdir(parents=True, exist_ok=True)
    model, mcfg, meta = load_model(cfg.base)
    fingerprint = pose_fingerprint(model)
    model.trust = None
    model.oks_head = model.opks_head = model.visibility_head = None
    pose_cfg = dataclasses.replace(mcfg, quality_heads=False, trust=False)
    save_model(model, pose_cfg, out / "base.pt", half=True,
               meta={"pose_network_of": str(cfg.base), "pose_fingerprint": fingerprint})
    again = pose_fingerprint(load_model(out / "base.pt")[0])
    if again != fingerprint:
        raise PosecalInputError(f"base.pt: network {again} differs from {cfg.base}'s {fingerprint}")
    print(f"{out / 'base.pt'}: {cfg.base}'s pose network {fingerprint}, {(out / 'base.pt').stat().st_size / 2**20:.1f} MiB")
    if cfg.init:
        weights, side = trust_source(cfg.init)
        atomic_save({"model": {k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
                     "state": {"trust_input": side, "init_of": str(cfg.init)}}, out / "init.pt")
        print(f"{out / 'init.pt'}: {cfg.init}'s trust model (input {side}), "
              f"{(out / 'init.pt').stat().st_size / 2**20:.1f} MiB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("weights")
    w.add_argument("config")
    w.add_argument("--out", default=".gpu_data/trust_weights")
    for cmd in ("train", "probe"):
        t = sub.add_parser(cmd)
        t.add_argument("config")
        for name in ("packed", "base", "init", "out-dir", "device"):
            t.add_argument(f"--{name}")
        t.add_argument("--max-minutes", type=float)
        t.add_argument("--epochs", type=float)
        for name in ("batch-size", "workers", "val-every", "max-val-persons", "steps"):
            t.add_argument(f"--{name}", type=int)
        t.add_argument("--no-amp", action="store_true")
        t.add_argument("--video-val", action="store_true",
                       help="also validate on the val persons as video shows them (trust_online.VIDEO_VAL)")
    args = ap.parse_args(argv)
    try:
        cfg = load_online_config(args.config)
        if args.cmd == "weights":
            write_weights(cfg, Path(args.out))
            return 0
        top = {k: getattr(args, k) for k in ("base", "init", "out_dir") if getattr(args, k) is not None}
        train = {k: v for k, v in (("max_minutes", args.max_minutes), ("batch_size", args.batch_size),
                                   ("epochs", args.epochs), ("save_every", args.val_every)) if v is not None}
        samples = {k: v for k, v in (("num_workers", args.workers), ("max_val_persons", args.max_val_persons))
                   if v is not None}
        cfg = dataclasses.replace(cfg, **top, train=dataclasses.replace(cfg.train, **train),
                                  samples=dataclasses.replace(cfg.samples, **samples))
        opts = OnlineOptions(**{k: v for k, v in (("packed", args.packed), ("device", args.device)) if v is not None},
                             amp=not args.no_amp, video_val=args.video_val)
        say = lambda m: print(m, flush=True)   # noqa: E731
        if args.cmd == "probe":
            probe_steps(cfg, opts, steps=args.steps or 12, log=say)
        else:
            run_online_trust(cfg, opts, log=say)
        return 0
    except PosecalInputError as e:
        print(f"gpu_trust: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
