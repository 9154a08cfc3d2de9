"""posecal's speed now against an earlier commit's, side by side in one run (python bench/speed_vs_start.py).

Usage: python bench/speed_vs_start.py [--ref 1502d35] [--photos 300] [--frames 200] [--rounds 1] [--threads 2]
                                     [--models accurate fast] [--precision auto|float|int8]
                                     [--skip predict,track,crop,stages,live] [--json OUT.json]

The earlier commit is checked out into a temporary git worktree (its shipped weights come with it) and both trees
run as a user runs them, `python -m posecal ...` in fresh processes with PYTHONPATH set to the tree, each with
its own warm ONNX cache, alternated round by round so the machine's drift falls on both alike:
* predict: `posecal predict DIR --model M` on `--photos` val crop images (evenly spaced over the val split):
  wall seconds, photos per second, poses written and the process's peak memory;
* track: `posecal track VIDEO --model M --render OUT.mp4 --max-frames N` on vtest (../shared/data/videos):
  wall seconds and frames per second end to end (process start to files written);
* crop: each tree's own `bench/latency.py --shipped M --int8 --peer` Lightning int8 (.tflite, ../shared/models),
  per crop with and without the flip test, as multiples of Lightning (printed as that script prints them);
* stages: this tree's bench/stage_profile.py run on each tree (it touches only onnxruntime and public names): ms
  per photo (COCO val crops, LSPET) and per frame (vtest, drawn) by stage (detect, verify, pose of kept people,
  pose of rejected candidates, the trust network's share, policy, render, other) and crops posed per person;
* live: this tree's bench/live_latency.py on each tree: `posecal track` on a local 25 fps MJPEG stream of vtest
  for 12 s (300 frames): frames that got poses.
`--precision` goes to every posecal command of both trees (auto: each tree's own choice for this CPU; float: what
auto runs on a CPU without VNNI, to stand in for one). The CPU's name and its int8-relevant instruction sets head
the output, and each tree's line names the precision its default runs.
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VAL = SHARED / "data" / "coco-val2017-crops" / "annotations" / "val.json"
IMAGES = SHARED / "data" / "coco-val2017-crops" / "images"
VIDEO = SHARED / "data" / "videos" / "vtest_pedestrians_20s.avi"
PEER = SHARED / "models" / "movenet_singlepose_lightning_int8.tflite"


def cpu_line() -> str:
    """The CPU's model name and the instruction sets that decide int8's path (from /proc/cpuinfo where it exists)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return f"CPU: {os.uname().machine}"
    text = info.read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith("avx") or "vnni" in f]
    return f"CPU: {name}, {os.cpu_count()} cores; {' '.join(wanted) or 'no AVX'}"


def val_photos(n: int, folder: Path) -> Path:
    """`n` val crop images evenly spaced over the val split, linked into folder/photos."""
    files = sorted({img["file_name"] for img in json.loads(VAL.read_text())["images"]})
    step = len(files) / n
    chosen = [files[int(i * step)] for i in range(min(n, len(files)))]
    out = folder / "photos"
    out.mkdir()
    for name in chosen:
        (out / name).symlink_to(IMAGES / name)
    return out


def trimmed(video: Path, frames: int, folder: Path) -> Path:
    """The first `frames` frames of `video` as an MJPG .avi (so both trees decode the same file the same way)."""
    out = folder / f"clip{frames}.avi"
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        writer.write(frame)
    cap.release()
    writer.release()
    return out


def timed(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Wall seconds and peak memory (MB) of one child process (os.wait4 gives its own peak, not this process's).
    Its output goes to a file, not a pipe: a child that fills a pipe nobody reads until it exits would hang."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{log.read()[-2000:]}")
    return {"s": wall, "mb": usage.ru_maxrss / 1024}


class Tree:
    """One checkout of posecal run as a user runs it: `python -m posecal` with PYTHONPATH on the tree."""

    def __init__(self, label: str, path: Path, cache: Path, threads: int):
        self.label, self.path, self.threads = label, path, threads
        self.env = {**os.environ, "PYTHONPATH": str(path), "POSECAL_CACHE_DIR": str(cache)}

    def posecal(self, args: list[str], precision: str | None = None) -> dict:
        more = [] if precision in (None, "auto") else ["--precision", precision]
        return timed([sys.executable, "-m", "posecal", *args, *more, "--threads", str(self.threads),
                      "--no-progress"], self.env, self.path)

    def precision(self) -> str:
        """What precision this tree's default runs on this CPU (the same for every shipped graph), in its own
        words."""
        code = ("import sys\ntry:\n from posecal.devices import choose_precision\n"
                " print(*choose_precision('auto'), sep=': ')\nexcept ImportError:\n"
                " print('int8: the int8 graphs on every CPU (no precision setting yet)')")
        run = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=self.path, capture_output=True,
                             text=True, check=True)
        return run.stdout.strip()


def predict(tree: Tree, model: str, photos: Path, folder: Path, precision: str = "auto", r: int = 0) -> dict:
    # a file of its own each round: a finished run keeps its parts, so the same --out again would resume, not pose
    out = folder / f"{tree.label}_{model}_predict_{r}.json"
    run = tree.posecal(["predict", str(photos), "--model", model, "--out", str(out)], precision)
    poses = json.loads(out.read_text())
    n = len(list(photos.iterdir()))
    return {"s": round(run["s"], 2), "photos_per_s": round(n / run["s"], 3), "poses": len(poses),
            "peak_mb": round(run["mb"])}


