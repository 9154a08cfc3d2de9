"""The video loop's stages overlapped in threads, and the time each stage spends.

Why threads: on a few CPU cores a video's frame is mostly the pose network, but decoding the next frame, the
person detector on it and drawing plus encoding the previous frame's overlay are each several milliseconds a
frame that can run while the pose network waits on memory or between its calls. onnxruntime, OpenCV and most
numpy release the GIL, so plain threads overlap them; the order of results is the frames' order throughout.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

_DONE = object()


class StageClock:
    """Seconds spent per stage (busy time, summed over frames; stages in other threads overlap the wall)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            with self(stage):
                return fn(*args, **kwargs)
        return run


class Prefetch:
    """Iterate `items` in a background thread, up to `depth` items ahead (video decoding while the last
    frame is worked on). An exception in the producer is raised in the consumer, at the item where it arose;
    close() (or leaving early) stops the producer."""

    def __init__(self, items: Iterable, depth: int = 4, clock: StageClock | None = None, stage: str = "read"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(items), clock, stage), daemon=True)
        self._thread.start()

    def _produce(self, items: Iterator, clock: StageClock | None, stage: str) -> None:
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    break
                if clock is not None:
                    clock.add(stage, time.perf_counter() - t)
                self._put(("item", item))
        except BaseException as e:   # handed to the consumer
            self._put(("error", e))
        self._put(("done", _DONE))

    def _put(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        try:
            while True:
                kind, value = self._queue.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class InOrder:
    """One worker thread running submitted calls in submission order (an overlay video is written frame by
    frame), at most `backlog` calls behind: submit() waits for the oldest when the worker falls behind, so
    frames never pile up in memory. finish() waits for all and raises the first error."""

    def __init__(self, backlog: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: deque[Future] = deque()
        self.backlog = backlog

    def submit(self, fn: Callable, *args) -> Future:
        while len(self._pending) >= self.backlog:
            self._pending.popleft().result()
        future = self._pool.submit(fn, *args)
        self._pending.append(future)
        return future

    def finish(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        """After an error elsewhere: wait for the running call (it may hold a file), drop the queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
