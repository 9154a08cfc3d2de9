"""Live sources for `posecal track`: a camera (`0`, `1`, ...), a network stream (`rtsp://`, `http(s)://`, `udp://`,
`tcp://`, `rtmp://`, `srt://`: what OpenCV's FFmpeg backend reads) or a named pipe (a FIFO, or `pipe:PATH`), read
in real time.

Why a reader thread keeping only the newest frame: a camera does not wait, and a slower pipeline taking every frame
would fall ever further behind. Dropped frames are counted; each frame carries its capture time, the tracker's
time base.

Why reconnects: network cameras drop and stall. A read that returns nothing for `stall_seconds` or an ended stream
is reopened up to `reconnects` times in a row, one line each; a pipe's end is the end.
"""
from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from posecal.data.sources import Frame, open_video
from posecal.errors import PosecalInputError

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
PIPE_PREFIX = "pipe:"
# FFmpeg probes a stream's format on up to 5 MB and 5 s of it before the first frame: on a pipe that is seconds of
# frames read at once, then dropped. A small probe starts a pipe at once (OPENCV_FFMPEG_CAPTURE_OPTIONS overrides).
PIPE_CAPTURE_OPTIONS = "probesize;32768|analyzeduration;0|fflags;nobuffer"
_OPEN_LOCK = threading.Lock()   # the capture options travel in an environment variable, read at open time


@dataclass
class LiveConfig:
    reconnects: int = 3            # reopen attempts in a row after a stall or a drop (0: the first end is the end)
    stall_seconds: float = 5.0     # no frame for this long: the stream stalled (also the open timeout)
    realtime: bool = True          # keep only the newest frame (drop what the pipeline cannot take); False: queue
    queue: int = 64                # realtime False: frames held at most (then the reader waits: the stream backs up)

    def check(self) -> None:
        if self.reconnects < 0:
            raise PosecalInputError(f"--reconnect must be >= 0, got {self.reconnects}")
        if not self.stall_seconds > 0:
            raise PosecalInputError(f"--stall must be > 0, got {self.stall_seconds}")


@dataclass(frozen=True)
class LiveSource:
    spec: str       # as given on the command line
    kind: str       # "camera", "url" or "pipe"
    name: str       # how frames and messages name it: camera0, the URL without its password, the pipe's path

    def open_arg(self):
        if self.kind == "camera":
            return int(self.spec)
        return self.spec[len(PIPE_PREFIX):] if self.spec.startswith(PIPE_PREFIX) else self.spec


def live_source(arg: str) -> LiveSource | None:
    """The live source `arg` names, or None for a file or folder argument. An existing file or folder wins (a
    video named `0` stays a video); a FIFO path is a pipe."""
    scheme = arg.split("://", 1)[0].lower() if "://" in arg else None
    if scheme in URL_SCHEMES:
        return LiveSource(arg, "url", redact(arg))
    if arg.startswith(PIPE_PREFIX):
        return LiveSource(arg, "pipe", arg[len(PIPE_PREFIX):])
    path = Path(arg)
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return LiveSource(arg, "pipe", arg)
    except OSError:
        pass
    if re.fullmatch(r"\d{1,3}", arg) and not path.exists():
        return LiveSource(arg, "camera", f"camera{int(arg)}")
    return None


def redact(url: str) -> str:
    """A URL as messages and file names may show it: a password in it (rtsp://user:secret@host) becomes ***."""
    return re.sub(r"^([a-zA-Z]+://[^/@:]*):[^/@]*@", r"\1:***@", url)


