"""`posecal track`, in this process or on Ray: video files into a results file (`--out X.json`) go through the
runner (posecal/parallel/runner.py) on either engine (OneProcess, or `--engine ray`).

A video is one unit (identities go from frame to frame); whoever does it tracks it with `posecal track`'s own run
(tracking/batches.py, job.TrackRun), writing its overlay where --render asks. Its part (keyed by the file and its
overlay) holds its results; the parts are merged in input order with the track ids one process gives
(tracking/track_ids.py). While a video without an overlay is tracked, its work is kept in chunks
(tracking/chunks.py), so a Ctrl-C keeps every finished video and every frame of the one at hand, and the same
command goes on mid-video with the records an uninterrupted run gives (on Ray a killed worker loses at most
chunks.KEEP_SECONDS).

What needs one frame loop over all sources is tracked in this process (job.track_frame_by_frame) and refused in
one line on Ray: live sources, `--out -`/`.jsonl`, --show, --rerun, --max-frames/--duration.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from posecal.data.live import LiveSource
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import precision_decided, require_model
from posecal.inference.run_identity import run_identity, weights_digest
from posecal.io import log_line, write_json_atomic
from posecal.parallel.parts import part_folder
from posecal.parallel.runner import Engine, OneProcess, RowJob, absolute_paths, digest, fingerprint, run
from posecal.records import is_stream
from posecal.tracking.batches import SETTINGS, TRACKS, TrackBatches
from posecal.tracking.identity import ID_CONFIDENCE_FILE
from posecal.tracking.job import (TrackSummary, check_track, no_frame_read, render_paths, track_frame_by_frame,
                                  video_sources)
from posecal.tracking.pose_tracker import TrackConfig
from posecal.tracking.track_ids import merged_tracks


def run_track(cfg: TrackConfig, log=None, keep=None, engine: Engine | None = None, tracker=TrackBatches
              ) -> TrackSummary:
    """`posecal track`: cfg's videos and live sources -> their tracked poses. Video files into a results file go
    through the runner on `engine` (None: this process); what needs one frame loop over all sources (frame_by_frame)
    or `keep(frame, tracked)` (each frame's (id, pose) list) is tracked frame by frame here. tracker: the
    map_batches class (TrackBatches; a test's subclass)."""
    log = log or log_line
    check_track(cfg)
    if engine is not None:
        _refuse_one_process_options(cfg)
        engine.ready()
    t0 = time.time()
    sources = video_sources(cfg, log)
    live = [name for source, name in sources if isinstance(source, LiveSource)]
    if live and engine is not None:
        raise PosecalInputError(f"{live[0]}: a live source is tracked by one process; --engine ray tracks video "
                                f"files")
    require_model(cfg.model)
    cfg, opening = precision_decided(cfg)   # here, not in each worker: every node runs the graphs this one chose
    settings = absolute_paths({k: getattr(cfg, k) for k in SETTINGS}, ("model", "detector", "verifier"))
    print_run = track_fingerprint(cfg, settings)
    if engine is None and (live or keep is not None or frame_by_frame(cfg)):
        if opening:
            log(opening)
        return replace(track_frame_by_frame(cfg, sources, log, keep), fingerprint=digest(print_run))
    if cfg.device == "cuda":
        providers("cuda")   # a CPU-only onnxruntime is said here once, not by every worker out of sight
    renders = {Path(path).resolve(): str(Path(render).resolve())
               for path, render in render_paths(cfg, sources, log).items()}

    def on_part(video: dict) -> None:
        for message in video["messages"]:
            log(message)

    # a video's overlay is in its row, so in its part's key: another --render tracks it again; the parts folder in
    # its row is where its worker keeps its chunks
    parts = str(part_folder(Path(cfg.out).resolve()))
    with run(cfg.out, sources, RowJob(tracker, settings, TRACKS, gpu=cfg.device == "cuda"),
             engine or OneProcess(), print_run, log, on_part,
             lambda i: {"render": renders.get(Path(sources[i][0]).resolve(), ""), "parts": parts}, cfg.progress,
             "tracking", "video", opening) as store:
        videos = list(store.parts())
        frames = sum(v["frames"] for v in videos)
        if not frames:   # every video failed as it was read
            raise PosecalInputError(no_frame_read(cfg.out))
        results, next_id = merged_tracks([(i, v["entries"], v["next_id"]) for i, v in enumerate(videos)])
        write_json_atomic(results, cfg.out, indent=None)
        store.remove()
    stages: dict[str, float] = {}
    for video in videos:
        for stage, seconds in video.get("stages", {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return TrackSummary(frames, len(results), next_id - 1, time.time() - t0, stages, fingerprint=digest(print_run))


def track_fingerprint(cfg: TrackConfig, settings: dict, id_map=None) -> dict:
    """What a track run's results depend on (runner.fingerprint): its settings, the weights, and the identity map
    that rates every record's id_confidence (`id_map`, default the shipped one): a refit map is another run."""
    id_map = ID_CONFIDENCE_FILE if id_map is None else Path(id_map)
    return fingerprint(settings, run_identity(cfg.model, cfg.verifier, cfg.detector),
                       id_confidence=weights_digest(id_map) if id_map.is_file() else None)


def frame_by_frame(cfg: TrackConfig) -> bool:
    """Does the run need one frame loop over all its sources (records streamed, a window, one rerun recording,
    limits over all sources), rather than a unit per video?"""
    return (is_stream(cfg.out) or cfg.show or bool(cfg.rerun) or cfg.max_frames is not None
            or cfg.duration is not None)


def _refuse_one_process_options(cfg: TrackConfig) -> None:
    """What only one process's frame loop does, in one line each."""
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
