"""`posecal track`: poses with identities over videos -> COCO keypoint results with a track_id, and a video.

Per frame: person boxes (the detector every `detect_every` frames; in between, boxes propagated from each live
track's last pose), poses for those boxes, pose NMS, then the tracker (association, births and deaths,
smoothing). Output contract, which checks rely on: one COCO keypoint result per tracked person and frame
with `image_id` = frame index (0-based), `file_name` = "VIDEO#FRAME", an integer `track_id`, and every field
of `posecal predict` (keypoints as x, y, c triples; pose_quality, keypoint_quality,
visibility, visibility_probs, box_score, bbox, score).

Live sources (a camera, rtsp/http streams, a pipe; posecal/data/live.py) run in real time: the newest frame is
taken when the pipeline is ready for one, the others are dropped and counted (with `adaptive`, frames that
arrive during a detector frame wait while the pipeline can catch up, and the detector runs less often when it
cannot: tracking/cadence.py), and the tracker's clock is the capture time. With `--out -` or `.jsonl` each
frame's record is written when the frame is done (posecal/records.py); Ctrl-C, --max-frames, --duration or the
stream's end stop the run with what was made kept.
"""
from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from posecal.errors import PosecalInputError
from posecal.io import publish, write_json_atomic
from posecal.outputs import check_output_dir, check_output_file
from posecal.parallel import current, rank_job
from posecal.predict.job import result_entries
from posecal.data.live import LiveReader, LiveSource, live_source
from posecal.data.sources import VIDEO_SUFFIXES, Problem, collect, is_video, iter_frames, video_fps
from posecal.records import STDOUT, RecordStream, check_results_out, frame_record, is_stream
from posecal.tracking.cadence import LiveCadence
from posecal.tracking.pipeline import InOrder, Prefetch, StageClock, StopRequest
from posecal.tracking.pose_tracker import PoseTracker, TrackConfig, check_tracking, tracking_predictor
from posecal.tracking.shards import merged_tracks


@dataclass
class TrackSummary:
    frames: int
    results: int
    tracks: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)   # busy seconds per stage (pipeline.StageClock)
    captured: int = 0                    # live sources: frames that arrived (processed + dropped)
    dropped: int = 0                     # live sources: frames the pipeline could not take (real time)
    stopped: str | None = None           # why the run ended before its sources did: "interrupted (Ctrl-C)",
                                         # "--max-frames", "--duration", "the reader of the records left"


