"""Tracked videos with exact truth, grouped by kind of world, as records written without a video calibration.

What tools/fit_video_calibration.py judges its maps on (leave one world kind out: posecal/calibration/
video_choice.py) and what bench/trust_conditions.py reports its "no map" rows from. The kinds, all of
bench/track_ids.py's synthetic scenes of val people walking and crossing:
- `vtest`: its tuning scenes (seed i, the empty room of vtest_pedestrians_20s.avi);
- `intel`, `intel_mirrored`: its held-out scenes (seed 100 + i, people no tuning scene shows) over the empty room
  of intel_one_by_one_person_20s.mp4, as it is (even i) and mirrored (odd i);
- `KIND_half`: a kind's scenes with every frame downscaled by 2 (people about half as tall, as far-away people
  are) and the truth scaled alike;
- `KIND_jpeg`: a kind's scenes written again at MJPG quality 20 (blocky, as low-bitrate video is);
- `KIND_blur`: a kind's scenes with every frame motion-blurred (bench.lab.camera: a line kernel 6-12 px long, its
  direction drawn per scene from the scene's seed; the truth does not move);
- `intel_pan`: a moving camera (seed PAN_SEED + i, held-out people): the frame is a window panning and zooming
  slowly over the intel room enlarged 1.4 times (bench.lab.camera.PanZoom), the truth moved with it;
- `vtest_crowd`: crowds (seed CROWD_SEED + i, 10 - i % 3 held-out people crossing) in vtest's room.
Degradations chain (`intel_pan_blur_jpeg`). Every kind is deterministic by its seeds; scenes are written once into
the work folder. Records are tracked once per model file, scene, frame count and options and kept there too.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/: track_ids
from bench.lab.camera import motion_blur, plan_blur, plan_pan_zoom  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402

VTEST_TUNING = 9   # tuning scenes whose people the held-out scenes leave out (as bench/trust_conditions.py)
PAN_SEED, CROWD_SEED = 200, 300   # the moving-camera and crowd scenes' seeds (seed + i), apart from every other's
PAN_WORLD = 1.4                   # the moving camera's world: its room enlarged this much


class Degrade(NamedTuple):
    """How a world's degraded copy is made from it: frames resized by `scale`, motion-blurred up to `blur` px
    (0: not), written at MJPG `quality`."""
    scale: float
    quality: int
    blur: float = 0.0


DEGRADED = {"half": Degrade(0.5, 95), "jpeg": Degrade(1.0, 20), "blur": Degrade(1.0, 95, 12.0)}
BASES = ("vtest", "intel", "intel_mirrored", "intel_pan", "vtest_crowd")   # world kinds with scenes of their own
ROOMS = {"intel_pan": "intel", "vtest_crowd": "vtest"}   # the rooms of the kinds scene_plan makes


def model_without_video_map(model: str, work: Path) -> str:
    """A model file that tracks as `model` does and writes its trust values without a video calibration: the
    model itself when it has none, else a copy without it in work/ (needs PyTorch to write and export it)."""
    from posecal.models.checkpoint import atomic_save, model_file, read_torch_file

    path = model_file(model)
    ckpt = read_torch_file(path)
    if "video" not in ckpt.get("meta", {}).get("calibration", {}):
        return str(model)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    out = work / f"{path.stem}_{digest}_novideo.pt"
    if not out.is_file():
        ckpt["meta"]["calibration"].pop("video")
        atomic_save(ckpt, out)
    return str(out)


def degraded(video: Path, truth: Path, out_dir: Path, factor: float = 0.5, quality: int = 95, blur: float = 0.0
             ) -> tuple[Path, Path]:
    """The scene with every frame motion-blurred (blur > 0: length and direction by plan_blur from the scene's
    seed), resized by factor (area interpolation) and written at MJPG `quality`, its truth moved alike (pixel
    centres: (x + 0.5) f - 0.5; areas by f^2; the blur moves nothing); written once."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    video_out, truth_out = out_dir / video.name, out_dir / truth.name
    if video_out.is_file() and truth_out.is_file():
        return video_out, truth_out
    gt = json.loads(truth.read_text())
    streak = plan_blur(np.random.default_rng([gt["info"]["seed"], 2]), blur) if blur > 0 else None
    cap, writer = cv2.VideoCapture(str(video)), None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if streak:
            frame = motion_blur(frame, *streak)
        if factor != 1:
            frame = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        if writer is None:
            writer = cv2.VideoWriter(str(video_out), cv2.VideoWriter_fourcc(*"MJPG"), cap.get(cv2.CAP_PROP_FPS),
                                     frame.shape[1::-1])
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        writer.write(frame)
    cap.release()
    if writer is None:
        raise SystemExit(f"{video}: no frame could be read")
    writer.release()
    if streak:
        gt["info"]["blur"] = {"length": round(streak[0], 3), "angle_deg": round(streak[1], 3)}
    for im in gt["images"]:
        im["width"], im["height"] = round(im["width"] * factor), round(im["height"] * factor)
    for a in gt["annotations"]:
        kp = np.reshape(a["keypoints"], (-1, 3)).astype(float)
        kp[:, :2] = np.where(kp[:, 2:] > 0, (kp[:, :2] + 0.5) * factor - 0.5, kp[:, :2])
        x, y, w, h = a["bbox"]
        a["keypoints"] = np.round(kp, 3).reshape(-1).tolist()
        a["bbox"] = [round(v, 3) for v in ((x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5, w * factor,
                                           h * factor)]
        a["area"] = round(a["area"] * factor ** 2, 3)
    write_json_atomic(gt, truth_out, indent=None)
    return video_out, truth_out


def room_of(kind: str) -> str:
    """The room a world kind was filmed in (its family: a room mirrored, downscaled or compressed is still it)."""
    return kind.split("_")[0]


def parse_kind(kind: str) -> tuple[str, list[str]]:
    """A world kind's base (BASES) and its degradations in the order applied: `intel_pan_blur` -> (intel_pan,
    [blur])."""
    parts = kind.split("_")
    hows: list[str] = []
    while len(parts) > 1 and parts[-1] in DEGRADED:
        hows.insert(0, parts.pop())
    base = "_".join(parts)
    if base not in BASES:
        raise SystemExit(f"unknown world kind {kind}: a base of {', '.join(BASES)}, then any of "
                         f"{', '.join('_' + d for d in DEGRADED)}")
    return base, hows


def room_picture(room: str, work: Path) -> np.ndarray:
    """The empty room `vtest` or `intel` (track_ids' backgrounds), kept in work/rooms/ once made."""
    import cv2

    from track_ids import HELD_OUT_CLIP, SHARED, VTEST, empty_background
    from bench.lab.moving_people import median_background

    path = work / "rooms" / f"{room}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = median_background(VTEST) if room == "vtest" else empty_background(SHARED / "videos" / HELD_OUT_CLIP)
        cv2.imwrite(str(path), picture)
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def base_scenes(work: Path, base: str, n: int, frames: int) -> list[tuple[str, Path, Path]]:
    """A base kind's first n scenes (name, video, truth), written into work/ once."""
    from track_ids import held_out_sprites, make_held_out_scenes, make_scenes

    if base == "vtest":
        return make_scenes(work / "scenes", n, frames)
    if base in ("intel", "intel_mirrored"):   # the held-out scenes: even ones as they are, odd ones mirrored
        return make_held_out_scenes(work / "held_out_scenes", 2 * n, frames, VTEST_TUNING)[base == "intel_mirrored"::2]
    from bench.lab.moving_people import write_scene

    out, sprites, folder = [], None, work / f"{base}_scenes"
    for i in range(n):
        name = f"{base}{i}"
        video, truth = folder / f"{name}.avi", folder / f"{name}.json"
        if not (video.is_file() and truth.is_file() and json.loads(truth.read_text())["info"]["n_frames"] == frames):
            sprites = sprites or held_out_sprites(VTEST_TUNING, frames)
            background, plan = scene_plan(base, i, frames, room_picture(ROOMS[base], work))
            write_scene(folder, name, background, sprites, **plan)
        out.append((name, video, truth))
    return out


def scene_plan(base: str, i: int, frames: int, room: np.ndarray) -> tuple[np.ndarray, dict]:
    """Scene i of `intel_pan` or `vtest_crowd` over the picture `room`: (the background the people walk on,
    write_scene's spec and camera). intel_pan: 3 + i % 4 people, the room enlarged PAN_WORLD times under a
    PanZoom whose frames are the room's size; vtest_crowd: 10 - i % 3 people, a fixed camera."""
    import cv2

    from bench.lab.moving_people import SceneSpec

    if base == "intel_pan":
        camera = plan_pan_zoom(room.shape[1::-1], frames, np.random.default_rng([PAN_SEED + i, 1]), PAN_WORLD)
        world = cv2.resize(room, camera.world_wh, interpolation=cv2.INTER_CUBIC)
        return world, {"spec": SceneSpec(PAN_SEED + i, 3 + i % 4, frames), "camera": camera}
    if base == "vtest_crowd":
        return room, {"spec": SceneSpec(CROWD_SEED + i, 10 - i % 3, frames), "camera": None}
    raise ValueError(f"{base}: scene_plan makes intel_pan and vtest_crowd scenes")


def degraded_kind(work: Path, kind: str, how: str, scenes: list, frames: int) -> list[tuple[str, Path, Path]]:
    """kind's scenes degraded by DEGRADED[how]: the scenes of world kind KIND_HOW."""
    return [(name, *degraded(video, truth, work / f"{kind}_{how}_{frames}", *DEGRADED[how]))
            for name, video, truth in scenes]


def kind_scenes(work: Path, kind: str, n: int, frames: int) -> list[tuple[str, Path, Path]]:
    """A world kind's first n scenes of `frames` frames (name, video, truth), written into work/ once."""
    base, hows = parse_kind(kind)
    scenes = base_scenes(work, base, n, frames)
    for how in hows:
        scenes = degraded_kind(work, base, how, scenes, frames)
        base = f"{base}_{how}"
    return scenes


def scaled_boxes(kind: str, boxes) -> list[tuple[float, ...]]:
    """x, y, w, h boxes of a base kind's picture as they are in `kind` (its degradations' scales applied)."""
    f = float(np.prod([DEGRADED[how].scale for how in parse_kind(kind)[1]]))
    return [((x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5, w * f, h * f) for x, y, w, h in boxes]


def world_scenes(work: Path, tuning: list[int], held_out: list[int], frames: int, degrade: tuple[str, ...] = ()
                 ) -> dict[str, list[tuple[str, Path, Path]]]:
    """World kind -> its scenes (name, video, truth), written into work/ once; degrade: names of DEGRADED, each
    adding every kind's degraded copy as a kind of its own."""
    from track_ids import make_held_out_scenes, make_scenes

    worlds: dict[str, list] = {}
    if tuning:
        worlds["vtest"] = [make_scenes(work / "scenes", max(tuning) + 1, frames)[i] for i in tuning]
    if held_out:
        made = make_held_out_scenes(work / "held_out_scenes", max(held_out) + 1, frames, VTEST_TUNING)
        for i in held_out:
            worlds.setdefault("intel_mirrored" if i % 2 else "intel", []).append(made[i])
    plain = list(worlds.items())
    for how in degrade:
        worlds |= {f"{kind}_{how}": degraded_kind(work, kind, how, scenes, frames) for kind, scenes in plain}
    return worlds


def video_pairs(truth: dict, results: list[dict], iou_threshold: float = 0.5, min_visible: float = 0.25
                ) -> list[tuple[dict, dict]]:
    """(truth annotation, result) pairs of a tracked video: per frame, results matched one to one to the truth's
    people by box IoU (Hungarian, IoU >= iou_threshold); people less than min_visible seen are left out."""
    from scipy.optimize import linear_sum_assignment

    from posecal.metrics.boxes import box_iou

    by_frame: dict[int, list] = {}
    for r in results:
        by_frame.setdefault(int(r["image_id"]), []).append(r)
    pairs = []
    gts_of: dict[int, list] = {}
    for a in truth["annotations"]:
        if a.get("visible_fraction", 1.0) >= min_visible:
            gts_of.setdefault(int(a["image_id"]), []).append(a)
    for t, gts in gts_of.items():
        hyps = by_frame.get(t, [])
        if not hyps:
            continue
        iou = box_iou([a["bbox"] for a in gts], [r["bbox"] for r in hyps])
        rows, cols = linear_sum_assignment(-iou)
        pairs += [(gts[i], hyps[j]) for i, j in zip(rows, cols) if iou[i, j] >= iou_threshold]
    return pairs


def tracked_pairs(model: str, worlds: dict[str, list[tuple[str, Path, Path]]], work: Path, threads: int,
                  log=None) -> dict[str, list[tuple[dict, dict]]]:
    """World kind -> (truth annotation, record) pairs of its scenes tracked by `posecal track`'s defaults with
    `model` (a file without a video calibration: model_without_video_map), each scene's records kept in work/."""
    out: dict[str, list] = {}
    for kind, scenes in worlds.items():
        out[kind] = []
        for name, video, truth in scenes:
            records = tracked_records(model, kind, name, video, truth, work, threads=threads, log=log)
            out[kind] += video_pairs(json.loads(Path(truth).read_text()), records)
    return out


def tracked_records(model: str, kind: str, name: str, video: Path, truth: Path, work: Path, policy=None,
                    threads: int | None = None, log=None, tracker=None) -> list[dict]:
    """`posecal track`'s records of one scene with `model` (a shipped name or a file) and its defaults, but for
    `policy` (a PersonPolicy; None: track's own) and `tracker` (a TrackerConfig; None: track's own), kept in
    work/records/ per model file (its digest), world kind, scene, frame count, policy and tracker, so that a rerun
    tracks nothing it has tracked."""
    import dataclasses

    from posecal.models.checkpoint import model_file
    from posecal.tracking.job import TrackConfig
    from posecal.tracking.units import run_track

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = model_file(model)
    tag = f"{path.stem}_{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    cfg = TrackConfig([str(video)], model=str(model), progress=False, threads=threads)
    options = ""
    if policy is not None and policy != cfg.policy:
        cfg = dataclasses.replace(cfg, policy=policy)
        options = "_" + hashlib.sha256(repr(policy).encode()).hexdigest()[:10]
    if tracker is not None and tracker != cfg.tracker:
        cfg = dataclasses.replace(cfg, tracker=tracker)
        options += "_t" + hashlib.sha256(repr(tracker).encode()).hexdigest()[:10]
    frames = json.loads(Path(truth).read_text())["info"]["n_frames"]
    records = work / "records" / f"{tag}_{kind}_{name}_{frames}{options}.json"
    if not records.is_file():
        records.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        run_track(dataclasses.replace(cfg, out=str(records)), log=lambda m: None)
        log(f"{kind}/{name}{options}: tracked in {time.time() - t0:.0f} s")
    return json.loads(records.read_text())
