"""Persons per second of `posecal eval` as one process and under torchrun with 2 ranks (python bench/scaling.py).

`posecal eval` (GT boxes, flip test, the default model unless --model) on the first --persons persons of the COCO
val2017 person crops in ../shared, run as separate commands: one process with 1 thread and with --threads T
(T = 2 by default, all of a 2-core machine), then `torchrun --standalone --nproc-per-node 2 -m posecal eval` with 1
thread per rank. Per run it prints the persons per second of the job (metrics.json's `seconds`: model load,
inference, gathering, metrics and writes, timed by rank 0) and end to end (the whole command: Python and torch
start-up on every rank, the plots of report.html), and checks that the ranks' metrics equal the one-thread
process's (the same threads per forward pass, so the same float32 sums; a different thread count may move the
last digits of `score`).

Usage: python bench/scaling.py [--persons 200] [--model accurate] [--threads 2] [--nproc 2]
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

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO.parent / "shared" / "data" / "coco-val2017-crops"


def subset(n: int, folder: Path) -> Path:
    """The val file cut to its first n evaluated persons (labelled, not crowd) and their images."""
    data = json.loads((CROPS / "annotations" / "val.json").read_text())
    anns = [a for a in data["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0][:n]
    ids = {a["image_id"] for a in anns}
    out = folder / f"val_{n}.json"
    out.write_text(json.dumps(data | {"annotations": anns, "images": [i for i in data["images"] if i["id"] in ids]}))
    return out


def run(label: str, launcher: list[str], threads: int, ann: Path, out: Path, model: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    cmd = [*launcher, "-m", "posecal", "eval", "--annotations", str(ann), "--images", str(CROPS / "images"),
           "--out", str(out), "--threads", str(threads), "--no-progress", *(["--model", model] if model else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"{label}: failed\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    n = metrics["num_instances"]
    print(f"{label:<34} {n} persons: job {metrics['seconds']:6.1f} s = {n / metrics['seconds']:5.2f} persons/s; "
          f"end to end {wall:6.1f} s = {n / wall:5.2f} persons/s; AP {metrics['ap'][metrics['score_mode']]:.1f}",
          flush=True)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=200)
    ap.add_argument("--model", help="accurate, fast or a model file (default: posecal's default model)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the second one-process run")
    ap.add_argument("--nproc", type=int, default=2, help="ranks of the torchrun run (1 thread each)")
    args = ap.parse_args()
    if not (CROPS / "annotations" / "val.json").is_file():
        sys.exit(f"needs the COCO val2017 person crops in {CROPS}")
    print(f"{os.cpu_count()} CPU cores seen; model {args.model or 'default'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ann = subset(args.persons, folder)
        one = run("1 process, 1 thread", [sys.executable], 1, ann, folder / "one1", args.model)
        run(f"1 process, {args.threads} threads", [sys.executable], args.threads, ann, folder / "one2", args.model)
        ranks = run(f"torchrun {args.nproc} ranks x 1 thread",
                    [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}"],
                    1, ann, folder / "ranks", args.model)
        same = {k: v for k, v in one.items() if k != "seconds"} == {k: v for k, v in ranks.items() if k != "seconds"}
        print(f"metrics.json of the ranks == of 1 process, 1 thread (all but seconds): {same}")


if __name__ == "__main__":
    main()
