"""`posecal track` on a live stream as a user runs it: what share of a real-time stream's frames gets poses, and how
old a frame's poses are when their JSON line arrives (python bench/live_latency.py).

Usage: python bench/live_latency.py [--video ../shared/data/videos/intel_two_persons_walking.mp4] [--fps 25]
                                    [--seconds 20] [--models fast,accurate] [--threads 2] [--extra "..."]
                                    [--cadences adaptive,fixed] [--tree CHECKOUT]

Starts tests/mjpeg_server.py on 127.0.0.1 (the video's frames as multipart/x-mixed-replace JPEGs, looped, at
--fps, paced in real time as a camera sends them), then per model runs `python -m posecal track URL --out -
--duration SECONDS --model M --threads T` in a fresh process and reads its stdout line by line as the lines come.
Prints per model: frames that arrived, frames processed (share), processed fps, and the median and p95 of
* line latency: capture_time (when OpenCV handed the frame to posecal's reader thread) to the moment this script
  read the record's line from the pipe: what the next program in a pipe sees;
* latency_ms: the record's own field (capture to the line being written).
The stream's own delay before capture (sending, FFmpeg's demuxing and decoding) is not in either; on 127.0.0.1
it is a few ms.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from mjpeg_server import MjpegServer, video_jpegs  # noqa: E402

SHARED = REPO.parent / "shared"
VIDEO = SHARED / "data" / "videos" / "intel_two_persons_walking.mp4"


def run_one(url: str, model: str, seconds: float, threads: int, extra: list[str], tree: Path = REPO) -> dict:
    """One `posecal track URL --out -` run of the posecal in `tree` (default: this checkout), read as it writes."""
    cmd = [sys.executable, "-m", "posecal", "track", url, "--out", "-", "--duration", str(seconds),
           "--model", model, "--threads", str(threads), *extra]
    env = os.environ | {"PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    arrivals = []
    for line in proc.stdout:                      # each record as it comes, stamped on arrival
        arrivals.append((time.time(), line))
    proc.wait()
    reader.join(timeout=5)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err_lines)}")
    records = [(t, json.loads(line)) for t, line in arrivals]
    line_ms = np.array([(t - r["capture_time"]) * 1000 for t, r in records])
    own_ms = np.array([r["latency_ms"] for _, r in records])
    report = next((line for line in err_lines if "frame(s) arrived" in line), "")
    cadence = next((line.strip() for line in err_lines if "adaptive cadence" in line), "")
    m = re.search(r"(\d+) frame\(s\) arrived, (\d+) processed", report)
    arrived, processed = (int(m.group(1)), int(m.group(2))) if m else (0, len(records))
    span = records[-1][1]["capture_time"] - records[0][1]["capture_time"] if len(records) > 1 else 0.0
    return {"model": model, "arrived": arrived, "processed": processed,
            "share": processed / arrived if arrived else 0.0, "fps": (len(records) - 1) / span if span else 0.0,
            "people": sum(len(r["people"]) for _, r in records),
            "line_p50": float(np.median(line_ms)), "line_p95": float(np.percentile(line_ms, 95)),
            "own_p50": float(np.median(own_ms)), "own_p95": float(np.percentile(own_ms, 95)),
            "report": report.strip(), "cadence": cadence}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=str(VIDEO), help="the video served as the live stream")
    ap.add_argument("--fps", type=float, default=25.0, help="the stream's rate (default: 25)")
    ap.add_argument("--seconds", type=float, default=20.0, help="--duration of each run (default: 20)")
    ap.add_argument("--models", default="fast,accurate", help="comma-separated --model values")
    ap.add_argument("--threads", type=int, default=2, help="--threads of posecal track (default: 2)")
    ap.add_argument("--extra", default="", help="more posecal track options, e.g. '--detect-every 1'")
    ap.add_argument("--cadences", default="adaptive,fixed",
                    help="adaptive (the default: tracking/cadence.py), fixed (--no-adaptive: the newest frame, "
                         "detector every --detect-every frames), or both, run side by side (default: both)")
    ap.add_argument("--tree", type=Path, default=REPO,
                    help="the posecal checkout to run (default: this one; bench/speed_vs_start.py passes an earlier one)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if not Path(args.video).is_file():
        raise SystemExit(f"{args.video}: not found (the shared videos: ../shared/data/videos)")
    rows = []
    with MjpegServer(video_jpegs(args.video), fps=args.fps) as server:
        print(f"serving {Path(args.video).name} at {args.fps:g} fps on {server.url}; {args.seconds:g} s per model, "
              f"--threads {args.threads} {args.extra}".rstrip(), flush=True)
        for model in args.models.split(","):
            for cadence in args.cadences.split(","):
                extra = args.extra.split() + (["--no-adaptive"] if cadence == "fixed" else [])
                row = run_one(server.url, model, args.seconds, args.threads, extra, args.tree)
                row["cadence_mode"] = cadence
                rows.append(row)
                print(f"  {model} ({cadence}): {row['report']}" + (f"\n    {row['cadence']}" if row["cadence"]
                                                                   else ""), flush=True)
    print("\n| model | cadence | arrived | processed | share | fps | capture -> line p50 / p95 ms | "
          "latency_ms p50 / p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['cadence_mode']} | {r['arrived']} | {r['processed']} | {r['share']:.0%} | "
              f"{r['fps']:.1f} | "
              f"{r['line_p50']:.0f} / {r['line_p95']:.0f} | {r['own_p50']:.0f} / {r['own_p95']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
