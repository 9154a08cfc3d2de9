"""Videos -> their tracked poses, one video per row: the callable class Ray Data's `map_batches` runs in each actor
of `posecal track --engine ray`, and one process runs alike (tracking/units.py). It imports no Ray.

The pipeline opens once per actor; each video is tracked by `posecal track`'s own run (job.TrackRun) alone, so its
results and overlay are what one process makes, only its ids starting at 1 (the driver renumbers:
tracking/track_ids.py). A row naming its run's parts folder (`parts`) keeps the video's work in chunks
(tracking/chunks.py) and goes on from those an earlier run kept; a video with an overlay is tracked whole.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from posecal.parallel.parts import work_folder
from posecal.parallel.runner import check_settings
from posecal.tracking.chunks import VideoChunks
from posecal.tracking.job import TrackRun
from posecal.tracking.stages import StageClock
from posecal.tracking.pose_tracker import TrackConfig, check_tracking, tracking_predictor

# TrackConfig's fields about a run's sources, files, terminal and stopping, not about the poses: not settings here
RUN_FIELDS = {"videos", "out", "render", "progress", "max_frames", "duration", "live", "show", "rerun"}
SETTINGS = tuple(f.name for f in dataclasses.fields(TrackConfig) if f.name not in RUN_FIELDS)
TRACKS = "tracks"   # the output column: per row, the JSON text of its video's results


class TrackBatches:
    """settings: `posecal track`'s (TrackConfig's fields but RUN_FIELDS). A batch's columns: `path` (a video file,
    on storage the actor sees), `name` (the video's name in the results), `render` (its overlay video's path,
    or "" for none) and, to keep chunks, `key` (its unit's key) and `parts` (the run's parts folder). Returned: the
    batch's columns plus `tracks`: per row, JSON text of {"entries": its COCO keypoint results with track ids from
    1, "frames": frames tracked, "next_id": the id its tracker would hand out next, "messages": lines about it (an
    unreadable video is one, and no frames), "stages": busy seconds per stage}."""

    def __init__(self, **settings):
        check_settings("TrackBatches", settings, SETTINGS)
        self.cfg = TrackConfig(videos=[], progress=False, **settings)
        check_tracking(self.cfg)
        self.predictor = tracking_predictor(self.cfg)

    def __call__(self, batch: dict) -> dict:
        rows = len(batch["path"])
        renders, parts, keys = (batch.get(column, [""] * rows) for column in ("render", "parts", "key"))
        tracked = [self.track(str(batch["path"][i]), str(batch["name"][i]), str(renders[i]),
                              str(work_folder(parts[i], str(keys[i]))) if parts[i] and keys[i] else "")
                   for i in range(rows)]
        return dict(batch) | {TRACKS: np.array([json.dumps(t, separators=(",", ":")) for t in tracked], dtype=object)}

    def track(self, path: str, name: str, render: str = "", work: str = "") -> dict:
        """One video tracked as `posecal track` tracks it, its ids from 1; with `work` (a folder) and no overlay,
        kept there in chunks as it goes and gone on with from the chunks kept there. A Ctrl-C (which TrackRun takes
        as a request to stop after the frame at hand, keeping a chunk) is a KeyboardInterrupt here: a video cut
        short is not its part."""
        messages: list[str] = []
        source, clock = Path(path), StageClock()
        chunks = VideoChunks(work) if work and not render else None
        run = TrackRun(dataclasses.replace(self.cfg, render=render or None), messages.append, None, self.predictor,
                       clock, {source: Path(render)} if render else {}, chunks)
        run.track([(source, name)])
        if run.stopped() is not None:
            raise KeyboardInterrupt
        return {"entries": run.results, "frames": run.n_frames, "next_id": run.next_id, "messages": messages,
                "stages": dict(clock.seconds)}
