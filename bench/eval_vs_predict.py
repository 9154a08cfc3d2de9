"""`posecal eval` vs `posecal predict` on the same pictures and boxes, timed end to end in one run.

eval poses COCO val's labelled persons on their GT boxes; predict poses the same image files with the same boxes
given as a boxes file (per-image JSON), so both run the model on the same crops: what eval costs beyond predict
is what it does besides posing (reading labels, metrics, results.json). Same model, precision and threads; each
command a fresh process writing a fresh folder; the two interleaved (eval, predict, eval, predict, ...), so that
a busy spell of a shared machine falls on both. Prints each run's wall seconds and CPU seconds (user + system
of the command's process: less swayed by other work on the machine than wall time), the fastest of each, their
ratios, and the load average at each run's start.

Usage: python bench/eval_vs_predict.py [--root REPO ...] [--pictures N] [--rounds 2] [--model accurate]
                                       [--precision float] [--threads 2]
--root runs another checkout's posecal (e.g. a `git worktree` of an earlier commit) on the same inputs; given more
than once, each round runs every checkout in turn, so that they meet the same spells of load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"


def labelled_subset(annotations: Path, pictures: int | None, folder: Path) -> tuple[Path, list[str]]:
    """(a COCO file of the first `pictures` images that have a labelled person (all: None), their file names)."""
    data = json.loads(annotations.read_text())
    labelled = [a for a in data["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    ids = list(dict.fromkeys(a["image_id"] for a in labelled))[:pictures]
    keep = set(ids)
    subset = dict(data, images=[im for im in data["images"] if im["id"] in keep],
                  annotations=[a for a in data["annotations"] if a["image_id"] in keep])
    path = folder / "annotations.json"
    path.write_text(json.dumps(subset))
    return path, [im["file_name"] for im in subset["images"]]


def boxes_file(annotations: Path, folder: Path) -> Path:
    """eval's boxes (each labelled, non-crowd person's GT box, score 1) as predict's per-image boxes file."""
    data = json.loads(annotations.read_text())
    names = {im["id"]: im["file_name"] for im in data["images"]}
    boxes: dict[str, list] = {}
    for a in data["annotations"]:
        if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0:
            boxes.setdefault(names[a["image_id"]], []).append([float(v) for v in a["bbox"]] + [1.0])
    path = folder / "boxes.json"
    path.write_text(json.dumps(boxes))
    return path


def timed(root: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python -m posecal ARGS` run of the checkout at `root` (refused: its
    stderr, and exit)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "posecal", *args], cwd=root, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"posecal {args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, action="append", help="a checkout to run (default: this one)")
    ap.add_argument("--annotations", type=Path, default=CROPS / "annotations" / "val.json")
    ap.add_argument("--images", type=Path, default=CROPS / "images")
    ap.add_argument("--pictures", type=int, default=None, help="the first N labelled pictures (default: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--precision", default="float")
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    if not a.annotations.is_file():
        sys.exit(f"{a.annotations}: not found (the COCO val crops live in ../shared/data)")
    common = ["--model", a.model, "--precision", a.precision, "--threads", a.threads, "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        annotations, names = labelled_subset(a.annotations, a.pictures, tmp)
        boxes = boxes_file(annotations, tmp)
        inputs = [str(a.images.resolve() / n) for n in names]
        roots = a.root or [Path(__file__).resolve().parents[1]]
        print(f"{len(names)} pictures, {sum(len(v) for v in json.loads(boxes.read_text()).values())} persons; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        runs: dict[tuple[Path, str], list[tuple[float, float]]] = {}
        for n in range(a.rounds):
            for k, root in enumerate(roots):
                out = tmp / f"round{n}-root{k}"   # every run writes afresh: predict keeps its parts for a next run
                for command, args in (("eval", ["eval", "--annotations", str(annotations), "--images",
                                                str(a.images.resolve()), "--out", str(out / "eval")]),
                                      ("predict", ["predict", *inputs, "--boxes", str(boxes), "--out",
                                                   str(out / "predict.json")])):
                    load = os.getloadavg()[0]
                    wall, cpu = timed(root, [*args, *common])
                    runs.setdefault((root, command), []).append((wall, cpu))
                    print(f"round {n + 1} {root}: {command} {wall:.1f} s wall, {cpu:.1f} s CPU (load {load:.2f})",
                          flush=True)
    for root in roots:
        wall = {c: min(w for w, _ in runs[root, c]) for c in ("eval", "predict")}
        cpu = {c: min(u for _, u in runs[root, c]) for c in ("eval", "predict")}
        print(f"{root} fastest: eval {wall['eval']:.1f} s, predict {wall['predict']:.1f} s wall, eval/predict "
              f"{wall['eval'] / wall['predict']:.2f}; CPU eval {cpu['eval']:.1f} s, predict {cpu['predict']:.1f} s, "
              f"eval/predict {cpu['eval'] / cpu['predict']:.2f}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