def track(tree: Tree, model: str, clip: Path, frames: int, folder: Path, precision: str = "auto", r: int = 0) -> dict:
    out = folder / f"{tree.label}_{model}_track_{r}.json"   # a file of its own each round, as predict's
    run = tree.posecal(["track", str(clip), "--model", model, "--out", str(out),
                        "--render", str(folder / f"{tree.label}_{model}.mp4"), "--max-frames", str(frames)],
                       precision)
    poses = json.loads(out.read_text())
    return {"s": round(run["s"], 2), "fps": round(frames / run["s"], 2), "poses": len(poses),
            "tracks": len({p.get("track_id") for p in poses}), "peak_mb": round(run["mb"])}


def crop(tree: Tree, models: list[str], threads: int) -> str:
    """The tree's own per-crop bench against Lightning int8; the lines it prints for the shipped graphs."""
    run = subprocess.run([sys.executable, "bench/latency.py", "--shipped", *models, "--int8", "--peer", str(PEER),
                          "--rounds", "2", "--n", "50", "--threads", str(threads)],
                         env=tree.env, cwd=tree.path, capture_output=True, text=True)
    if run.returncode != 0:
        return f"failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
    return run.stdout


def stages(tree: Tree, model: str, precision: str, folder: Path) -> dict:
    """This tree's bench/stage_profile.py on `tree`: ms per photo and per frame by stage."""
    out = folder / f"{tree.label}_{model}_stages.json"
    timed([sys.executable, str(ROOT / "bench" / "stage_profile.py"), "--model", model, "--precision", precision,
           "--threads", str(tree.threads), "--json", str(out)], tree.env, tree.path)
    return json.loads(out.read_text())


def live(tree: Tree, model: str, precision: str) -> dict:
    """This tree's bench/live_latency.py on `tree`: a 25 fps MJPEG stream of vtest for 12 s (300 frames)."""
    extra = "" if precision == "auto" else f"--precision {precision}"
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        run = subprocess.run([sys.executable, str(ROOT / "bench" / "live_latency.py"), "--video", str(VIDEO),
                              "--seconds", "12", "--models", model, "--cadences", "adaptive", "--threads",
                              str(tree.threads), "--tree", str(tree.path), "--extra", extra, "--json", out.name],
                             env={**os.environ, "POSECAL_CACHE_DIR": tree.env["POSECAL_CACHE_DIR"]},
                             capture_output=True, text=True)
        if run.returncode != 0:
            return {"failed": run.stderr.strip()[-500:]}
        row = json.loads(Path(out.name).read_text())[0]
    return {k: row[k] for k in ("arrived", "processed", "fps", "line_p50", "line_p95")}


def warm(tree: Tree, models: list[str], photos: Path, clip1: Path, folder: Path) -> None:
    """Each model's ONNX graphs exported into the tree's cache once, outside the timed runs."""
    one = folder / f"warm_{tree.label}"
    one.mkdir()
    first = sorted(photos.iterdir())[0]
    (one / first.name).symlink_to(first.resolve())
    for model in models:
        tree.posecal(["predict", str(one), "--model", model, "--out", str(folder / "warm.json")])
        tree.posecal(["track", str(clip1), "--model", model, "--out", str(folder / "warm_t.json")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="1502d35", help="the earlier commit (default: issue 82's start)")
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["accurate", "fast"])
    ap.add_argument("--precision", default="auto", choices=("auto", "float", "int8"))
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: predict, track, crop, stages, live")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    for need in (VAL, VIDEO) + ((PEER,) if "crop" not in skip else ()):
        if not need.exists():
            raise SystemExit(f"{need}: not found (this bench runs on ../shared's data and models)")
    print(cpu_line())
    results: dict = {"cpu": cpu_line(), "ref": args.ref, "threads": args.threads, "precision": args.precision,
                     "rows": []}
    with tempfile.TemporaryDirectory(prefix="posecal_speed_") as tmp:
        folder = Path(tmp)
        ref_tree = folder / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", str(ref_tree), args.ref], cwd=ROOT, check=True,
                       capture_output=True)
        (folder / "shared").symlink_to(SHARED.resolve())     # the earlier tree's benches find ../shared too
        try:
            trees = [Tree(f"start_{args.ref}", ref_tree, folder / "cache_ref", args.threads),
                     Tree("now", ROOT, folder / "cache_now", args.threads)]
            for tree in trees:
                print(f"{tree.label:16s} precision {tree.precision()}")
            if args.precision != "auto":
                print(f"every run here: --precision {args.precision}")
            photos = val_photos(args.photos, folder)
            clip = trimmed(VIDEO, args.frames, folder)
            clip1 = trimmed(VIDEO, 1, folder)
            for tree in trees:
                warm(tree, args.models, photos, clip1, folder)
            for r in range(args.rounds):
                for model in args.models:
                    for tree in trees if r % 2 == 0 else trees[::-1]:
                        row = {"round": r, "tree": tree.label, "model": model}
                        if "predict" not in skip:
                            row["predict"] = predict(tree, model, photos, folder, args.precision, r)
                        if "track" not in skip:
                            row["track"] = track(tree, model, clip, args.frames, folder, args.precision, r)
                        if "live" not in skip:
                            row["live"] = live(tree, model, args.precision)
                        if "stages" not in skip:
                            row["stages"] = stages(tree, model, args.precision, folder)
                        results["rows"].append(row)
                        print(json.dumps(row), flush=True)
            if "crop" not in skip:
                for tree in trees:
                    results[f"crop_{tree.label}"] = crop(tree, args.models, args.threads)
                    print(f"--- per crop, {tree.label} (its own bench/latency.py) ---")
                    print(results[f"crop_{tree.label}"], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(ref_tree)], cwd=ROOT, capture_output=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
