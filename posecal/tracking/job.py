"""`posecal track`: poses with identities over videos -> COCO keypoint results with a track_id, and a video.

Output contract: one COCO keypoint result per tracked person and frame with `image_id` = frame index (0-based),
`file_name` = "VIDEO#FRAME", an integer `track_id`, and every field of `posecal predict`.

Live sources (a camera, rtsp/http streams, a pipe; posecal/data/live.py) run in real time: the newest frame is
taken when the pipeline is ready, the others dropped and counted (`adaptive`: tracking/cadence.py), and the
tracker's clock is the capture time. With `--out -` or `.jsonl` each frame's record is written when done;
Ctrl-C, --max-frames, --duration or the stream's end keep what was made. `--rerun OUT.rrd` also logs each frame
to a rerun recording of the one source (posecal/integrations/rerun.py).
"""
from __future__ import annotations

import itertools
import os
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
from posecal.io import (StopRequest, check_output_dir, check_output_file, progress_shown, publish,
                        write_json_atomic)
from posecal.records import result_entries
from posecal.data.live import LiveReader, LiveSource, live_source
from posecal.data.sources import (VIDEO_SUFFIXES, Problem, collect, distinct_names, frames_to_read, is_video,
                                  iter_frames, video_fps)
from posecal.records import STDOUT, RecordStream, check_results_out, frame_record, is_stream
from posecal.tracking.cadence import LiveCadence
from posecal.tracking.chunks import VideoChunks
from posecal.tracking.stages import InOrder, Prefetch, StageClock
from posecal.tracking.pose_tracker import PoseTracker, TrackConfig, check_tracking, tracking_predictor


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
    fingerprint: str = ""                # its settings' and weights' digest (tracking/units.py)


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


def render_paths(cfg: TrackConfig, videos: list[tuple[Path, str]], log=None) -> dict[Path, Path]:
    """Each source's overlay video: `--render` itself when it names a video file (one source), else
    `--render/NAME.mp4` in a folder (two sources of one name: `NAME-2.mp4`, said in one line to `log`, as predict's
    overlays: RenderNames). A video name posecal cannot write, or one file for several sources, is refused in one
    line before any frame is read."""
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
    from posecal.io import log_line
    from posecal.predict.job import RenderNames

    names = RenderNames(folder, log or log_line)
    return {path: names.claim(folder / f"{Path(name).stem}.mp4", name) for path, name in videos}


def check_rerun(cfg: TrackConfig, sources: list) -> None:
    """`--rerun OUT.rrd`, before any model is opened or frame read: one source (a recording's frame timeline is
    one video's), a .rrd name in a writable folder, and the rerun SDK installed; each problem one line."""
    if not cfg.rerun:
        return
    from posecal.integrations.rerun import check_recording_path, import_rerun

    if len(sources) != 1:
        raise PosecalInputError(f"--rerun {cfg.rerun}: one recording for {len(sources)} sources; track one source "
                                f"at a time with --rerun")
    check_recording_path(cfg.rerun, "--rerun")
    import_rerun("--rerun")


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


def check_track(cfg: TrackConfig) -> None:
    check_tracking(cfg)
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise PosecalInputError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    if cfg.duration is not None and not cfg.duration > 0:
        raise PosecalInputError(f"--duration must be > 0, got {cfg.duration}")
    cfg.live.check()
    check_results_out(cfg.out)
    if str(cfg.out) != STDOUT:
        check_output_file(cfg.out, "--out")


def track_frame_by_frame(cfg: TrackConfig, sources: list, log, keep=None) -> TrackSummary:
    """Every source of `sources` (video files and live sources) tracked in this process, one after the other by one
    TrackRun: what streams records, shows a window, records to rerun, stops at --max-frames or --duration, or
    hands each frame to `keep(frame, tracked)` (its (id, pose) list). Stages overlap (posecal/tracking/stages.py):
    the next frame is decoded and, on detector frames, its people detected while this frame's poses are
    estimated, and the overlay video is drawn and encoded behind (a live source takes its newest frame when the
    pipeline is ready instead: no frame waits for the next one). cfg's precision is decided (tracking/units.py's
    run_track, which calls this)."""
    renders = render_paths(cfg, sources, log)
    check_rerun(cfg, sources)
    t0, clock = time.time(), StageClock()
    predictor = tracking_predictor(cfg)   # the one pipeline, as tracking builds it (pose_tracker.tracking_predictor)
    clock.add("start", time.time() - t0)
    run = TrackRun(cfg, log, keep, predictor, clock, renders)
    run.track(sources)
    return run.summary(t0)