# The overlay video containers `--render` writes, each with a codec OpenCV's FFmpeg has for it.
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoOut:
    """An overlay video written to a temp file and put in place when complete, with the permissions of every
    other output (posecal.io.publish, as write_atomic does); its container and codec follow its suffix
    (VIDEO_CODECS)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}", suffix=f".tmp{suffix}")
        os.close(fd)
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix]), fps, size)
        if not self.writer.isOpened():
            os.remove(self.tmp)
            raise PosecalInputError(f"{self.path}: OpenCV cannot write a {suffix} video here")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def close(self, keep: bool = True) -> None:
        self.writer.release()
        if keep:
            publish(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def render_is_file(render) -> bool:
    """Is `--render` one overlay video file (a video file name: OUT.mp4, OUT.avi) rather than a folder?"""
    return Path(render).suffix.lower() in VIDEO_SUFFIXES


def render_paths(cfg: TrackConfig, videos: list[tuple[Path, str]]) -> dict[Path, Path]:
    """Each source's overlay video: `--render` itself when it names a video file (one source), else
    `--render/NAME.mp4` in a folder. A video name posecal cannot write, or one file for several sources, is
    refused in one line before any frame is read."""
    if not cfg.render:
        return {}
    if render_is_file(cfg.render):
        suffix = Path(cfg.render).suffix
        if suffix.lower() not in VIDEO_CODECS:
            raise PosecalInputError(f"--render {cfg.render}: posecal writes overlay videos as "
                                    f"{' or '.join(VIDEO_CODECS)}, not {suffix}; give OUT.mp4, OUT.avi or a folder")
        if len(videos) != 1:
            raise PosecalInputError(f"--render {cfg.render}: one video file for {len(videos)} sources; give a "
                                    f"folder (each source's overlay goes in it as NAME.mp4)")
        return {videos[0][0]: check_output_file(cfg.render, "--render")}
    folder = check_output_dir(cfg.render, "--render")
    return {path: folder / f"{Path(name).stem}.mp4" for path, name in videos}


def track_sources(args: list[str]) -> tuple[list[tuple[Path | LiveSource, str]], list[Problem]]:
    """The sources of `posecal track` in the order given: (video file, name) or (live source, its name)."""
    sources, problems = [], []
    for arg in args:
        if arg == "-":
            problems.append(Problem("-: posecal track does not read stdin; for a pipe give a FIFO path (mkfifo) or "
                                    "pipe:PATH"))
            continue
        live = live_source(arg)
        if live is not None:
            sources.append((live, live.name))
            continue
        files, found_problems = collect([arg])
        sources += files
        problems += found_problems
    return sources, problems


def _check(cfg: TrackConfig) -> None:
    check_tracking(cfg)
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise PosecalInputError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    if cfg.duration is not None and not cfg.duration > 0:
        raise PosecalInputError(f"--duration must be > 0, got {cfg.duration}")
    cfg.live.check()
    check_results_out(cfg.out)
    if str(cfg.out) != STDOUT:
        check_output_file(cfg.out, "--out")


@rank_job()
def run_track(cfg: TrackConfig, log=None, keep=None) -> TrackSummary:
    """Track every video and live source of cfg.videos; `keep(frame, tracked)` (optional) sees each frame's (id, pose)
    list. Stages overlap (posecal/tracking/pipeline.py): the next frame is decoded and, on detector frames, its
    people detected while this frame's poses are estimated, and the overlay video is drawn and encoded behind (a
    live source takes its newest frame when the pipeline is ready instead: no frame waits for the next one).
    Under torchrun each rank tracks its share of the videos (a video's frames all on one rank) and rank 0 writes
    the results with track ids renumbered as one process numbers them (tracking/shards.py)."""
    from posecal.overlay import render_people
    from posecal.viz.window import LiveWindow

    ranks = current()
    log = log or (lambda msg: tqdm.write(f"posecal: {msg}", file=sys.stderr))
    say = ranks.main_only(log)           # what every rank would say alike
    _check(cfg)
    sources, problems = track_sources(cfg.videos)
    for p in problems:
        say(p.message)
    for path, _ in [f for f in sources if not isinstance(f[0], LiveSource) and not is_video(f[0])]:
        say(f"{path}: not a video; posecal track reads videos (use posecal predict for images)")
    sources = [f for f in sources if isinstance(f[0], LiveSource) or is_video(f[0])]
    if not sources:
        raise PosecalInputError("nothing to do: no video among " + ", ".join(cfg.videos))
    streaming = is_stream(cfg.out)
    if ranks.distributed and (streaming or any(isinstance(f[0], LiveSource) for f in sources)):
        raise PosecalInputError("live sources and --out -/.jsonl run in one process, not under torchrun")
    renders = render_paths(cfg, sources)
    t0, clock = time.time(), StageClock()
    # the one pipeline (posecal/inference/pipeline.py), as tracking builds it (pose_tracker.tracking_predictor)
    predictor = tracking_predictor(cfg)
    detector = predictor.detector
    clock.add("start", time.time() - t0)
    lookahead = ThreadPoolExecutor(max_workers=1)   # the detector on the next frame
    ctrl_c, stream, window = StopRequest(), None, None
    deadline = None if cfg.duration is None else time.time() + cfg.duration
    n_frames, n_results, captured, dropped = 0, 0, 0, 0

    def stopped() -> str | None:
        """Why the run stops now, if it does: checked between frames (and by a live reader while it waits)."""
        if ctrl_c.requested:
            return "interrupted (Ctrl-C)"
        if cfg.max_frames is not None and n_frames >= cfg.max_frames:
            return "--max-frames"
        if deadline is not None and time.time() >= deadline:
            return "--duration"
        if stream is not None and stream.reader_gone:
            return "the reader of the records left"
        if window is not None and window.closed_by_user:
            return "the window was closed"
        return None

    def draw(video: VideoOut, bgr: np.ndarray, tracked: list) -> None:
        video.write(render_people(bgr, [p for _, p in tracked], tags=[f"#{i}" for i, _ in tracked]))

    results, next_id, videos = [], 1, []
    try:
        ctrl_c.__enter__()
        if streaming:
            stream = RecordStream(cfg.out)
        if cfg.show:
            window = LiveWindow.open("posecal track", log)
        for index in ranks.shard_indices(len(sources)):
            if stopped():
                break
            (source, name), first_result, first_id = sources[index], len(results), next_id
            out_video, reader = None, None
            fps = video_fps(source) if not isinstance(source, LiveSource) else 25.0
            tracker = PoseTracker(cfg, fps, predictor=predictor, first_id=next_id)
            detect = clock.timed("detect", tracker.detect)
            place = itertools.count()   # the frame's place among those taken from this source
            cadence = None              # live, adaptive: the detector's period and the frames that may wait

            def detection_of(frame):   # no detector: the whole frame, on every frame (it costs nothing)
                if isinstance(frame, Problem):
                    return None
                if cadence is not None:
                    if not cadence.detector_frame():
                        return None
                elif not tracker.detector_frame(next(place) if reader is not None else frame.frame_index):
                    return None   # live: the frames taken count
                return lookahead.submit(detect, frame.bgr)

            if isinstance(source, LiveSource):
                reader = LiveReader(source, cfg.live, log, should_stop=lambda: stopped() is not None)
                frames, fps = reader, reader.fps or 25.0
                tracker.fps = fps
                if cfg.adaptive and detector is not None and cfg.live.realtime:
                    cadence = LiveCadence(cfg.detect_every, fps)
                pairs = ((frame, detection_of(frame)) for frame in reader)   # the newest frame, now: no lookahead
            else:
                frames = Prefetch(iter_frames([(source, name)]), clock=clock)
                pairs = one_ahead(frames, detection_of)
            behind, first_capture = InOrder(), None
            try:
                for frame, detection in tqdm(pairs, desc=name, unit="frame",
                                             disable=not cfg.progress or not ranks.is_main):
                    if isinstance(frame, Problem):
                        log(frame.message)
                        continue
                    if stopped():
                        break
                    n_frames += 1
                    t, taken_at = None, time.perf_counter()
                    if reader is not None:   # a live source's clock: the capture time
                        first_capture = frame.capture_time if first_capture is None else first_capture
                        t = frame.capture_time - first_capture
                    detections = None if detection is None else detection.result()
                    people = tracker.step(frame, detections, t=t, clock=clock,
                                          every=None if cadence is None else cadence.every)
                    tracked = [(p.track_id, p) for p in people]
                    with clock("results"):
                        entries = result_entries(frame, people, frame.frame_index, tracker.mode)
                        if stream is not None:
                            stream.write(frame_record(frame.frame_index, frame.name, frame.capture_time, entries))
                            n_results += len(entries)
                        else:
                            results.extend(entries)
                    if keep is not None:
                        keep(frame, tracked)
                    if source in renders:
                        if out_video is None:
                            h, w = frame.bgr.shape[:2]
                            out_video = VideoOut(renders[source], fps, (w, h))
                        behind.submit(clock.timed("render", draw), out_video, frame.bgr, tracked)
                    if window is not None:
                        window.show(render_people(frame.bgr, [p for _, p in tracked],
                                                  tags=[f"#{i}" for i, _ in tracked]))
                    if cadence is not None:
                        cadence.fps = reader.arrival_fps or cadence.fps
                        cadence.record(detection is not None, time.perf_counter() - taken_at)
                        reader.depth = cadence.depth
                behind.finish()
            except BaseException:
                behind.abandon()
                lookahead.shutdown(wait=False, cancel_futures=True)
                if out_video is not None:
                    out_video.close(keep=False)
                raise
            finally:
                frames.close()
            if out_video is not None:
                out_video.close()
            if reader is not None:
                captured, dropped = captured + reader.captured, dropped + reader.dropped
                log(reader.report(stopped()))
                if cadence is not None and cadence.detect_s is not None:
                    log(f"{name}: {cadence.describe()}")
            next_id = tracker.next_id
            videos.append((index, first_id, next_id, first_result, len(results)))
        lookahead.shutdown(wait=True, cancel_futures=True)
    finally:
        ctrl_c.__exit__()
        if stream is not None:
            stream.close()
        if window is not None:
            window.close()
    why = stopped()
    shares = ranks.gather((videos, results, n_frames))
    if not ranks.is_main:
        return TrackSummary(n_frames, len(results), next_id - 1, time.time() - t0, dict(clock.seconds))
    if stream is not None:
        return TrackSummary(n_frames, n_results, next_id - 1, time.time() - t0, dict(clock.seconds),
                            captured, dropped, why)
    if not sum(share[2] for share in shares) and why is None:   # every source failed as it was read
        raise PosecalInputError(f"no frame could be read (see the messages above); nothing written to {cfg.out}")
    results, next_id = merged_tracks(shares)
    with clock("write"):
        write_json_atomic(results, cfg.out, indent=None)
    return TrackSummary(sum(share[2] for share in shares), len(results), next_id - 1, time.time() - t0,
                        dict(clock.seconds), captured, dropped, why)


def one_ahead(items: Iterable, start: Callable) -> Iterator[tuple[object, object]]:
    """(item, start(item)) pairs, with start() already called on the next item when one is yielded: work started
    for the next frame (its detection) runs while the caller works on this one."""
    it = iter(items)
    this = next(it, None)
    if this is None:
        return
    started = start(this)
    for following in it:
        started_next = start(following)
        yield this, started
        this, started = following, started_next
    yield this, started


