"""Live sources at the machine's pace: how often the detector runs and how many frames may wait for the pipeline,
from the time frames take on this machine.

Why: a detector frame costs several frame intervals on a few cores, a flow frame a few ms, so taking only the
newest frame thins the stream in bursts while the pipeline idles in between. The pipeline measures itself and
* lets frames arriving during a detector frame wait (`depth`) when one detector cycle fits in that many frame
  intervals (caught up at flow speed, late by at most one detector frame);
* runs the detector less often (`every` up to `max_every`) when even that does not fit;
* keeps only the newest frame when nothing fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# what runs between detector frames (TrackConfig.between): optical flow carries the tracked keypoints, or the pose
# network estimates them afresh in each track's carried box
BETWEEN = ("pose", "flow")
# with flow: frames after which a track is posed again by the network (pose_tracker.py TrackConfig.repose_after;
# 0: every detection posed on detector frames, none in between). Off by default: it spreads the network evenly and
# poses fewer crops, but it cost ids on the tracking bench's tuning scenes and the video calibration was not fitted
# on its poses (docs/tracking.md, "The re-pose cadence")
REPOSE_AFTER = 0


@dataclass
class LiveCadence:
    base_every: int                  # --detect-every: the detector's period when the machine keeps up
    fps: float                       # the stream's rate (frames per second; the job sets the measured arrival rate)
    longest: int = 0                 # the longest detector period (0: half a second of frames, at least base_every)
    max_depth: int = 8               # frames that may wait at most
    rate: float = 0.2                # running-mean rate of the measured times
    utilisation: float = 0.9         # share of the frame interval the pipeline may fill on average
    detect_s: float | None = field(default=None, init=False)    # seconds per detector frame (running mean)
    between_s: float | None = field(default=None, init=False)   # seconds per frame in between (running mean)
    since: int = field(default=-1, init=False)                  # frames taken since the last detector frame

    @property
    def max_every(self) -> int:
        return self.longest if self.longest > 0 else max(self.base_every, int(round(self.fps / 2)))

    def detector_frame(self) -> bool:
        """Whether the frame being taken gets the detector (the first frame does, then one in `every`)."""
        due = self.since < 0 or self.since + 1 >= self.every
        self.since = 0 if due else self.since + 1
        return due

    def record(self, detector_frame: bool, seconds: float) -> None:
        """One frame's time from being taken to its record written."""
        name = "detect_s" if detector_frame else "between_s"
        old = getattr(self, name)
        setattr(self, name, seconds if old is None else old + self.rate * (seconds - old))

    def cycle_seconds(self, every: int) -> float | None:
        """Mean seconds per frame over one detector frame and every - 1 frames in between (None: not measured)."""
        if self.detect_s is None:
            return None
        between = self.between_s if self.between_s is not None else 0.0
        return (self.detect_s + (every - 1) * between) / every

    @property
    def every(self) -> int:
        """The detector's period now: the base while a cycle fits in the frame interval, longer (up to
        max_every) while it does not."""
        budget = self.utilisation / self.fps
        for n in range(self.base_every, self.max_every + 1):
            cost = self.cycle_seconds(n)
            if cost is None or cost <= budget:
                return n
        return self.max_every

    @property
    def depth(self) -> int:
        """Frames that may wait for the pipeline: those arriving during a detector frame when the cycle fits (they
        are caught up before the next detector frame), else 1 (the newest only)."""
        cost = self.cycle_seconds(self.every)
        if cost is None or cost > self.utilisation / self.fps:
            return 1
        return max(1, min(self.max_depth, math.ceil(self.detect_s * self.fps)))

    def describe(self) -> str:
        """One line for the end of a live source: where the cadence settled and the times it was set from."""
        between = "-" if self.between_s is None else f"{self.between_s * 1000:.0f}"
        return (f"adaptive cadence: detector every {self.every} frame(s) (--detect-every {self.base_every}), up to "
                f"{self.depth} frame(s) waiting; {self.detect_s * 1000:.0f} ms per detector frame, {between} ms in "
                f"between, {1000 / self.fps:.0f} ms per frame at {self.fps:.1f} fps")