def video_sources(cfg: TrackConfig, log) -> list[tuple[Path | LiveSource, str]]:
    """The videos and live sources to track, in the order given; every other argument is one line (a file that is
    not a video sends the user to posecal predict), and none left is an error."""
    sources, problems = track_sources(cfg.videos)
    for p in problems:
        log(p.message)
    for path, _ in [f for f in sources if not isinstance(f[0], LiveSource) and not is_video(f[0])]:
        log(f"{path}: not a video; posecal track reads videos (use posecal predict for images)")
    sources = [f for f in sources if isinstance(f[0], LiveSource) or is_video(f[0])]
    if not sources:
        raise PosecalInputError("nothing to do: no video among " + ", ".join(cfg.videos))
    return distinct_names(sources, log)


@dataclass
class _Feed:
    """One source as it is tracked: its frames (to close), (frame, detection started) pairs, the live reader and its
    adaptive cadence (None for a file), its frame rate, and its overlay video once the first frame sized it."""
    frames: object = None
    pairs: Iterable = ()
    reader: LiveReader | None = None
    cadence: LiveCadence | None = None
    fps: float = 25.0
    video: VideoOut | None = None
    recording: object = None             # its rerun recording (--rerun: integrations/rerun.py's RerunRecording)
    next_frame: int = 0                  # the frame index after the last one tracked (a kept chunk goes on there)
    detected: bool = False               # a live source: was its last frame taken a detector frame,
    taken_at: float = 0.0                # and when was it taken (perf_counter)