class LiveReader:
    """Frames of one live source, read in a thread. Iterating yields the newest frame each time the consumer asks
    (realtime) or every frame (not realtime); it ends when the stream ends for good or `should_stop()` says so.
    Counts: `captured` (frames the source delivered), `taken` (handed on), `dropped` (captured, never taken).
    The first open is checked here: a source that cannot be opened is one PosecalInputError line."""

    def __init__(self, source: LiveSource, cfg: LiveConfig | None = None, log: Callable[[str], None] = print,
                 should_stop: Callable[[], bool] = lambda: False):
        self.source, self.cfg, self.log, self.should_stop = source, cfg or LiveConfig(), log, should_stop
        self.cfg.check()
        self.captured = self.taken = 0
        self.ended: str | None = None          # why the stream ended, once it has
        self.fps = 0.0                         # the stream's nominal rate (0: unknown)
        self.depth = 1                         # realtime: frames that may wait (the newest `depth`; the
                                               # tracker's LiveCadence raises it while the pipeline catches up)
        self._arrivals: deque[float] = deque(maxlen=50)   # capture times of the latest frames (arrival_fps)
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._open_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"live {source.name}", daemon=True)
        self._thread.start()
        while not self._opened.wait(0.1):      # waiting here, not in OpenCV: Ctrl-C still works (a FIFO with
            if self.should_stop():             # no writer yet blocks its open until one comes)
                self.close()
                break
        if self._open_error:
            raise PosecalInputError(self._open_error)

    @property
    def dropped(self) -> int:
        return self.captured - self.taken

    @property
    def arrival_fps(self) -> float:
        """The rate frames arrive at, measured over the last 50 (0 before 5 frames): what a stream delivers,
        where its nominal rate is unknown or wrong (an MJPEG stream over HTTP reports FFmpeg's guess of 25)."""
        times = list(self._arrivals)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 5 and times[-1] > times[0] else 0.0

    def _open(self):
        src = self.source
        if src.kind == "camera":
            cap = open_video(src.open_arg())
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)   # the driver's queue too holds only the newest frame
            return cap
        ms = int(self.cfg.stall_seconds * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        with _OPEN_LOCK:
            key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
            before = os.environ.get(key)
            if src.kind == "pipe" and before is None:
                os.environ[key] = PIPE_CAPTURE_OPTIONS
            try:
                return open_video(src.open_arg(), cv2.CAP_FFMPEG, params)
            finally:
                if before is None:
                    os.environ.pop(key, None)

    def _cannot_open(self) -> str:
        why = {"camera": "no camera with this index, or it is busy",
               "url": "unreachable, refused, or not a stream OpenCV's FFmpeg backend reads",
               "pipe": "what arrives on it is not a video stream OpenCV's FFmpeg backend reads"}[self.source.kind]
        return f"{self.source.name}: cannot open the live source ({why})"

    def _run(self) -> None:
        try:
            cap = self._open()
            if not cap.isOpened():
                self._open_error = self._cannot_open()
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 0.0
        finally:
            self._opened.set()
        try:
            self._read(cap)
        except BaseException as e:   # an OpenCV error mid-stream: one line, the stream ends
            self.ended = f"{self.source.name}: reading failed ({e})"
        finally:
            with self._cond:
                if self.ended is None:
                    self.ended = "stopped"
                self._cond.notify_all()

    def _read(self, cap) -> None:
        in_a_row = 0
        while not self._stop.is_set():
            t = time.monotonic()
            ok, bgr = cap.read() if cap is not None else (False, None)
            if ok and bgr is not None:
                in_a_row = 0
                self._publish(bgr, time.time())
                continue
            if self._stop.is_set():
                break
            stalled = cap is not None and time.monotonic() - t >= 0.9 * self.cfg.stall_seconds
            why = (f"no frame for {self.cfg.stall_seconds:g} s" if stalled
                   else "the stream ended" if cap is not None else "cannot reopen it")
            if cap is not None:
                cap.release()
                cap = None
            if self.source.kind == "pipe" or in_a_row >= self.cfg.reconnects:
                gave_up = f" (after {in_a_row} reconnect attempt(s))" if in_a_row else ""
                self.ended = f"{self.source.name}: {why}{gave_up}"
                return
            in_a_row += 1
            self.log(f"{self.source.name}: {why}; reconnecting ({in_a_row}/{self.cfg.reconnects})")
            if self._stop.wait(min(2.0, 0.25 * in_a_row)):
                break
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                cap = None
        if cap is not None:
            cap.release()

    def _publish(self, bgr: np.ndarray, captured_at: float) -> None:
        frame = Frame(f"{self.source.name}#{self.captured}", Path(self.source.name), bgr,
                      frame_index=self.captured, capture_time=captured_at)
        with self._cond:
            if self._stop.is_set():
                return
            if self.cfg.realtime:             # frames nobody took beyond `depth` are dropped (captured - taken)
                while len(self._frames) >= self.depth:
                    self._frames.popleft()
            else:
                while len(self._frames) >= self.cfg.queue and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return
            self._frames.append(frame)
            self._arrivals.append(captured_at)
            self.captured += 1
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                with self._cond:
                    while not self._frames and self.ended is None and not self.should_stop():
                        self._cond.wait(0.1)
                    if not self._frames or self.should_stop():
                        return
                    frame = self._frames.popleft()
                    self.taken += 1
                    self._cond.notify_all()
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading. A frame still waiting arrived after the run stopped: neither processed nor dropped."""
        self._stop.set()
        with self._cond:
            self.captured -= len(self._frames)
            self._frames.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.cfg.stall_seconds + 1)

    def report(self, stopped_by: str | None = None) -> str:
        """One line: what arrived, what share was processed, what was dropped, why it ended (`stopped_by`: what
        stopped the run, when the stream itself did not end)."""
        share = self.taken / self.captured if self.captured else 0.0
        end = (self.ended if self.ended not in (None, "stopped")
               else f"stopped by {stopped_by}" if stopped_by else "stopped")
        return (f"{self.source.name}: {self.captured} frame(s) arrived, {self.taken} processed ({share:.0%}), "
                f"{self.dropped} dropped (the pipeline was busy); {end}")
