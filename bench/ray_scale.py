"""Pictures per second of `posecal predict`: one process, --engine ray with 1 and 2 workers (python bench/ray_scale.py).

Issue 55, item 7 ("scale on paper"). On the first N photos (default 400) of the COCO val person crops
(../shared/data/coco-val2017-crops: annotations/val.json's images, in its order), side by side in one run:

1. `posecal predict FOLDER --out X.json --no-progress` (the product's defaults: model, detector, verifier, batch
   size, threads), then the same with `--engine ray --workers 1` and `--engine ray --workers 2`. Each is the CLI's
   own main() in a fresh Python subprocess (a user's command: imports, Ray's start, model opening, the work, the
   merge, Ray's shutdown), so the wall time is the whole command's. Inside, timestamps are taken around the
   existing calls (nothing is reimplemented): Ray's start (ray.init), each actor's model opened
   (PoseBatches.__init__ done), the one process's model opened (open_predictor), the last picture done (the
   driver told of the last input's part / the last frame handed to the results). Pictures/s are given with start-up (N / the command's
   wall time) and without (N / from the first model opened to the last picture done).
2. The ratio 2 workers / 1 worker, and a check that the three results files hold the same persons and keypoints
   (image ids, file names, persons per image; keypoints within 1e-3 px, scores within 1e-5).
3. The per-stage split a capacity model needs, in this process on a sample of those photos (default 100), threads
   as the one process uses: reading the file, decoding it, the person detector, the person verifier, the pose
   network with its trust heads (the estimator's batch call: crops, network, flip, calibration), the rest (the
   person policy, the frame loop), timed around the Predictor's own pieces while its frame loop runs; persons,
   boxes and crops per photo.

Threads are the product's: one process takes every core; each Ray worker takes the cores shared among the
workers (2 cores here: 2 threads for 1 worker, 1 thread each for 2). The photos are copied to a temporary folder
and read once before the runs, so all three read from the page cache.

Usage: python bench/ray_scale.py [--images 400] [--sample 100] [--json bench/results/ray_scale.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"
RESULTS = Path(__file__).resolve().parent / "results" / "ray_scale.json"
RUNS = {"process": [], "ray_1": ["--engine", "ray", "--workers", "1"], "ray_2": ["--engine", "ray", "--workers", "2"]}


# ---- one run, in its own subprocess: the CLI's main() with timestamps around the existing calls ----

def _one_run(name: str, folder: str, out: str, marks_file: str) -> None:
    marks: dict[str, list[float]] = {"imported": [time.time()]}
    mark = lambda key: marks.setdefault(key, []).append(time.time())  # noqa: E731

    import posecal.predict.job as job
    from posecal.cli.main import main
    from posecal.parallel import ray_rows

    opened = job.open_predictor

    def open_predictor(*a, **k):   # the one process's model opened
        predictor = opened(*a, **k)
        mark("model_ready")
        return predictor

    job.open_predictor = open_predictor
    done = job._Results.done

    def frame_done(self, *a, **k):
        done(self, *a, **k)
        mark("work_end")

    job._Results.done = frame_done
    import posecal.predict.units as units

    run_rows = ray_rows.run_rows

    def timed_rows(ray, ray_cfg, job_, rows, store, said, *a, **k):   # the driver told of each input's part
        def told(part):
            said(part)
            mark("work_end")
        return run_rows(ray, ray_cfg, job_, rows, store, told, *a, **k)

    ray_rows.run_rows = timed_rows
    start = ray_rows._start

    def ray_start(*a, **k):
        mark("ray_init_start")
        started = start(*a, **k)
        mark("ray_init_end")
        return started

    ray_rows._start = ray_start
    actor_marks = Path(marks_file).with_suffix(".actors")
    if name != "process":
        from posecal.predict.batches import PoseBatches

        class TimedPoseBatches(PoseBatches):   # defined in __main__: Ray ships it to the actors by value
            marks_to = str(actor_marks)

            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                with open(self.marks_to, "a") as f:
                    f.write(f"{time.time()} {self.predictor.threads}\n")

        run_units = units.run_predict
        units.run_predict = lambda cfg, log=None, engine=None: run_units(cfg, log, engine, TimedPoseBatches)
    rc = main(["predict", folder, "--out", out, "--no-progress", *RUNS[name]])
    mark("finished")
    if actor_marks.exists():
        lines = [line.split() for line in actor_marks.read_text().split("\n") if line]
        marks["model_ready"] = sorted(float(t) for t, _ in lines)
        marks["actor_threads"] = [int(n) for _, n in lines]
    Path(marks_file).write_text(json.dumps({"rc": rc, "marks": marks}))
    sys.exit(rc or 0)


class _Busy(threading.Thread):
    """What else the machine runs meanwhile: runnable tasks (/proc/loadavg's running count, ours included: about
    2 for a run on 2 cores) sampled twice a second, and the 1-minute load average at the start and the end."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop, self.load = [], threading.Event(), [os.getloadavg()[0]]

    def run(self):
        while not self.stop.wait(0.5):
            try:
                self.samples.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
            except (OSError, ValueError, IndexError):   # not Linux: the load averages only
                return

    def figures(self) -> dict:
        self.stop.set()
        self.join()
        self.load.append(os.getloadavg()[0])
        out = {"load_1min_start_end": [round(x, 2) for x in self.load]}
        if self.samples:
            out["mean_runnable_tasks"] = round(float(np.mean(self.samples)), 2)
        return out


