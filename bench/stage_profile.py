"""Where each millisecond goes, per stage, for photos and video (python bench/stage_profile.py).

Usage: python bench/stage_profile.py [--model accurate] [--precision auto] [--photos DIR ...] [--clip VIDEO]
                                     [--frames 150] [--threads 2] [--json OUT.json]

Runs posecal's Python API as a user runs it (`Predictor(model)(path)` one photo at a time; `PoseTracker(model)
.track(clip)` frame by frame, each frame drawn as `track --render` draws it) and times, by wrapping onnxruntime's
own `InferenceSession.run` and the person policy, nothing else:
* detect: the person detector's graph; verify: the person verifier's graph;
* pose of kept people / pose of rejected candidates: the pose graph's time split by the share of its crops that
  became a reported person (the graph runs crop by crop on the CPU, so the share is the share of its calls); a
  staged crop's refine graph (posecal_NAME.refine.onnx: only the kept people's) counts for the kept;
* trust: the trust network's share of the pose graph, from the shipped trust graph timed alone on the same
  number of crops (it is inside the pose graph, so it is part of the two pose figures, not added to them);
* policy: PersonPolicy.keep and the reported-pose map; render: Picture.plot; other: the rest (decoding the image,
  crops, the tracker, optical flow, Python).
Also the crops posed per person reported. It touches no private name, so `bench/speed_vs_start.py --stages` runs
this file under an earlier tree too (PYTHONPATH), side by side.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VAL = SHARED / "data" / "coco-val2017-crops"
LSPET = SHARED / "data" / "lspet" / "images"
VIDEO = SHARED / "data" / "videos" / "vtest_pedestrians_20s.avi"


class Clock:
    """Seconds and calls per stage, wrapped around onnxruntime sessions (by their graph file) and named calls."""

    def __init__(self):
        self.s, self.calls, self.rows = collections.Counter(), collections.Counter(), collections.Counter()

    def clear(self) -> None:
        for c in (self.s, self.calls, self.rows):
            c.clear()

    def add(self, stage: str, seconds: float, rows: int = 1) -> None:
        self.s[stage] += seconds
        self.calls[stage] += 1
        self.rows[stage] += rows

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.add(stage, time.perf_counter() - t)
        setattr(owner, name, timed)


def graph_stage(path: str) -> str:
    name = Path(path).name
    if "verifier" in name:
        return "verify"
    if name.startswith("posecal_") and ".refine." in name:   # a staged crop's second stage (kept people only)
        return "refine"
    if name.startswith("posecal_"):
        return "pose"
    return "detect"


def install(clock: Clock) -> None:
    """Every onnxruntime session times its runs under its graph's stage; the policy and the drawing are timed."""
    init, run = ort.InferenceSession.__init__, ort.InferenceSession.run

    def init_tagged(self, path_or_bytes, *args, **kwargs):
        init(self, path_or_bytes, *args, **kwargs)
        self._stage = graph_stage(str(path_or_bytes)) if isinstance(path_or_bytes, (str, os.PathLike)) else "pose"

    def run_timed(self, output_names, feed, *args, **kwargs):
        t = time.perf_counter()
        out = run(self, output_names, feed, *args, **kwargs)
        clock.add(getattr(self, "_stage", "other"), time.perf_counter() - t, next(iter(feed.values())).shape[0])
        return out

    ort.InferenceSession.__init__, ort.InferenceSession.run = init_tagged, run_timed
    from posecal.inference.person_policy import PersonPolicy
    from posecal.inference.picture import Picture
    from posecal.inference.pipeline import PosePipeline

    clock.wrap(PersonPolicy, "keep", "policy")
    clock.wrap(PosePipeline, "rated", "policy")
    clock.wrap(Picture, "plot", "render")


def trust_ms_per_crop(model: str, threads: int) -> float | None:
    """The shipped trust graph alone, ms per crop at batch 1 (None where this tree has none; its runs fall in the
    clock's "pose" stage, which is cleared before anything is measured)."""
    from posecal.devices import session_options
    from posecal.models.shipped import trust_graph

    path = trust_graph(model.removesuffix("-float"))
    if not path.is_file():
        return None
    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    side = session.get_inputs()[0].shape[-1]
    side = side if isinstance(side, int) else 192
    feed = {"crops": np.random.default_rng(0).random((1, 3, side, side), np.float32),
            "keypoints": np.full((1, 17, 2), side / 2, np.float32)}
    for _ in range(3):
        session.run(None, feed)
    t = time.perf_counter()
    for _ in range(10):
        session.run(None, feed)
    return (time.perf_counter() - t) / 10 * 1e3


