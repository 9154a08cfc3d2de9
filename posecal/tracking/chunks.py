"""A video's tracking kept chunk by chunk while it runs, so that `posecal track` stopped mid-video goes on from there.

A video is one unit (tracking/units.py), its part written at its last frame; so that a Ctrl-C does not lose a long
video, every KEEP_SECONDS and when a stop is requested its unit's work folder (parallel/parts.py work_folder) gets
the records since the last chunk (`records_00003.json`), then the tracker's state after them (`state.pkl`:
PoseTracker.state(), the frame to go on from, frames and chunks so far), each written atomically. The same command
restores that state and goes on from the next frame, giving the uninterrupted run's ids, poses and id_confidence;
records written after the last state are not read.

The state is a pickle in the run's own parts folder, read only by the run with the same fingerprint and unit key.
A state that cannot be read starts the video over.
"""
from __future__ import annotations

import json
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from posecal.io import write_atomic

KEEP_SECONDS = 20.0   # at most this much tracking is lost to a run killed mid-video (a Ctrl-C loses none)
STATE = "state.pkl"


def records_path(folder: Path, chunk: int) -> Path:
    return Path(folder) / f"records_{chunk:05d}.json"


@dataclass
class Resumed:
    """Where a video's kept chunks leave off."""
    next_frame: int          # the first frame index not yet tracked
    frames: int              # frames tracked in the kept chunks
    results: list[dict]      # their records, in order
    state: dict              # PoseTracker.state() after the last of them


class VideoChunks:
    """One video's chunks in `folder` (created at the first chunk): resumed() reads what an earlier run kept,
    keep() adds the frames tracked since, due() says when the next chunk is."""

    def __init__(self, folder, every_s: float | None = None):
        self.folder = Path(folder)
        self.every_s = KEEP_SECONDS if every_s is None else every_s
        self.chunks = 0            # whole chunks in the folder
        self.kept_results = 0      # records in them
        self.kept_frames = 0       # frames they hold
        self.last = time.monotonic()

    def resumed(self) -> Resumed | None:
        """The kept chunks' records and the state after them; None where nothing (readable) was kept, in which
        case the folder's leftovers go and the video starts over."""
        path = self.folder / STATE
        if not path.is_file():
            return None
        try:
            saved = pickle.loads(path.read_bytes())
            results = [entry for chunk in range(saved["chunks"])
                       for entry in json.loads(records_path(self.folder, chunk).read_text(encoding="utf-8"))]
            resumed = Resumed(int(saved["next_frame"]), int(saved["frames"]), results, saved["tracker"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError, AttributeError):
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        self.chunks, self.kept_results, self.kept_frames = int(saved["chunks"]), len(results), resumed.frames
        return resumed

    def due(self) -> bool:
        """Has KEEP_SECONDS of tracking passed since the last chunk?"""
        return time.monotonic() - self.last >= self.every_s

    def keep(self, next_frame: int, frames: int, results: list[dict], tracker) -> None:
        """A chunk: the records of `results` (the video's, from its first frame) not yet kept, then the state of
        `tracker` (a PoseTracker) that tracks `next_frame` on; `frames`: frames tracked so far (none since the last
        chunk: nothing to keep)."""
        if frames == self.kept_frames:
            return
        fresh = results[self.kept_results:]
        write_atomic(records_path(self.folder, self.chunks),
                     lambda f: f.write(json.dumps(fresh, separators=(",", ":"))), mode="w")
        saved = {"chunks": self.chunks + 1, "next_frame": next_frame, "frames": frames, "tracker": tracker.state()}
        write_atomic(self.folder / STATE, lambda f: pickle.dump(saved, f, protocol=pickle.HIGHEST_PROTOCOL))
        self.chunks, self.kept_results, self.kept_frames = self.chunks + 1, len(results), frames
        self.last = time.monotonic()
