"""Tracked videos with exact truth, grouped by kind of world, as records written without a video calibration.

What tools/fit_video_calibration.py judges its maps on (leave one world kind out: posecal/calibration/
video_choice.py) and what bench/trust_conditions.py reports its "no map" rows from. The kinds, all of
bench/track_ids.py's synthetic scenes of val people walking and crossing:
- `vtest`: its tuning scenes (seed i, the empty room of vtest_pedestrians_20s.avi);
- `intel`, `intel_mirrored`: its held-out scenes (seed 100 + i, people no tuning scene shows) over the empty room
  of intel_one_by_one_person_20s.mp4, as it is (even i) and mirrored (odd i);
- `KIND_half`: a kind's scenes with every frame downscaled by 2 (people about half as tall, as far-away people
  are) and the truth scaled alike;
- `KIND_jpeg`: a kind's scenes written again at MJPG quality 20 (blocky, as low-bitrate video is).
Records are tracked once per model file, scene and frame count and kept in the work folder.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/: track_ids
from posecal.io import write_json_atomic  # noqa: E402

VTEST_TUNING = 9   # tuning scenes whose people the held-out scenes leave out (as bench/trust_conditions.py)
DEGRADED = {"half": (0.5, 95), "jpeg": (1.0, 20)}   # name: (scale, MJPG quality) of a world's degraded copy


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


def degraded(video: Path, truth: Path, out_dir: Path, factor: float = 0.5, quality: int = 95) -> tuple[Path, Path]:
    """The scene with every frame resized by factor (area interpolation) and written at MJPG `quality`, its truth
    moved alike (pixel centres: (x + 0.5) f - 0.5; areas by f^2); written once."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    video_out, truth_out = out_dir / video.name, out_dir / truth.name
    if video_out.is_file() and truth_out.is_file():
        return video_out, truth_out
    cap, writer = cv2.VideoCapture(str(video)), None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
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
    gt = json.loads(truth.read_text())
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
        worlds |= {f"{kind}_{how}": [(name, *degraded(video, truth, work / f"{kind}_{how}_{frames}", *DEGRADED[how]))
                                     for name, video, truth in scenes] for kind, scenes in plain}
    return worlds


def tracked_pairs(model: str, worlds: dict[str, list[tuple[str, Path, Path]]], work: Path, threads: int,
                  log=None) -> dict[str, list[tuple[dict, dict]]]:
    """World kind -> (truth annotation, record) pairs of its scenes tracked by `posecal track`'s defaults with
    `model` (a file without a video calibration: model_without_video_map), each scene's records kept in work/."""
    from posecal.evaluation.conditions import video_pairs
    from posecal.tracking.job import TrackConfig, run_track

    from posecal.models.checkpoint import model_file

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tag = f"{model_file(model).stem}_{hashlib.sha256(model_file(model).read_bytes()).hexdigest()[:12]}"
    out: dict[str, list] = {}
    for kind, scenes in worlds.items():
        out[kind] = []
        for name, video, truth in scenes:
            gt = json.loads(Path(truth).read_text())
            records = work / "records" / f"{tag}_{kind}_{name}_{gt['info']['n_frames']}.json"
            if not records.is_file():
                records.parent.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                run_track(TrackConfig([str(video)], out=str(records), model=model, progress=False, threads=threads),
                          log=lambda m: None)
                log(f"{kind}/{name}: tracked in {time.time() - t0:.0f} s")
            out[kind] += video_pairs(gt, json.loads(records.read_text()))
    return out
