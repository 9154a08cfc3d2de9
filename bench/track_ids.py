"""Identity keeping of `posecal track` against exact truth: IDF1, ID switches, MOTA, keypoint jitter on synthetic
videos of real people, and distinct track ids on a real video (python bench/track_ids.py [--scenes 5]).

Scenes: `bench.lab.moving_people` pastes labelled persons of the COCO val crops (../shared/data/coco-val2017-
crops, val split: the shipped networks never trained on it; the shipped calibration was fitted on it) over the
temporal median of ../shared/data/videos/vtest_pedestrians_20s.avi (its walkers gone), walking along crossing
paths; scene i has seed i and 3 + i % 4 people, --frames frames at 15 fps. Each scene runs through
`posecal.tracking.units.run_track` with its defaults (model fast, flip off, detector every frame) and is scored
by `bench.lab.mot` (motmetrics; IoU >= 0.5; people less than 25 % visible are not counted).

Real video: vtest_pedestrians_20s.avi through the same run_track: distinct track ids against PEOPLE_SEEN_VTEST,
the people seen in its 200 frames counted by eye (see docs/tracking.md for how).

Usage: python bench/track_ids.py [--scenes 5] [--frames 150] [--work track_ids/] [--skip-vtest]
       [--tracker max_misses=30 ...] [--track detect_every=2 ...] [--json OUT.json] [--cache-detections]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench.lab: the benches' shared code
from bench.lab.moving_people import SceneSpec, load_sprites, median_background, write_scene  # noqa: E402
from bench.lab.mot import accumulate, summarize  # noqa: E402
from posecal.tracking.job import TrackConfig  # noqa: E402
from posecal.tracking.units import run_track  # noqa: E402
from posecal.tracking.tracker import TrackerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VTEST = SHARED / "videos" / "vtest_pedestrians_20s.avi"
CROPS = SHARED / "coco-val2017-crops"
# Distinct people seen in vtest_pedestrians_20s.avi's 200 frames, counted by eye on a contact sheet of every 10th
# frame (docs/tracking.md says how): everyone who shows at least their upper body in some frame.
PEOPLE_SEEN_VTEST = 10


def overridden(cfg, overrides: list[str], kind: str):
    """cfg (a dataclass) with KEY=VALUE overrides of its scalar fields."""
    types = {f.name: str if getattr(cfg, f.name) is None else type(getattr(cfg, f.name))   # detector=nanodet
             for f in dataclasses.fields(cfg) if isinstance(getattr(cfg, f.name), (bool, int, float, str, type(None)))}
    for item in overrides:
        key, value = item.split("=", 1)
        if key not in types:
            raise SystemExit(f"unknown {kind} option {key}; known: {', '.join(types)}")
        typ = types[key]
        if value.lower() == "none":   # e.g. detector_threshold=none: trust-guided detection
            cfg = dataclasses.replace(cfg, **{key: None})
            continue
        if getattr(cfg, key) is None:   # a field off by default: a number where it reads as one (detector_threshold)
            try:
                cfg = dataclasses.replace(cfg, **{key: float(value)})
                continue
            except ValueError:
                pass
        cfg = dataclasses.replace(cfg, **{key: (value.lower() in ("1", "true", "yes")) if typ is bool else typ(value)})
    return cfg


def tracker_config(overrides: list[str]) -> TrackerConfig:
    return overridden(TrackerConfig(), overrides, "tracker")


TRACK_OPTIONS: list[str] = []   # --track: TrackConfig overrides (detect_every, missed_detections, verifier)
POLICY_OPTIONS: list[str] = []  # --policy: PersonPolicy overrides (detector_floor, min_person, birth_person)


def make_scenes(work: Path, n: int, frames: int) -> list[tuple[str, Path, Path]]:
    """The tuning scenes' videos and truth files, written once into work/ (kept for the next run: same seeds, same
    files). Every tracker knob of TrackerConfig was chosen on these."""
    out, background, sprites = [], None, None
    for i in range(n):
        name = f"scene{i}"
        video, truth = work / f"{name}.avi", work / f"{name}.json"
        spec = SceneSpec(seed=i, n_people=3 + i % 4, n_frames=frames)
        if not (video.exists() and truth.exists()
                and json.loads(truth.read_text())["info"].get("n_frames") == frames):
            if background is None:
                background = median_background(VTEST)
                sprites = load_sprites(CROPS / "annotations" / "val.json", CROPS / "images")
            write_scene(work, name, background, sprites, spec)
        out.append((name, video, truth))
    return out


# Held-out scenes: other seeds, another background, and only people that no tuning scene shows. The background
# is the empty room of intel_one_by_one_person_20s.mp4 (the median of the 29 frames where the shipped detector
# finds nobody; its other frames, and the other clips' every frame, hold real people, who would count as false
# persons), as it is and mirrored, in turn. The other clips have no empty frame to take.
HELD_OUT_CLIP = "intel_one_by_one_person_20s.mp4"
HELD_OUT_SEED = 100


def empty_background(clip: Path) -> np.ndarray:
    """The per-pixel median of the clip's frames in which the shipped detector (threshold 0.2) finds nobody."""
    import cv2

    from posecal.detect.detector import load_detector

    detector, cap, empty = load_detector("default", 0.2, threads=1), cv2.VideoCapture(str(clip)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if not len(detector(frame)[0]):
            empty.append(frame)
    cap.release()
    if not empty:
        raise SystemExit(f"{clip}: no frame without people to take a background from")
    return np.median(np.stack(empty), 0).astype(np.uint8)


def tuning_sprites(n_tuning: int, frames: int, n_sprites: int) -> set[int]:
    """The sprites the first n_tuning tuning scenes draw (plan_walks' first draw of each scene's seed)."""
    from bench.lab.moving_people import plan_walks

    used = set()
    for i in range(n_tuning):
        walks = plan_walks(3 + i % 4, frames, (768, 576), n_sprites, np.random.default_rng(i))
        used |= {w.sprite for w in walks}
    return used


def held_out_sprites(n_tuning: int, frames: int) -> list:
    """The val crops' sprites that none of the first n_tuning tuning scenes of `frames` frames draws."""
    every = load_sprites(CROPS / "annotations" / "val.json", CROPS / "images")
    seen = tuning_sprites(n_tuning, frames, len(every))
    return [sp for k, sp in enumerate(every) if k not in seen]


def make_held_out_scenes(work: Path, n: int, frames: int, n_tuning: int) -> list[tuple[str, Path, Path]]:
    """n held-out scenes (seed HELD_OUT_SEED + i, 3 + i % 4 people, the background mirrored every other one),
    written once."""
    out, background, sprites = [], None, None
    for i in range(n):
        name = f"heldout{i}"
        video, truth = work / f"{name}.avi", work / f"{name}.json"
        spec = SceneSpec(seed=HELD_OUT_SEED + i, n_people=3 + i % 4, n_frames=frames)
        if not (video.exists() and truth.exists()
                and json.loads(truth.read_text())["info"].get("n_frames") == frames):
            if sprites is None:
                sprites = held_out_sprites(n_tuning, frames)
            if background is None:
                background = empty_background(SHARED / "videos" / HELD_OUT_CLIP)
            write_scene(work, name, background[:, ::-1].copy() if i % 2 else background, sprites, spec)
        out.append((name, video, truth))
    return out


class CachedDetector:
    """The shipped detector with its boxes kept per frame (keyed by the frame's bytes) in work/detections.pkl: it
    is deterministic, so a rerun with another tracker config gives the same numbers, faster."""

    def __init__(self, detector, path: Path):
        self.detector, self.path = detector, path
        self.score_threshold, self.nms_threshold = detector.score_threshold, detector.nms_threshold
        self.cache = pickle.loads(path.read_bytes()) if path.exists() else {}
        self.dirty = False

    def __call__(self, frame_bgr):
        # keyed by the threshold too: trust-guided detection runs the same detector lower
        key = f"{self.detector.score_threshold}:{hashlib.sha1(frame_bgr.tobytes()).hexdigest()}"
        if key not in self.cache:
            self.cache[key], self.dirty = self.detector(frame_bgr), True
        return self.cache[key]

    def save(self) -> None:
        if self.dirty:
            self.path.write_bytes(pickle.dumps(self.cache))
            self.dirty = False


def cache_detections(work: Path) -> dict:
    """Make run_track's detector the cached one (the benchmark only; posecal track is not changed)."""
    import posecal.tracking.job as job

    holder = {}
    original = job.tracking_predictor

    def build(cfg):
        predictor = original(cfg)
        if predictor.detector is not None:
            if "d" not in holder:
                holder["d"] = CachedDetector(predictor.detector, work / "detections.pkl")
            predictor.detector = predictor.pipeline.detector = holder["d"]
        return predictor

    job.tracking_predictor = build
    return holder


class CachedPoses:
    """The pose network's answers kept per (frame, box, score) in memory: a box the detector gives is the same in
    every run, so reruns with other tracker configs only compute the poses of boxes propagated differently."""

    def __init__(self, predictor, cache: dict):
        self.predictor, self.cache, self.config = predictor, cache, predictor.config
        self.pipeline, self.threads, self.calibration = predictor.pipeline, predictor.threads, predictor.calibration
        self.detector, self.precision_line = predictor.detector, predictor.precision_line

    def predict_many(self, items, bgr=True):
        out = []
        for image, boxes, scores in items:
            frame = hashlib.sha1(image.tobytes()).hexdigest()
            keys = [(frame, tuple(np.round(b, 3)), round(float(s), 4)) for b, s in zip(boxes, scores)]
            todo = [i for i, k in enumerate(keys) if k not in self.cache]
            if todo:
                people = self.predictor.predict_many([(image, np.asarray(boxes)[todo], np.asarray(scores)[todo])],
                                                     bgr=bgr)[0]
                for i, p in zip(todo, people):
                    self.cache[keys[i]] = p
            out.append([self.cache[k] for k in keys])
        return out


def cache_poses() -> None:
    import posecal.tracking.job as job

    cache, original = {}, job.tracking_predictor
    job.tracking_predictor = lambda cfg: CachedPoses(original(cfg), cache)


def track(video: Path, out: Path, tracker: TrackerConfig) -> tuple[list[dict], float, int]:
    t0 = time.time()
    cfg = overridden(TrackConfig([str(video)], out=str(out), progress=False, tracker=tracker), TRACK_OPTIONS, "track")
    cfg = dataclasses.replace(cfg, policy=overridden(cfg.policy, POLICY_OPTIONS, "policy"))
    summary = run_track(cfg, log=lambda m: None)
    return json.loads(out.read_text()), time.time() - t0, summary.frames


# A real person standing still in vtest_pedestrians_20s.avi, baked into the tuning scenes' median background
# (x, y, w, h; about 14 x 45 px): the truth has no track for them, so a track on them is scored as an ignored box
# (bench.lab.mot: neither a person to find nor a false positive). Only a detector that sees people that small
# (the second look's tiles) finds them; counted as false positives they made the second look look worse than it is.
BACKGROUND_PEOPLE = ((643.0, 311.0, 14.0, 45.0),)


def with_background_people(truth: dict, boxes=BACKGROUND_PEOPLE) -> dict:
    """The truth with each background person as an ignored box (visible_fraction 0) in every frame."""
    extra = [{"id": -(k + 1) - len(boxes) * im["id"], "image_id": im["id"], "category_id": 1, "track_id": -(k + 1),
              "bbox": list(b), "area": 0.5 * b[2] * b[3], "keypoints": [0] * 51, "num_keypoints": 0,
              "visible_fraction": 0.0} for im in truth["images"] for k, b in enumerate(boxes)]
    return {**truth, "annotations": truth["annotations"] + extra}


def score_scenes(scenes, tracker: TrackerConfig, work: Path, cached: dict, background_people=()) -> dict:
    scores, seconds, n_frames = [], 0.0, 0
    for name, video, truth_path in scenes:
        truth = with_background_people(json.loads(truth_path.read_text()), background_people)
        results, sec, n = track(video, work / f"{name}_tracks.json", tracker)
        seconds, n_frames = seconds + sec, n_frames + n
        scores.append(accumulate(name, truth, results))
        if "d" in cached:
            cached["d"].save()
    table = summarize(scores)
    print(f"{'scene':8} {'people':>6} {'tracks':>6} {'IDF1':>6} {'IDSW':>5} {'IDSW/100f':>9} {'MOTA':>6} "
          f"{'miss':>5} {'FP':>5} {'kp err':>7} {'jitter':>7} {'behind, id kept':>15}")
    for name, row in table.items():
        print(f"{name:8} {row['num_unique_objects']:6.0f} {row['predicted_tracks']:6d} {row['idf1']:6.3f} "
              f"{row['num_switches']:5.0f} {row['switches_per_100_frames']:9.2f} {row['mota']:6.3f} "
              f"{row['num_misses']:5.0f} {row['num_false_positives']:5.0f} {row['keypoint_error']:7.4f} "
              f"{row['jitter']:7.4f} {row['occlusions_kept']:7d} of {row['occlusions']:<4d}")
    print(f"{n_frames} frames tracked in {seconds:.0f} s ({n_frames / max(seconds, 1e-9):.1f} fps)", flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=5)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--work", type=Path, default=Path("track_ids"))
    ap.add_argument("--held-out", type=int, default=0,
                    help="also score this many held-out scenes (other seeds, backgrounds and people; no knob was "
                         "chosen on them), reported apart")
    ap.add_argument("--skip-vtest", action="store_true")
    ap.add_argument("--skip-scenes", action="store_true")
    ap.add_argument("--tracker", nargs="*", default=[], help="TrackerConfig overrides, KEY=VALUE")
    ap.add_argument("--track", nargs="*", default=[],
                    help="TrackConfig overrides, KEY=VALUE (e.g. detect_every=2 missed_detections=1)")
    ap.add_argument("--policy", nargs="*", default=[], help="the person policy's overrides (PersonPolicy), KEY=VALUE")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--cache-detections", action="store_true",
                    help="keep the detector's boxes per frame in WORK/detections.pkl (same numbers, faster reruns) "
                         "and the poses per box in memory (for --sweep); the boxes are kept per frame only, so "
                         "another detector setting (detector, detector_threshold, second_look) needs its own --work")
    ap.add_argument("--sweep", nargs="*", default=[],
                    help="more tracker configs to score on the same scenes after the first, each 'KEY=V,KEY=V'")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    TRACK_OPTIONS.extend(args.track)
    POLICY_OPTIONS.extend(args.policy)
    cached = cache_detections(args.work) if args.cache_detections else {}
    if args.cache_detections:
        cache_poses()
    configs = [tracker_config(args.tracker)] + [tracker_config(args.tracker + sweep.split(","))
                                                for sweep in args.sweep]
    report = {"tracker": dataclasses.asdict(configs[0])}
    if not args.skip_scenes:
        scenes = make_scenes(args.work, args.scenes, args.frames)
        for k, tracker in enumerate(configs):
            if k:
                print(f"--- {args.sweep[k - 1]}")
            table = score_scenes(scenes, tracker, args.work, cached, BACKGROUND_PEOPLE)
            report.setdefault("scenes", table) if k == 0 else report.setdefault("sweep", {}).update(
                {args.sweep[k - 1]: table["OVERALL"]})
            if args.held_out:
                print("--- held-out scenes")
                held = score_scenes(make_held_out_scenes(args.work, args.held_out, args.frames, args.scenes),
                                    tracker, args.work, cached)
                report.setdefault("held_out", held) if k == 0 else report.setdefault("sweep_held_out", {}).update(
                    {args.sweep[k - 1]: held["OVERALL"]})
    tracker = configs[0]
    if not args.skip_vtest:
        results, sec, n = track(VTEST, args.work / "vtest_tracks.json", tracker)
        if "d" in cached:
            cached["d"].save()
        ids = {r["track_id"] for r in results}
        report["vtest"] = {"frames": n, "distinct_ids": len(ids), "people_seen": PEOPLE_SEEN_VTEST,
                           "poses": len(results), "seconds": sec}
        print(f"vtest_pedestrians_20s.avi: {n} frames, {len(ids)} distinct track ids for {PEOPLE_SEEN_VTEST} people "
              f"seen (ratio {len(ids) / PEOPLE_SEEN_VTEST:.2f}, target <= 2), {len(results)} tracked poses, "
              f"{sec:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
