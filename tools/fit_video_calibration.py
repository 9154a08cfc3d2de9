"""Fit the calibration of what `posecal track` reports, per pose source, judged on worlds it did not see, and
store it in a model file.

    python tools/fit_video_calibration.py IN.pt OUT.pt [--scenes 0 1 2 3 4 5 6 7 8] [--held-out 0 1 2 3 4 5]
        [--degrade half jpeg] [--frames 90] [--threads 2]

IN.pt: a packed model file (a video calibration it already has is set aside: the records are tracked without it).
The worlds are bench/lab/video_worlds.py's: the tracking bench's tuning scenes (--scenes, vtest's room), its
held-out scenes (--held-out, another room as it is and mirrored, other people) and with --degrade each of them
downscaled by 2 (half) or compressed hard (jpeg). Each pose source's map is judged leave-one-world-kind-out
against no map (tools/video_choice.py; a kind's whole room is left out of its fit: judged in a
room it never saw) and ships only if it beats no map in keypoint and pose ECE on every world kind; the judgement
is printed and kept in the file's fit_info. Records are kept in runs/video_calibration/.

--judge-existing: fit nothing; IN.pt's own video maps are judged as they are on the worlds named (choose worlds
they were not fitted on), and each source keeps its map only where it beats no map on every world kind.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))   # the tools' own modules (verifier_export, video_choice)
from bench.lab.video_worlds import (DEGRADED, model_without_video_map, room_of, tracked_pairs,  # noqa: E402
                                    world_scenes)
from posecal.calibration.quality import calibration_from_meta  # noqa: E402
from video_choice import choose_video_calibration, keep_judged  # noqa: E402
from posecal.models.checkpoint import atomic_save, read_torch_file  # noqa: E402

import torch  # noqa: E402  (after the path: the tool needs PyTorch to read and write model files)


def judgement_table(judgement: dict) -> str:
    """Per pose source and world kind it did not see: keypoint and pose ECE through its map, beside no map; and
    whether the source ships its map."""
    lines = [f"{'source':<10}{'world':<22}{'poses':>7}{'kp ECE map':>12}{'no map':>9}{'pose ECE map':>14}"
             f"{'no map':>9}  better"]
    for source, v in judgement.items():
        for w in v["worlds"]:
            lines.append(f"{source:<10}{w['world']:<22}{w['poses']:>7}{w['keypoint_ece']:>12.4f}"
                         f"{w['keypoint_ece_none']:>9.4f}{w['pose_ece']:>14.4f}{w['pose_ece_none']:>9.4f}  "
                         f"{'yes' if w['better'] else 'no'}")
        lines.append(f"{source:<10}-> {'map shipped' if v['ships'] else 'no map'} ({v['pairs']} poses: {v['why']})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="packed model file")
    ap.add_argument("out", help="model file to write: the same with the judged video calibration")
    ap.add_argument("--scenes", type=int, nargs="*", default=list(range(9)), help="tuning scenes (vtest's room)")
    ap.add_argument("--held-out", type=int, nargs="*", default=list(range(6)),
                    help="held-out scenes (another room: even as it is, odd mirrored)")
    ap.add_argument("--degrade", nargs="*", default=[], choices=sorted(DEGRADED),
                    help="also every world downscaled by 2 (half: people half as tall) or at MJPG quality 20 (jpeg)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(ROOT / "runs" / "video_calibration"))
    ap.add_argument("--judge-existing", action="store_true", help="judge IN.pt's own maps instead of fitting")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    plain = model_without_video_map(args.model, work)
    worlds = world_scenes(work, args.scenes, args.held_out, args.frames, tuple(args.degrade))
    pairs = tracked_pairs(plain, worlds, work, args.threads)
    how = (f"tools/fit_video_calibration.py scenes {args.scenes}, held-out {args.held_out}"
           f"{''.join(', ' + d for d in args.degrade)} x {args.frames} frames")
    ckpt = read_torch_file(Path(args.model))
    if args.judge_existing:
        existing = calibration_from_meta(ckpt["meta"], args.model)
        if existing is None or existing.video is None:
            raise SystemExit(f"{args.model}: no video calibration to judge")
        cal = keep_judged(existing.video, pairs, how + " --judge-existing")
        judged = cal.fit_info["judged_as_fitted"]
    else:
        cal = choose_video_calibration(pairs, source=how, family={w: room_of(w) for w in pairs})
        judged = cal.fit_info
    print(f"worlds (tracked poses): {judged['worlds']}")
    print(judgement_table(judged["judgement"]))
    ckpt["meta"]["calibration"]["video"] = cal.to_dict()
    atomic_save(ckpt, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
