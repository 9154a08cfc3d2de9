"""Live sources at the machine's pace (posecal/tracking/cadence.py): the detector's period and the frames that may
wait, from measured times (hand-computed cases), the reader keeping the newest `depth` frames, and `posecal track`
on a real MJPEG stream reporting where its cadence settled."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posecal.data.live import LiveConfig, LiveReader, live_source
from posecal.tracking.cadence import LiveCadence

from conftest import SHARED, write_tiny_model
from mjpeg_server import MjpegServer, drawn_jpegs, video_jpegs

REPO = Path(__file__).resolve().parents[2]
WALKING = SHARED / "data" / "videos" / "intel_two_persons_walking.mp4"


def measured(detect_s, between_s, base=3, fps=25.0) -> LiveCadence:
    c = LiveCadence(base, fps)
    c.record(True, detect_s)
    if between_s is not None:
        c.record(False, between_s)
    return c


def test_a_cycle_that_fits_keeps_the_base_period_and_lets_a_detector_frames_arrivals_wait():
    # 25 fps: 40 ms a frame, 36 ms at 0.9 utilisation; (80 + 2 x 5) / 3 = 30 ms fits
    c = measured(0.080, 0.005)
    assert c.every == 3 and c.depth == 2          # 80 ms x 25 fps = 2 frames arrive during a detector frame


def test_a_cycle_that_does_not_fit_runs_the_detector_less_often():
    # (200 + (n - 1) x 10) / n <= 36 ms  <=>  n >= 190 / 26 = 7.3: every 8th frame; 200 ms x 25 = 5 frames wait
    c = measured(0.200, 0.010)
    assert c.max_every == 12 and c.every == 8 and c.depth == 5
    c.fps = 10.0                                  # the rate measured: (200 + 2 x 10) / 3 = 73 ms <= 90 ms
    assert c.max_every == 5 and c.every == 3 and c.depth == 2


def test_when_nothing_fits_the_detector_runs_twice_a_second_and_only_the_newest_frame_is_taken():
    c = measured(0.300, 0.050)                    # 50 ms between frames alone is over 40 ms
    assert c.every == c.max_every == 12 and c.depth == 1


def test_before_any_measurement_the_base_period_and_the_newest_frame():
    c = LiveCadence(3, 25.0)
    assert c.every == 3 and c.depth == 1
    assert [c.detector_frame() for _ in range(7)] == [True, False, False, True, False, False, True]


def test_running_means_follow_the_measured_times():
    c = LiveCadence(2, 10.0, rate=0.5)
    c.record(True, 0.2)
    c.record(True, 0.4)
    assert c.detect_s == pytest.approx(0.3) and c.between_s is None
    assert c.cycle_seconds(2) == pytest.approx(0.15)   # nothing measured between: counted as free


def test_the_reader_keeps_the_newest_depth_frames():
    with MjpegServer(drawn_jpegs(10), fps=25) as server:
        reader = LiveReader(live_source(server.url), LiveConfig(stall_seconds=2), log=lambda m: None)
        reader.depth = 4
        taken = []
        for frame in reader:
            taken.append(frame.frame_index)
            if len(taken) % 4 == 1:
                time.sleep(0.1)                   # a detector frame: 2-3 frames arrive meanwhile and wait
            if len(taken) == 13:
                break
    steps = [b - a for a, b in zip(taken, taken[1:])]
    assert taken == sorted(taken) and steps.count(1) >= 6   # the waiting frames are taken in order, none skipped
    assert reader.dropped <= reader.taken // 3
    assert 10 <= reader.arrival_fps <= 40                   # the rate frames arrive at: 25 fps (loaded CI: slack)


@pytest.mark.slow
@pytest.mark.skipif(not WALKING.is_file(), reason="../shared videos not available")
def test_track_on_a_live_stream_reports_its_cadence(tmp_path):
    tiny = write_tiny_model(tmp_path / "tiny.pt")
    with MjpegServer(video_jpegs(WALKING), fps=25) as server:
        run = subprocess.run([sys.executable, "-m", "posecal", "track", server.url, "--out", "-", "--max-frames",
                              "20", "--model", str(tiny), "--backend", "torch", "--threads", "1",
                              "--min-birth-quality", "0"],
                             capture_output=True, text=True, timeout=180, cwd=tmp_path,
                             env=os.environ | {"PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 20
    line = re.search(r"adaptive cadence: detector every (\d+) frame\(s\) \(--detect-every 3\), up to (\d+) "
                     r"frame\(s\) waiting; (\d+) ms per detector frame", run.stderr)
    assert line, run.stderr
    assert 3 <= int(line.group(1)) <= 12 and 1 <= int(line.group(2)) <= 8 and int(line.group(3)) > 0