class TrackRun:
    """A `posecal track` run over its sources: what stops it (Ctrl-C, --max-frames, --duration, a reader or window
    gone), the records or results made so far, the frames and live frames counted, and the ids handed out (each
    source's tracker starts where the one before ended). chunks: one video file's VideoChunks (tracking/chunks.py,
    as TrackBatches tracks a video): the run goes on after the chunks an earlier run kept, and keeps its own."""

    def __init__(self, cfg: TrackConfig, log, keep, predictor, clock: StageClock, renders: dict,
                 chunks: VideoChunks | None = None):
        self.cfg, self.log, self.keep, self.chunks = cfg, log, keep, chunks
        self.predictor, self.clock, self.renders = predictor, clock, renders
        self.lookahead = ThreadPoolExecutor(max_workers=1)   # the detector on the next frame
        self.ctrl_c, self.stream, self.window = StopRequest(), None, None
        self.deadline = None if cfg.duration is None else time.time() + cfg.duration
        self.n_frames = self.n_results = self.captured = self.dropped = 0
        self.results, self.next_id = [], 1

    def stopped(self) -> str | None:
        """Why the run stops now, if it does: checked between frames (and by a live reader while it waits)."""
        if self.ctrl_c.requested:
            return "interrupted (Ctrl-C)"
        if self.cfg.max_frames is not None and self.n_frames >= self.cfg.max_frames:
            return "--max-frames"
        if self.deadline is not None and time.time() >= self.deadline:
            return "--duration"
        if self.stream is not None and self.stream.reader_gone:
            return "the reader of the records left"
        if self.window is not None and self.window.closed_by_user:
            return "the window was closed"
        return None

    def track(self, sources: list) -> None:
        """The sources, one after the other, with Ctrl-C caught as a stop request and the
        records stream and the live window closed whatever happens."""
        from posecal.viz.window import LiveWindow

        try:
            self.ctrl_c.__enter__()
            if is_stream(self.cfg.out):
                self.stream = RecordStream(self.cfg.out)
            if self.cfg.show:
                self.window = LiveWindow.open("posecal track", self.log)
            for source, name in sources:
                if self.stopped():
                    break
                self._track_source(source, name)
            self.lookahead.shutdown(wait=True, cancel_futures=True)
        finally:
            self.ctrl_c.__exit__()
            if self.stream is not None:
                self.stream.close()
            if self.window is not None:
                self.window.close()

    def _track_source(self, source, name: str) -> None:
        """One source's frames through its own tracker (ids going on from the last source's); on any failure the
        drawing behind and the detection ahead are dropped and a half-written overlay video removed."""
        fps = video_fps(source) if not isinstance(source, LiveSource) else 25.0
        tracker = PoseTracker(self.cfg, fps, predictor=self.predictor, first_id=self.next_id)
        feed = self._feed(source, name, tracker, fps, self._resume(tracker, name))
        behind, frames_before = InOrder(), self.n_frames
        try:
            feed.recording = self._open_recording(feed)
            # the API's frame loop (PoseTracker.track_pairs); this run adds the writers, overlays and live cadence
            for frame, picture in tracker.track_pairs(
                    tqdm(feed.pairs, desc=name, unit="frame", disable=not progress_shown(self.cfg.progress),
                         total=self._frames_ahead(source, name)),
                    live=feed.reader is not None, clock=self.clock,
                    every=lambda: None if feed.cadence is None else feed.cadence.every,
                    stop=lambda: self.stopped() is not None, on_problem=lambda problem: self.log(problem.message)):
                self._frame(frame, picture.people, tracker, feed, source, behind)
                self._log_recording(feed, picture)
                feed.next_frame = frame.frame_index + 1
                if self.chunks is not None and self.chunks.due():
                    self.chunks.keep(feed.next_frame, self.n_frames, self.results, tracker)
            if self.chunks is not None and self.stopped() is not None:   # Ctrl-C keeps every frame tracked
                self.chunks.keep(feed.next_frame, self.n_frames, self.results, tracker)
            behind.finish()
        except BaseException:
            behind.abandon()
            self.lookahead.shutdown(wait=False, cancel_futures=True)
            if feed.video is not None:
                feed.video.close(keep=False)
            if feed.recording is not None:
                feed.recording.close(keep=False)
            raise
        finally:
            feed.frames.close()
        if feed.video is not None:
            feed.video.close()
        if feed.recording is not None:   # kept when the source gave a frame (a stop request keeps what was made)
            feed.recording.close(keep=self.n_frames > frames_before)
        if feed.reader is not None:
            self._live_report(name, feed)
        self.next_id = tracker.next_id

    def _resume(self, tracker: PoseTracker, name: str) -> int:
        """The frame to start the video at: after the chunks an earlier run kept (their records taken as this
        run's, the tracker restored to its state after them), else 0."""
        resumed = None if self.chunks is None else self.chunks.resumed()
        if resumed is None:
            return 0
        tracker.restore(resumed.state)
        self.results += resumed.results
        self.n_frames += resumed.frames
        self.log(f"{name}: going on from frame {resumed.next_frame} ({resumed.frames} frame(s) tracked before are "
                 f"kept in {self.chunks.folder})")
        return resumed.next_frame

    def _frames_ahead(self, source, name: str) -> int | None:
        """A video file's frames still to track (its stated count, within --max-frames): its progress bar's
        total; None for a live source, or where no bar is drawn."""
        if isinstance(source, LiveSource) or not progress_shown(self.cfg.progress):
            return None
        left = None if self.cfg.max_frames is None else max(self.cfg.max_frames - self.n_frames, 0)
        return frames_to_read([(source, name)], 1, left)

    def _open_recording(self, feed: _Feed):
        """The source's rerun recording (--rerun), at the source's frame rate; None without --rerun."""
        if not self.cfg.rerun:
            return None
        from posecal.integrations.rerun import RerunRecording

        return RerunRecording(self.cfg.rerun, fps=feed.fps, option="--rerun")

    def _log_recording(self, feed: _Feed, picture) -> None:
        """A tracked frame into the rerun recording (--rerun): its image, people and pose quality."""
        if feed.recording is not None:
            with self.clock("rerun"):
                feed.recording.log(picture)

    def _feed(self, source, name: str, tracker: PoseTracker, fps: float, start: int = 0) -> _Feed:
        """A source's (frame, detection) pairs: a file's decoded ahead with the next frame's detection started
        while this one is estimated, from frame `start` on (those before it tracked by an earlier run); a live
        source's newest frame when the pipeline is ready (no lookahead), the detector's frames chosen by the
        adaptive cadence when asked for. Without a detector nothing is started."""
        detect = self.clock.timed("detect", tracker.detect)
        feed = _Feed(fps=fps)
        place = itertools.count()   # the frame's place among those taken from this source

        def detection_of(frame):   # no detector: the whole frame, on every frame (it costs nothing)
            if isinstance(frame, Problem):
                return None
            if feed.cadence is not None:
                if not feed.cadence.detector_frame():
                    return None
            elif not tracker.detector_frame(next(place) if feed.reader is not None else frame.frame_index):
                return None   # live: the frames taken count
            return self.lookahead.submit(detect, frame.bgr)

        def newest():   # a live source's frame when the pipeline is ready for one, and when it was taken
            for frame in feed.reader:
                detection = detection_of(frame)
                feed.detected, feed.taken_at = detection is not None, time.perf_counter()
                yield frame, detection

        if isinstance(source, LiveSource):
            feed.reader = LiveReader(source, self.cfg.live, self.log, should_stop=lambda: self.stopped() is not None)
            feed.frames, feed.fps = feed.reader, feed.reader.fps or 25.0
            tracker.fps = feed.fps
            if self.cfg.adaptive and self.predictor.detector is not None and self.cfg.live.realtime:
                feed.cadence = LiveCadence(self.cfg.detect_every, feed.fps)
            feed.pairs = newest()
        else:
            feed.frames = Prefetch(iter_frames([(source, name)]), clock=self.clock)
            feed.pairs, feed.next_frame = one_ahead(from_frame(feed.frames, start), detection_of), start
        return feed

    def _frame(self, frame, people: list, tracker: PoseTracker, feed: _Feed, source, behind: InOrder) -> None:
        """One tracked frame: its record or results, the caller's `keep`, its overlay drawn behind and shown, and the
        live cadence told how long the frame took since it was taken (detector frame or not)."""
        self.n_frames += 1
        tracked = [(p.track_id, p) for p in people]
        self._record(frame, people, tracker.mode)
        if self.keep is not None:
            self.keep(frame, tracked)
        self._draw(frame, tracked, feed, source, behind)
        if feed.cadence is not None:
            feed.cadence.fps = feed.reader.arrival_fps or feed.cadence.fps
            feed.cadence.record(feed.detected, time.perf_counter() - feed.taken_at)
            feed.reader.depth = feed.cadence.depth

    def _record(self, frame, people: list, mode: str) -> None:
        """A frame's result entries: streamed as its record (--out - / .jsonl), else kept for the results file."""
        with self.clock("results"):
            entries = result_entries(frame, people, frame.frame_index, mode)
            if self.stream is not None:
                self.stream.write(frame_record(frame.frame_index, frame.name, frame.capture_time, entries))
                self.n_results += len(entries)
            else:
                self.results.extend(entries)

    def _draw(self, frame, tracked: list, feed: _Feed, source, behind: InOrder) -> None:
        """The frame's overlay: into the source's overlay video (opened at the first frame's size), drawn behind,
        and into the live window (--show)."""
        if source in self.renders:
            if feed.video is None:
                h, w = frame.bgr.shape[:2]
                feed.video = VideoOut(self.renders[source], feed.fps, (w, h))
            behind.submit(self.clock.timed("render", _draw_tracked), feed.video, frame.bgr, tracked)
        if self.window is not None:
            self.window.show(_tracked_overlay(frame.bgr, tracked))

    def _live_report(self, name: str, feed: _Feed) -> None:
        """A live source's counts (frames captured and dropped) and, adaptive, the cadence it settled on."""
        self.captured, self.dropped = self.captured + feed.reader.captured, self.dropped + feed.reader.dropped
        self.log(feed.reader.report(self.stopped()))
        if feed.cadence is not None and feed.cadence.detect_s is not None:
            self.log(f"{name}: {feed.cadence.describe()}")

    def summary(self, t0: float) -> TrackSummary:
        """The results file (records were streamed already). Every source failing as it was read is an error, and
        nothing is written."""
        why, clock = self.stopped(), self.clock
        if self.stream is not None:
            return TrackSummary(self.n_frames, self.n_results, self.next_id - 1, time.time() - t0,
                                dict(clock.seconds), self.captured, self.dropped, why)
        if not self.n_frames and why is None:   # every source failed as it was read
            raise PosecalInputError(no_frame_read(self.cfg.out))
        with clock("write"):
            write_json_atomic(self.results, self.cfg.out, indent=None)
        return TrackSummary(self.n_frames, len(self.results), self.next_id - 1, time.time() - t0,
                            dict(clock.seconds), self.captured, self.dropped, why)


def no_frame_read(out) -> str:
    """The line for a run none of whose sources gave a frame (one process or Ray alike)."""
    return f"no frame could be read (see the messages above); nothing written to {out}"


def _tracked_overlay(bgr: np.ndarray, tracked: list) -> np.ndarray:
    """A frame with its tracked people drawn, each tagged with its track id."""
    from posecal.overlay import render_people

    return render_people(bgr, [p for _, p in tracked], tags=[f"#{i}" for i, _ in tracked])


def _draw_tracked(video: VideoOut, bgr: np.ndarray, tracked: list) -> None:
    """The overlay of one frame, written to the source's overlay video."""
    video.write(_tracked_overlay(bgr, tracked))


def from_frame(frames: Iterable, start: int) -> Iterator:
    """A video's frames (and problems) from frame index `start` on: those before it are decoded, as a video is
    read in order, and passed over."""
    for frame in frames:
        if isinstance(frame, Problem) or frame.frame_index >= start:
            yield frame


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