def breakdown(clock: Clock, wall: float, units: int, reported: int, trust_ms: float | None) -> dict:
    """ms per unit (photo or frame) by stage; the pose graph split between kept people and rejected candidates."""
    per = lambda s: round(s / units * 1e3, 2)   # noqa: E731
    crops = clock.rows["pose"]
    kept_share = min(1.0, reported / crops) if crops else 0.0
    out = {"units": units, "ms_per_unit": per(wall), "per_s": round(units / wall, 2) if wall else None,
           "crops_posed": int(crops), "people_reported": reported,
           "crops_per_person": round(crops / reported, 3) if reported else None,
           "detect": per(clock.s["detect"]), "verify": per(clock.s["verify"]),
           "verified_boxes": int(clock.rows["verify"]),
           "crops_refined": int(clock.rows["refine"]),
           "pose_kept": per(clock.s["pose"] * kept_share + clock.s["refine"]),
           "pose_rejected": per(clock.s["pose"] * (1 - kept_share)),
           "trust_inside_pose": None if trust_ms is None else round(trust_ms * crops / units, 2),
           "policy": per(clock.s["policy"]), "render": per(clock.s["render"])}
    out["other"] = round(out["ms_per_unit"] - sum(out[k] for k in ("detect", "verify", "pose_kept", "pose_rejected",
                                                                    "policy", "render")), 2)
    return out


def profile_photos(predictor, clock: Clock, files: list[Path], trust_ms) -> dict:
    predictor(str(files[0]))        # warm: the sessions' first runs allocate
    clock.clear()
    reported, t = 0, time.perf_counter()
    for f in files:
        reported += len(predictor(str(f)))
    return breakdown(clock, time.perf_counter() - t, len(files), reported, trust_ms)


def profile_clip(model: str, precision: str, threads: int, clip: Path, frames: int, clock: Clock, trust_ms) -> dict:
    import cv2

    from posecal.tracking.pose_tracker import PoseTracker

    cap = cv2.VideoCapture(str(clip))
    images = []
    while len(images) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        images.append(frame)
    cap.release()
    tracker = PoseTracker(model=model, threads=threads, precision=precision)
    list(tracker.track(images[:3]))   # warm
    clock.clear()
    reported, t = 0, time.perf_counter()
    worst = 0.0
    for picture in tracker.track(images, stream=True):
        reported += sum(p.pose_source == "detected" for p in picture.people)
        picture.plot()
        worst = max(worst, sum(picture.speed.values()))
    out = breakdown(clock, time.perf_counter() - t, len(images), reported, trust_ms)
    out["worst_frame_ms"] = round(worst, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", type=int, default=60, help="photos per world (COCO val crops, LSPET)")
    ap.add_argument("--clip", type=Path, default=VIDEO)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--skip", default="", help="comma-separated: coco, lspet, clip")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    clock = Clock()
    install(clock)
    from posecal import Predictor

    predictor = Predictor(args.model, threads=args.threads, precision=args.precision)
    trust_ms = trust_ms_per_crop(args.model, args.threads)
    result = {"model": args.model, "precision": getattr(predictor, "precision", "?"), "threads": args.threads,
              "trust_graph_ms_per_crop": None if trust_ms is None else round(trust_ms, 2)}
    worlds = {}
    if "coco" not in skip:
        names = sorted({i["file_name"] for i in json.loads((VAL / "annotations" / "val.json").read_text())["images"]})
        worlds["coco"] = [VAL / "images" / names[int(i * len(names) / args.photos)] for i in range(args.photos)]
    if "lspet" not in skip:   # LSPET's last photos (bench/lspet_ap.py's held-out part), evenly spaced
        names = sorted(LSPET.iterdir())[-600:]
        worlds["lspet"] = [names[int(i * len(names) / args.photos)] for i in range(args.photos)]
    for world, files in worlds.items():
        result[world] = profile_photos(predictor, clock, files, trust_ms)
        print(json.dumps({world: result[world]}), flush=True)
    if "clip" not in skip:
        result["clip"] = profile_clip(args.model, args.precision, args.threads, args.clip, args.frames, clock,
                                      trust_ms)
        print(json.dumps({"clip": result["clip"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
