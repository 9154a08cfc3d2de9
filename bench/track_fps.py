"""`posecal track` speed as a user gets it: start-up, end-to-end fps and the cost of each stage (python bench/track_fps.py).

Usage: python bench/track_fps.py [--video ../shared/data/videos/vtest_pedestrians_20s.avi] [--frames 0 (all)]
                                 [--threads 2] [--options default,every1,every2,torch] [--model fast]
                                 [--skip-startup] [--repeat 1]

Prints:
* start-up: process start to the results file of a one-frame video (`python -m posecal track`, default options)
  and of one image (`python -m posecal predict`), with a cold and then a warm ONNX cache (a fresh
  POSECAL_CACHE_DIR, so the user's own cache is left alone);
* per option set, run in a fresh process as `posecal track VIDEO --render OUT.mp4 ...` would: end-to-end fps
  (process start to files written), steady fps (first frame's end to the last's), process CPU ms per frame
  (what bounds fps on a busy machine: 2 cores / CPU per frame), tracks and tracked poses, and the busy
  milliseconds per frame of each stage (read, detect, boxes, pose, track, results, render, write; stages run in
  overlapping threads, so they add up to more than the wall time).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from posecal.tracking.job import TrackConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEOS = SHARED / "data" / "videos"
OPTIONS = {"default": [], "every1": ["--detect-every", "1"], "every2": ["--detect-every", "2"],
           "every3": ["--detect-every", "3"],
           "torch": ["--backend", "torch"], "flip": ["--flip"],
           "flow": ["--between", "flow"], "pose": ["--between", "pose"],
           "nanodet": ["--detector", "nanodet", "--detector-threshold", "0.325"],
           "noverifier": ["--verifier", "none", "--detector-threshold", "0.3"]}

# Runs in a child process: the job as the CLI runs it, timed from the interpreter's start.
CHILD = """
import json, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from posecal.tracking.job import TrackConfig
from posecal.tracking.units import run_track
args = json.loads(sys.argv[1])
stamps = []
s = run_track(TrackConfig(**args), keep=lambda f, t: stamps.append((time.perf_counter(), time.process_time())))
end = time.perf_counter()
n = max(len(stamps) - 1, 1)
print("RESULT " + json.dumps({"frames": s.frames, "tracks": s.tracks, "poses": s.results,
      "end_to_end_s": end - t0 + float(sys.argv[2]), "steady_fps": n / (stamps[-1][0] - stamps[0][0]),
      "cpu_ms": 1000 * (stamps[-1][1] - stamps[0][1]) / n, "stages": s.stages}))
"""


def interpreter_start_s() -> float:
    """Seconds from exec to the first line of a bare `python -c` (added to the child's own clock)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def trimmed(video: Path, frames: int, folder: Path) -> Path:
    """The first `frames` frames (0: the video itself), written as MJPG so every option decodes the same."""
    if frames <= 0:
        return video
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10
    out, writer = folder / f"{video.stem}_{frames}.avi", None
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return out


def cli_seconds(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "posecal", *args], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"posecal {' '.join(args)} failed:\n{run.stderr[-2000:]}")
    return time.perf_counter() - t


def startup(video: Path, folder: Path, model: str, threads: int) -> None:
    one = trimmed(video, 1, folder)
    image = folder / "frame0.jpg"
    cap = cv2.VideoCapture(str(video))
    cv2.imwrite(str(image), cap.read()[1])
    cap.release()
    env = {**os.environ, "POSECAL_CACHE_DIR": str(folder / "cache")}
    common = ["--no-progress", "--threads", str(threads)]
    for label, args in (("track, one frame", ["track", str(one), "--out", str(folder / "t.json"), "--model", model]),
                        ("predict, one image", ["predict", str(image), "--out", str(folder / "p.json")])):
        cold = cli_seconds(args + common, env)
        warm = min(cli_seconds(args + common, env) for _ in range(2))
        print(f"start-up, {label:20s}: {warm:5.2f} s with a warm ONNX cache ({cold:5.1f} s cold: the one-time export)")


def run_option(video: Path, folder: Path, name: str, model: str, threads: int, python_start: float) -> dict:
    extra = OPTIONS[name]
    args = {"videos": [str(video)], "out": str(folder / f"{name}.json"), "render": str(folder / f"{name}.mp4"),
            "model": model, "threads": threads, "progress": False,
            "detect_every": int(extra[1]) if extra and extra[0] == "--detect-every" else TrackConfig([]).detect_every,
            "backend": "torch" if "torch" in name else "onnx", "flip": name == "flip",
            "between": extra[1] if extra and extra[0] == "--between" else TrackConfig([]).between}
    pairs = dict(zip(extra[::2], extra[1::2]))      # the person options, as the CLI would pass them
    if "--detector" in pairs:
        args["detector"] = pairs["--detector"]
    if "--detector-threshold" in pairs:
        args["detector_threshold"] = float(pairs["--detector-threshold"])
    if "--verifier" in pairs:
        args["verifier"] = None if pairs["--verifier"] == "none" else pairs["--verifier"]
    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args), str(python_start)], capture_output=True,
                         text=True, env={**os.environ, "POSECAL_CACHE_DIR": str(folder / "cache")})
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    if run.returncode != 0 or not line:
        raise SystemExit(f"{name} failed:\n{run.stderr[-2000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=VIDEOS / "vtest_pedestrians_20s.avi")
    ap.add_argument("--frames", type=int, default=0, help="first N frames only (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--options", default="default,every1", help=f"comma list of {', '.join(OPTIONS)}")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs per option (the best is printed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{args.video.name}, {args.threads} thread(s), model {args.model}, CPUs {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}")
        video = trimmed(args.video, args.frames, tmp)
        python_start = interpreter_start_s()
        # warm the cache (and report start-up) before timing
        if not args.skip_startup:
            startup(args.video, tmp, args.model, args.threads)
        else:
            run_option(trimmed(args.video, 2, tmp), tmp, "default", args.model, args.threads, python_start)
        for name in args.options.split(","):
            best = max((run_option(video, tmp, name, args.model, args.threads, python_start)
                        for _ in range(args.repeat)), key=lambda r: r["steady_fps"])
            n = best["frames"]
            stages = ", ".join(f"{k} {1000 * v / n:.1f}" for k, v in best["stages"].items())
            print(f"{name:8s}: {n / best['end_to_end_s']:5.2f} fps end to end ({best['end_to_end_s']:.1f} s for {n} "
                  f"frames), {best['steady_fps']:5.2f} fps steady, {best['cpu_ms']:6.1f} CPU ms/frame; "
                  f"{best['tracks']} tracks, {best['poses']} tracked poses")
            print(f"          busy ms/frame: {stages}")


if __name__ == "__main__":
    main()
