"""`posecal track` stopped mid-video goes on from there (tracking/chunks.py): the same command again tracks the
video from the frame after its last kept chunk, and its merged records equal an uninterrupted run's, entry for
entry (ids, poses, id_confidence). A Ctrl-C keeps every frame tracked; a run killed outright keeps the chunks
written before it. On a drawn walking video (the tiny model, every frame a detection) and, where the shared
videos are, on real frames with the shipped fast model, detector and optical flow between detector frames."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from conftest import SHARED, run_cli, write_walking_video
from posecal.parallel.parts import part_folder
from posecal.tracking.job import TrackRun

WALKING = SHARED / "data" / "videos" / "intel_two_persons_walking.mp4"
# the untrained tiny model's poses are doubtful (the person rule calls them nobody): track them anyway
TINY = ["--detector", "none", "--backend", "torch", "--min-birth-quality", "0", "--min-pose-quality", "0",
        "--threads", "1", "--no-progress"]
FAST = ["--model", "fast", "--threads", "1", "--no-progress"]


def ctrl_c_after(monkeypatch, frames: int) -> None:
    """Ctrl-C as the run takes it (a stop request) once `frames` frames of the video are tracked."""
    real = TrackRun._frame

    def frame_then_ctrl_c(self, frame, *args):
        real(self, frame, *args)
        if frame.frame_index + 1 == frames:
            self.ctrl_c.event.set()
    monkeypatch.setattr(TrackRun, "_frame", frame_then_ctrl_c)


def killed_at(monkeypatch, frame_index: int) -> None:
    """A run killed outright (a second Ctrl-C) while it tracks frame `frame_index`: nothing of that frame is kept."""
    real = TrackRun._frame

    def frame_or_killed(self, frame, *args):
        if frame.frame_index == frame_index:
            raise KeyboardInterrupt
        real(self, frame, *args)
    monkeypatch.setattr(TrackRun, "_frame", frame_or_killed)


def resumed_equals_uninterrupted(capsys, monkeypatch, video: Path, out: Path, args: list, stop) -> str:
    """Track `video` uninterrupted, then stopped by `stop(monkeypatch)`, then by the same command again; the last
    run's results must be the first's. Returns what the stopped run and the run going on said."""
    rc, _, _ = run_cli(capsys, "track", video, "--out", out.with_name("whole.json"), *args)
    assert rc == 0
    want = json.loads(out.with_name("whole.json").read_text())
    with monkeypatch.context() as m:
        stop(m)
        rc, _, stopped = run_cli(capsys, "track", video, "--out", out, *args)
    assert rc == 130 and not out.exists()
    assert list(part_folder(out).glob("work_*/state.pkl"))                    # the chunks of the video at hand
    rc, _, going_on = run_cli(capsys, "track", video, "--out", out, *args)
    assert rc == 0, going_on
    assert json.loads(out.read_text()) == want
    assert not part_folder(out).exists()                                       # merged: the chunks are gone
    return stopped + going_on


def test_a_ctrl_c_mid_video_keeps_every_frame_and_the_same_command_goes_on_to_the_same_records(
        tiny_model, tmp_path, capsys, monkeypatch):
    video = write_walking_video(tmp_path / "walk.avi", frames=12)
    said = resumed_equals_uninterrupted(capsys, monkeypatch, video, tmp_path / "t.json",
                                        ["--model", tiny_model, *TINY], lambda m: ctrl_c_after(m, 7))
    assert "interrupted: the results of 0 of 1 input(s) and the work done on 1 more are kept in" in said
    assert "resuming: 0 of 1 unit(s) already done and 1 begun in" in said
    assert "walk.avi: going on from frame 7 (7 frame(s) tracked before are kept in" in said


def test_a_run_killed_mid_video_goes_on_from_its_last_chunk(tiny_model, tmp_path, capsys, monkeypatch):
    video = write_walking_video(tmp_path / "walk.avi", frames=12)

    def every_frame_a_chunk_then_killed(m):
        m.setattr("posecal.tracking.chunks.KEEP_SECONDS", 0.0)
        killed_at(m, 9)
    said = resumed_equals_uninterrupted(capsys, monkeypatch, video, tmp_path / "t.json",
                                        ["--model", tiny_model, *TINY], every_frame_a_chunk_then_killed)
    assert "walk.avi: going on from frame 9 (9 frame(s) tracked before" in said


def test_a_video_killed_before_its_first_chunk_starts_over(tiny_model, tmp_path, capsys, monkeypatch):
    """No chunk yet (the first comes after KEEP_SECONDS): nothing is kept, and nothing is left behind."""
    video = write_walking_video(tmp_path / "walk.avi", frames=6)
    out = tmp_path / "t.json"
    with monkeypatch.context() as m:
        killed_at(m, 3)
        rc, _, err = run_cli(capsys, "track", video, "--out", out, "--model", tiny_model, *TINY)
    assert rc == 130 and "interrupted: none of the 1 input(s) was done; nothing written to" in err
    assert not part_folder(out).exists()


def test_unreadable_kept_state_starts_the_video_over(tiny_model, tmp_path, capsys, monkeypatch):
    video = write_walking_video(tmp_path / "walk.avi", frames=8)
    out = tmp_path / "t.json"
    with monkeypatch.context() as m:
        ctrl_c_after(m, 4)
        assert run_cli(capsys, "track", video, "--out", out, "--model", tiny_model, *TINY)[0] == 130
    [state] = part_folder(out).glob("work_*/state.pkl")
    state.write_bytes(b"not a pickle")
    rc, _, err = run_cli(capsys, "track", video, "--out", out, "--model", tiny_model, *TINY)
    assert rc == 0 and "going on from frame" not in err
    assert sorted({e["image_id"] for e in json.loads(out.read_text())}) == list(range(8))


@pytest.mark.skipif(not WALKING.is_file(), reason="needs /work/shared/data/videos")
def test_real_people_tracked_with_a_detector_and_flow_resume_to_the_same_records(tmp_path, capsys, monkeypatch):
    """Two people walking (a shared clip's first 14 frames): the detector every 3rd frame, optical flow between;
    stopped after frame 8 (a frame between detector frames, the flow's last image and the smoothing filters in
    the kept state), the same command gives the uninterrupted run's records and ids."""
    cap, clip = cv2.VideoCapture(str(WALKING)), tmp_path / "walking.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12, (480, 270))
    for _ in range(14):
        ok, bgr = cap.read()
        assert ok
        writer.write(bgr)
    writer.release()
    cap.release()
    resumed_equals_uninterrupted(capsys, monkeypatch, clip, tmp_path / "t.json", FAST,
                                 lambda m: ctrl_c_after(m, 8))
    records = json.loads((tmp_path / "t.json").read_text())
    assert {e["track_id"] for e in records} == {1, 2}
    assert sum(e["id_confidence"] is not None for e in records) >= 20          # ids rated across the boundary
