"""Fit the calibration of what `posecal track` reports, per pose source, and store it in a model file.

    python tools/fit_video_calibration.py IN.pt OUT.pt [--scenes 0 1 2 3 4 5 6 7 8] [--frames 90]

IN.pt: a packed model file without a video calibration (its records are what the maps are fitted on). The
tuning scenes are bench/track_ids.py's synthetic videos of val people walking and crossing over a real
background (exact truth), scene i drawn with seed i; judge the result on other scenes
(python bench/trust_conditions.py --model OUT.pt --video-scenes 9 10 11 12 13 14). Written to
runs/video_calibration/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from track_ids import make_scenes  # noqa: E402

from posecal.calibration.video import fit_video_calibration  # noqa: E402
from posecal.evaluation.conditions import video_pairs  # noqa: E402
from posecal.models.checkpoint import atomic_save, read_torch_file  # noqa: E402
from posecal.tracking.job import TrackConfig, run_track  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="packed model file (no video calibration yet)")
    ap.add_argument("out", help="model file to write: the same with the video calibration")
    ap.add_argument("--scenes", type=int, nargs="+", default=list(range(9)), help="tuning scenes (seeds)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(ROOT / "runs" / "video_calibration"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = read_torch_file(Path(args.model))
    if "video" in ckpt.get("meta", {}).get("calibration", {}):
        raise SystemExit(f"{args.model}: already has a video calibration; fit on a file without one")
    scenes = make_scenes(ROOT / "runs" / "conditions" / "scenes", max(args.scenes) + 1, args.frames)
    pairs = []
    for name, video, truth in (scenes[i] for i in args.scenes):
        out = work / f"{name}_tracks.json"
        run_track(TrackConfig([str(video)], out=str(out), model=args.model, progress=False, threads=args.threads),
                  log=lambda m: None)
        pairs += video_pairs(json.loads(truth.read_text()), json.loads(out.read_text()))
    cal = fit_video_calibration(pairs, source=f"tools/fit_video_calibration.py scenes {args.scenes} x "
                                              f"{args.frames} frames")
    print(f"fitted on {len(pairs)} tracked poses: " + ", ".join(
        f"{k}: {n} poses" + (f", radius x {cal.by_source[k].radius_scale:.2f}" if k in cal.by_source else " (kept)")
        for k, n in cal.fit_info["pairs"].items()))
    ckpt["meta"]["calibration"]["video"] = cal.to_dict()
    atomic_save(ckpt, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
