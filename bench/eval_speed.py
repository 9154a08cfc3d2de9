"""`posecal eval` persons/s, PyTorch against ONNX Runtime, beside `predict --boxes` on the same persons
(python bench/eval_speed.py [--persons 300] [--models accurate fast] [--rounds 2]).

Issue 32: eval ran the network in PyTorch while predict ran the same network in onnxruntime (its cached
export). This times, on the first N persons of the COCO val crops (../shared; GT boxes, flip test, 2 threads,
each run a process of its own, from the command line as a user runs it):

- `posecal eval --backend torch` (eval before issue 32),
- `posecal eval --backend onnx` (eval's default since),
- `posecal predict --boxes` with the same persons' boxes (the network work alone, without metrics and plots),

alternated `--rounds` times per model so that a machine's slow minute falls on all three alike; the export is
made once before (as the cache keeps it for a user). Prints wall seconds per run, persons/s, the onnx/torch
speed-up and the eval/predict time ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"


def subset(n: int, folder: Path) -> tuple[Path, Path, int]:
    """The first n persons of val as a COCO file, and their GT boxes as a predict boxes file."""
    data = json.loads((CROPS / "annotations" / "val.json").read_text())
    anns = [a for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")][:n]
    ids = {a["image_id"] for a in anns}
    images = [im for im in data["images"] if im["id"] in ids]
    ann = folder / "val_subset.json"
    ann.write_text(json.dumps(dict(data, images=images, annotations=anns)))
    names = {im["id"]: im["file_name"] for im in images}
    boxes: dict[str, list] = {}
    for a in anns:
        boxes.setdefault(names[a["image_id"]], []).append(a["bbox"])
    box_file = folder / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    linked = folder / "images"          # the subset's images alone: predict reads every image of its folder
    linked.mkdir()
    for name in names.values():
        (linked / name).symlink_to(CROPS / "images" / name)
    return ann, box_file, len(anns)


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "posecal", *args, "--threads", "2", "--no-progress"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"posecal {' '.join(args)} failed:\n{run.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--models", nargs="+", default=["accurate", "fast"])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not CROPS.is_dir():
        print(f"needs the COCO val crops in {CROPS}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ann, boxes, n = subset(a.persons, tmp)
        images = str(tmp / "images")
        runs = {
            "eval torch": lambda m: ["eval", "--annotations", str(ann), "--images", images, "--out",
                                     str(tmp / "ev_t"), "--model", m, "--backend", "torch"],
            "eval onnx": lambda m: ["eval", "--annotations", str(ann), "--images", images, "--out",
                                    str(tmp / "ev_o"), "--model", m, "--backend", "onnx"],
            "predict --boxes": lambda m: ["predict", images, "--boxes", str(boxes), "--out", str(tmp / "p.json"),
                                          "--model", m, "--backend", "onnx"]}
        print(f"{n} COCO val persons, GT boxes, flip test, 2 threads; seconds per run (each a new process)")
        for model in a.models:
            timed(runs["eval onnx"](model))        # the export, once, as the user's cache keeps it
            seconds: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(a.rounds):
                for name, args in runs.items():
                    seconds[name].append(timed(args(model)))
            med = {k: statistics.median(v) for k, v in seconds.items()}
            for name, values in seconds.items():
                print(f"  {model:9s} {name:16s} " + " ".join(f"{v:6.1f}" for v in values)
                      + f"  -> {n / med[name]:5.2f} persons/s")
            print(f"  {model:9s} eval onnx vs torch: {med['eval torch'] / med['eval onnx']:.2f}x faster; "
                  f"eval onnx / predict --boxes time: {med['eval onnx'] / med['predict --boxes']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