def _run(name: str, folder: Path, tmp: Path, n: int) -> dict:
    out, marks_file = tmp / f"{name}.json", tmp / f"{name}.marks.json"
    busy = _Busy()
    busy.start()
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--one", name, str(folder), str(out), str(marks_file)],
                          capture_output=True, text=True)
    t_exit = time.time()
    machine = busy.figures()
    if proc.returncode != 0 or not marks_file.exists():
        raise SystemExit(f"{name}: the run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    m = json.loads(marks_file.read_text())["marks"]
    ready, work_end = min(m["model_ready"]), max(m["work_end"])
    row = {
        "command": "posecal predict FOLDER --out X.json --no-progress " + " ".join(RUNS[name]),
        "pictures": n,
        "wall_s": round(t_exit - t0, 2),
        "pictures_per_s_with_startup": round(n / (t_exit - t0), 2),
        "startup_s": round(ready - t0, 2),   # spawn -> first model opened (imports, Ray's start, actors)
        "work_s": round(work_end - ready, 2),
        "pictures_per_s_without_startup": round(n / (work_end - ready), 2),
        "after_work_s": round(t_exit - work_end, 2),   # merge, results file, Ray's shutdown, exit
    }
    if "ray_init_start" in m:
        row["ray_init_s"] = round(m["ray_init_end"][0] - m["ray_init_start"][0], 2)
        row["actors_ready_after_ray_init_s"] = [round(t - m["ray_init_end"][0], 2) for t in m["model_ready"]]
        row["threads_per_worker"] = m["actor_threads"]
    else:
        from posecal.parallel import default_threads
        row["threads"] = default_threads()
    row["machine_meanwhile"] = machine
    row["stderr"] = [line for line in proc.stderr.splitlines() if line.strip()][:5]   # what the command said
    return row


# ---- the same results ----

def compare(a: list[dict], b: list[dict], kp_tol: float = 1e-3, score_tol: float = 1e-5) -> str | None:
    """None when the same persons (image, file, count, order) and keypoints / scores within tolerance; else why."""
    if [(e["image_id"], e["file_name"]) for e in a] != [(e["image_id"], e["file_name"]) for e in b]:
        return f"different persons: {len(a)} vs {len(b)} entries, or different images / order"
    worst_kp, worst_score = 0.0, 0.0
    for x, y in zip(a, b):
        if set(x) != set(y):
            return f"{x['file_name']}: different fields"
        worst_kp = max(worst_kp, float(np.max(np.abs(np.subtract(x["keypoints"], y["keypoints"])))))
        worst_score = max(worst_score, abs(x["score"] - y["score"]),
                          float(np.max(np.abs(np.subtract(x["keypoint_quality"], y["keypoint_quality"])))))
    if worst_kp > kp_tol or worst_score > score_tol:
        return f"keypoints differ by up to {worst_kp:.2g} px, scores by {worst_score:.2g}"
    return None


# ---- the per-stage split, in this process ----

class _Timed:
    """A callable (a reading step, the detector, the verifier) timed into `stages[key]`, its other attributes passed through."""

    def __init__(self, inner, stages: dict, key: str):
        self._inner, self._stages, self._key = inner, stages, key

    def __call__(self, *a, **k):
        t = time.perf_counter()
        try:
            return self._inner(*a, **k)
        finally:
            self._stages[self._key] += time.perf_counter() - t

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name == "threshold_factor":   # the detector's look at the picture's colour: counted as the detector's
            return _Timed(attr, self._stages, self._key)
        return attr


def stage_split(files: list[Path], sample: int) -> dict:
    """Seconds per photo of each stage, timed around the Predictor's pieces while its own frame loop runs."""
    import posecal.data.images as images
    from posecal.data.sources import iter_frames
    from posecal.parallel import default_threads
    from posecal.predict.job import PredictConfig, open_predictor, score_mode_of

    cfg = PredictConfig(inputs=[], threads=default_threads(), progress=False)   # what `posecal predict` opens
    t = time.perf_counter()
    predictor = open_predictor(cfg, None)
    open_s = time.perf_counter() - t
    mode = score_mode_of(cfg, predictor)
    stages = dict.fromkeys(("read", "decode", "detector", "verifier", "pose_network_and_trust"), 0.0)
    counts = {"boxes": 0, "crops": 0, "persons": 0}
    checked_bytes, decode = images._checked_bytes, images._decode   # read_image's two steps
    pipeline = predictor.pipeline
    estimate = pipeline.estimate

    def estimated(items):
        counts["crops"] += sum(len(boxes) for _, boxes, _ in items)
        t = time.perf_counter()
        try:
            return estimate(items)
        finally:
            stages["pose_network_and_trust"] += time.perf_counter() - t

    detector = pipeline.detector
    boxes_of = pipeline.boxes

    def boxes(bgr):
        found = boxes_of(bgr)
        counts["boxes"] += len(found[0])
        return found

    files = files[:sample]
    for warm in iter_frames([(p, p.name) for p in files[:3]]):   # the first calls of each session, not counted
        predictor.pipeline(warm.bgr)
    images._checked_bytes, images._decode = _Timed(checked_bytes, stages, "read"), _Timed(decode, stages, "decode")
    pipeline.estimate, pipeline.boxes = estimated, boxes
    pipeline.detector = _Timed(detector, stages, "detector")
    if pipeline.verifier is not None:
        pipeline.verifier = _Timed(pipeline.verifier, stages, "verifier")
    try:
        t = time.perf_counter()
        frames = ((f, f) for f in iter_frames([(p, p.name) for p in files]))
        for _, picture in predictor.pictures(frames, mode=mode):
            counts["persons"] += len(picture.people)
        total = time.perf_counter() - t
    finally:
        images._checked_bytes, images._decode = checked_bytes, decode
    n = len(files)
    per_photo = {k: v / n for k, v in stages.items()}
    per_photo["other"] = total / n - sum(per_photo.values())   # person policy, frame loop, crops' bookkeeping
    return {
        "photos": n, "threads": predictor.threads, "batch_size": predictor.batch_size, "model_open_s": round(open_s, 2),
        "seconds_per_photo": {k: round(v, 5) for k, v in per_photo.items()},
        "total_seconds_per_photo": round(total / n, 5),
        "pose_network_and_trust_seconds_per_crop": round(stages["pose_network_and_trust"] / max(1, counts["crops"]), 5),
        "detector_boxes_per_photo": round(counts["boxes"] / n, 3),
        "crops_per_photo": round(counts["crops"] / n, 3),
        "persons_per_photo": round(counts["persons"] / n, 3),
        "mean_file_bytes": int(np.mean([p.stat().st_size for p in files])),
        "mean_pixels": int(np.mean([w * h for w, h in (_size(p) for p in files)])),
    }


def _size(path: Path) -> tuple[int, int]:
    import cv2
    h, w = cv2.imread(str(path)).shape[:2]
    return w, h


def _load() -> tuple[float, float, float]:
    return os.getloadavg()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _one_run(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--sample", type=int, default=100, help="photos for the per-stage split")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    if not CROPS.is_dir():
        print(f"skipped: {CROPS} is missing (the COCO val person crops of ../shared); nothing measured")
        return
    names = [im["file_name"] for im in json.loads((CROPS / "annotations" / "val.json").read_text())["images"]]
    names = names[: args.images]
    load_before = _load()
    print(f"{len(names)} photos ({CROPS / 'images'}), {os.cpu_count()} cores, load average before "
          f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1 / 5 / 15 min)")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        for name in names:
            shutil.copy(CROPS / "images" / name, folder / name)
            (folder / name).read_bytes()   # in the page cache for all three runs alike
        files = sorted(folder.iterdir())
        for name in RUNS:
            runs[name] = row = _run(name, folder, tmp, len(names))
            print(f"  {name:8s} {row['pictures_per_s_with_startup']:6.2f} pictures/s with start-up "
                  f"({row['wall_s']:.1f} s), {row['pictures_per_s_without_startup']:6.2f} without "
                  f"(start-up {row['startup_s']:.1f} s" + (f", of which ray.init {row['ray_init_s']:.1f} s"
                                                            if "ray_init_s" in row else "") + "); meanwhile "
                  f"load {' -> '.join(map(str, row['machine_meanwhile']['load_1min_start_end']))}, "
                  f"{row['machine_meanwhile'].get('mean_runnable_tasks', '?')} runnable tasks (this run's: ~2)")
        results = {name: json.loads((tmp / f"{name}.json").read_text()) for name in RUNS}
        checks = {f"process vs {name}": compare(results["process"], results[name]) for name in ("ray_1", "ray_2")}
        checks["ray_1 vs ray_2"] = compare(results["ray_1"], results["ray_2"])
        results_bytes = (tmp / "process.json").stat().st_size
        load_mid = _load()
        split = stage_split(files, args.sample)
    load_after = _load()
    ratio = {k: round(runs["ray_2"][k] / runs["ray_1"][k], 3)
             for k in ("pictures_per_s_with_startup", "pictures_per_s_without_startup")}
    print(f"2 workers / 1 worker: {ratio['pictures_per_s_with_startup']:.2f}x with start-up, "
          f"{ratio['pictures_per_s_without_startup']:.2f}x without (issue 55 asks >= 1.6x)")
    same = all(v is None for v in checks.values())
    print(f"same results ({len(results['process'])} persons in {len(set(e['image_id'] for e in results['process']))} "
          f"photos; keypoints within 1e-3 px, scores within 1e-5): " + ("yes" if same else "NO"))
    for k, v in checks.items():
        if v is not None:
            print(f"  {k}: {v}")
    s = split["seconds_per_photo"]
    print(f"per-stage split, one process, {split['threads']} threads, batch size {split['batch_size']}, "
          f"{split['photos']} photos (ms per photo):")
    for k, v in s.items():
        print(f"  {k:24s} {1000 * v:7.2f}")
    print(f"  {'total':24s} {1000 * split['total_seconds_per_photo']:7.2f}")
    print(f"  detector boxes / photo {split['detector_boxes_per_photo']:.2f}, crops posed / photo "
          f"{split['crops_per_photo']:.2f}, persons / photo {split['persons_per_photo']:.2f}; pose network + trust "
          f"{1000 * split['pose_network_and_trust_seconds_per_crop']:.1f} ms per crop; mean file "
          f"{split['mean_file_bytes'] / 1000:.1f} kB, {split['mean_pixels'] / 1e3:.0f} kpixels")
    print(f"load average after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    out = {
        "command": "python bench/ray_scale.py" + (f" --images {args.images}" if args.images != 400 else "")
                   + (f" --sample {args.sample}" if args.sample != 100 else ""),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_before_split": [round(x, 2) for x in load_mid],
                    "load_average_after": [round(x, 2) for x in load_after]},
        "photos": f"first {len(names)} images of {CROPS / 'annotations' / 'val.json'}",
        "runs": runs,
        "ratio_2_workers_over_1": ratio,
        "same_results": {"all": same, **{k: v or "same" for k, v in checks.items()},
                         "persons": len(results["process"]),
                         "results_file_bytes_per_photo": round(results_bytes / len(names))},
        "stage_split": split,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
