"""`posecal track` without ground truth: tracks, lengths, jitter (python bench/track_quality.py VIDEO [VIDEO...]).

`posecal track` measured without ground truth: tracks vs people seen, track lengths, and keypoint jitter with
and without One-Euro smoothing; writes a contact sheet of rendered frames for counting id switches by eye.

Usage: python bench/track_quality.py VIDEO [VIDEO...] [--out-dir track_quality/] [--sheet-every 5] [--threads 2]

Jitter: mean over tracks and keypoints (predicted visible in three consecutive frames) of the frame-to-frame
acceleration |x[t+1] - 2 x[t] + x[t-1]| divided by the person's box height: 0 for steady motion, and what a
viewer sees as shaking. The same tracker runs twice (smoothing off, on) on the same poses, so only the filter
differs. The sheet (OUT/VIDEO_sheet.png) shows every --sheet-every-th rendered frame with its track ids.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from posecal.tracking.job import TrackConfig
from posecal.tracking.units import run_track
from posecal.tracking.tracker import TrackerConfig


def jitter(tracks: dict[int, list]) -> float:
    """tracks: id -> [(frame index, PersonPose)] in frame order."""
    values = []
    for poses in tracks.values():
        for (f0, a), (f1, b), (f2, c) in zip(poses, poses[1:], poses[2:]):
            if f2 - f0 != 2:
                continue
            ok = (a.visibility == 2) & (b.visibility == 2) & (c.visibility == 2)
            if ok.any():
                acc = np.linalg.norm(c.keypoints[ok] - 2 * b.keypoints[ok] + a.keypoints[ok], axis=1)
                values.append(acc.mean() / max(float(b.box[3]), 1.0))
    return float(np.mean(values)) if values else float("nan")


def run(video: str, smooth: bool, threads: int, render: str | None):
    tracks, frames = defaultdict(list), []

    def keep(frame, tracked):
        frames.append(frame.frame_index)
        for i, p in tracked:
            tracks[i].append((frame.frame_index, p))

    cfg = TrackConfig([video], out=str(Path(render or "/tmp/x.mp4").with_suffix(".json")), render=render,
                      threads=threads, progress=False, tracker=TrackerConfig(smooth=smooth))
    run_track(cfg, keep=keep)
    return tracks, len(frames)


def sheet(video_path: Path, out: Path, every: int) -> None:
    cap, tiles, n = cv2.VideoCapture(str(video_path)), [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n % every == 0:
            cv2.putText(frame, f"frame {n}", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            tiles.append(frame)
        n += 1
    cap.release()
    if not tiles:
        return
    cols = 4
    h, w = tiles[0].shape[:2]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    grid = np.concatenate(rows, 0)
    scale = min(1.0, 2400 / grid.shape[1])
    cv2.imwrite(str(out), cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--out-dir", type=Path, default=Path("track_quality"))
    ap.add_argument("--sheet-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for video in args.videos:
        stem = Path(video).stem
        render = args.out_dir / f"{stem}_tracked.mp4"
        raw, n = run(video, False, args.threads, None)
        smooth, _ = run(video, True, args.threads, str(render))
        lengths = [len(v) for v in smooth.values()]
        per_frame = sum(lengths) / max(n, 1)
        print(f"{stem}: {n} frames, {len(smooth)} tracks, mean track length {np.mean(lengths) if lengths else 0:.1f} "
              f"frames, {per_frame:.2f} tracked people per frame; jitter (acceleration / box height) "
              f"raw {jitter(raw):.4f}, smoothed {jitter(smooth):.4f}")
        sheet(render, args.out_dir / f"{stem}_sheet.png", args.sheet_every)


if __name__ == "__main__":
    main()
