"""`posecal track --engine ray`: video files tracked by Ray Data actors, one video per actor call, on this machine
or a Ray cluster, then written as the one results file a single process writes.

A video is one row (its frames stay in one process: identities go from frame to frame); each actor holds one
pipeline and tracks its videos with `posecal track`'s own run (tracking/batches.py), writing a video's overlay
where --render asks for one. The rows, actors, parts (one per video, written by its worker: a resumed run redoes
at most the video each worker was on), retries and resources are posecal/parallel/ray_rows.py's, shared with
`posecal predict`, `eval` and `audit`. When every part is in, the videos' results are merged in input order with
the track ids one process gives (tracking/track_ids.py), written atomically, and the parts removed.

What only one process can do is refused in one line: live sources, `--out -`/`.jsonl` (records streamed frame by
frame), --show, --rerun (one recording), and --max-frames/--duration (limits over all sources together).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from posecal.data.live import LiveSource
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import require_model
from posecal.inference.run_identity import run_identity
from posecal.io import log_line, write_json_atomic
from posecal.parallel.parts import resumable
from posecal.parallel.ray_rows import RayConfig, RowJob, import_ray, run_rows
from posecal.records import is_stream
from posecal.tracking.batches import SETTINGS, TRACKS, TrackBatches
from posecal.tracking.job import TrackSummary, _check, no_frame_read, render_paths, video_sources
from posecal.tracking.pose_tracker import TrackConfig
from posecal.tracking.track_ids import merged_tracks


def run_track_ray(cfg: TrackConfig, ray_cfg: RayConfig | None = None, tracker=TrackBatches,
                  log=None) -> TrackSummary:
    """`posecal track` through Ray: the same results file (and overlay videos) as run_track.
    tracker: the map_batches class (TrackBatches; a test's subclass)."""
    ray_cfg = ray_cfg or RayConfig()
    log = log or log_line
    _check(cfg)
    _refuse_one_process_options(cfg)
    ray_cfg.check()
    ray = import_ray()
    t0 = time.time()
    sources = video_sources(cfg, log)
    live = [name for source, name in sources if isinstance(source, LiveSource)]
    if live:
        raise PosecalInputError(f"{live[0]}: a live source is tracked by one process; --engine ray tracks video "
                                f"files")
    renders = {Path(path).resolve(): str(Path(render).resolve()) for path, render in render_paths(cfg, sources).items()}
    require_model(cfg.model)
    if cfg.device == "cuda":
        providers("cuda")   # a CPU-only onnxruntime is said here once, not by every actor out of sight
    settings = actor_settings(cfg)
    fingerprint = {"inputs": [[str(Path(p).resolve()), name] for p, name in sources],
                   "renders": sorted(renders.values()),
                   "settings": {k: v for k, v in settings.items() if k != "threads"},
                   "identity": run_identity(cfg.model, cfg.verifier, cfg.detector)}
    store, rows = resumable(cfg.out, sources, json.loads(json.dumps(fingerprint, default=_plain)), log)
    for row in rows:
        row["render"] = renders.get(Path(row["path"]), "")

    def on_part(video: dict) -> None:
        for message in video["messages"]:
            log(message)

    if rows:
        run_rows(ray, ray_cfg, RowJob(tracker, settings, TRACKS, gpu=cfg.device == "cuda"), rows, store, on_part,
                 cfg.progress, "tracking (ray)", "video")
    videos = [(index, video["entries"], video["next_id"], video["frames"])
              for index, video in enumerate(store.parts(len(sources)))]
    frames = sum(v[3] for v in videos)
    if not frames:   # every video failed as it was read
        raise PosecalInputError(no_frame_read(cfg.out))
    results, next_id = merged_tracks([v[:3] for v in videos])
    write_json_atomic(results, cfg.out, indent=None)
    store.remove()
    return TrackSummary(frames, len(results), next_id - 1, time.time() - t0)


def _refuse_one_process_options(cfg: TrackConfig) -> None:
    """What only one process does, in one line each."""
    if is_stream(cfg.out):
        raise PosecalInputError("--out -/.jsonl streams each frame from one process; with --engine ray give --out "
                                "X.json")
    if cfg.show:
        raise PosecalInputError("--show is one process's window: leave out --engine ray, or --show")
    if cfg.rerun:
        raise PosecalInputError("--rerun writes one recording from one process: leave out --engine ray, or --rerun")
    if cfg.max_frames is not None or cfg.duration is not None:
        raise PosecalInputError("--max-frames and --duration limit one process's run over all its sources: leave "
                                "them out with --engine ray")


def actor_settings(cfg: TrackConfig) -> dict:
    """TrackBatches' settings from the run's config, with the files among them (a model, a detector or a verifier
    file) as absolute paths: an actor does not run in the driver's folder."""
    settings = {k: getattr(cfg, k) for k in SETTINGS}
    for key in ("model", "detector", "verifier"):
        if isinstance(settings[key], str) and Path(settings[key]).is_file():
            settings[key] = str(Path(settings[key]).resolve())
    return settings


def _plain(value):
    """A setting that JSON does not know (a TrackerConfig, a PersonPolicy) as the fields it holds."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)
