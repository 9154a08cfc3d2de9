"""`posecal track --engine ray` (posecal/tracking/units.py on Ray's engine): one video per Ray actor call, each tracked by
`posecal track`'s own run (tracking/batches.py), merged with one process's track ids (tracking/track_ids.py).

The id merge, the actor class and the refusals run without Ray; the run through Ray (slow) shares the local Ray
with 2 CPUs of tests/parallel/test_ray_engine.py and skips without Ray."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import cli_error, run_cli, write_walking_video
from posecal.errors import PosecalInputError
from posecal.parallel.parts import part_folder
from posecal.tracking.track_ids import merged_tracks
from test_ray_engine import local_ray, needs_ray  # noqa: F401  (the module's one local Ray, 2 CPUs)

# the untrained tiny model's poses are doubtful (the person rule calls them nobody): track them anyway
TINY = ["--detector", "none", "--backend", "torch", "--min-birth-quality", "0", "--min-pose-quality", "0",
        "--no-progress"]


def clips(folder: Path) -> Path:
    """Three short walking clips (cv2.VideoWriter, MJPG) of 4, 5 and 6 frames, and a file that is no video."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        write_walking_video(folder / f"walk{i}.avi", frames=4 + i, shift=10 * i)
    (folder / "broken.avi").write_text("not a video")
    return folder


def same_tracks(got: list[dict], want: list[dict]) -> None:
    """The same entries in the same order (video, frame, track id) with the same keypoints and trust numbers."""
    assert len(want) > 0
    key = ("file_name", "frame_index", "track_id")
    assert [tuple(e[k] for k in key) for e in got] == [tuple(e[k] for k in key) for e in want]
    for x, y in zip(got, want):
        assert set(x) == set(y)
        np.testing.assert_allclose(x["keypoints"], y["keypoints"], atol=1e-3)
        np.testing.assert_allclose(x["keypoint_quality"], y["keypoint_quality"], atol=1e-5)
        np.testing.assert_allclose(x["bbox"], y["bbox"], atol=1e-3)


def frame_count(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# ---- no Ray ----

def test_track_ids_renumbered_video_by_video_in_input_order():
    def entries(video, ids):
        return [{"file_name": f"v{video}.mp4#0", "track_id": i} for i in ids]
    # One process: v0 ids 1-2, v1 ids 3-5 (id 4 never confirmed, so absent), v2 id 6, v3 none, v4 id 7; each video
    # tracked alone numbers from 1. They arrive in any order.
    videos = [(2, entries(2, [1]), 2), (0, entries(0, [1, 2, 1]), 3), (4, entries(4, [1]), 2),
              (1, entries(1, [1, 3]), 4), (3, [], 1)]
    merged, next_id = merged_tracks(videos)
    assert [(e["file_name"], e["track_id"]) for e in merged] == [
        ("v0.mp4#0", 1), ("v0.mp4#0", 2), ("v0.mp4#0", 1), ("v1.mp4#0", 3), ("v1.mp4#0", 5), ("v2.mp4#0", 6),
        ("v4.mp4#0", 7)]
    assert next_id == 8
    assert videos[3][1] == entries(1, [1, 3])                      # the videos' own lists are left alone


def test_track_batches_tracks_each_video_as_posecal_track_does(tiny_model, tmp_path, capsys):
    """The actor's class, without Ray: each video's results are one process's for it, ids from 1; a file that is
    no video is its message and no frames."""
    from posecal.tracking.batches import TRACKS, TrackBatches

    folder = clips(tmp_path / "in")
    videos = [folder / f"walk{i}.avi" for i in range(3)]
    rc, _, _ = run_cli(capsys, "track", *videos, "--model", tiny_model, "--threads", "1", "--out",
                       tmp_path / "one.json", *TINY)
    assert rc == 0
    want = json.loads((tmp_path / "one.json").read_text())
    tracker = TrackBatches(model=str(tiny_model), detector="none", backend="torch", min_pose_quality=0.0, threads=1,
                           policy=_birth_quality_zero())
    paths = [str(v) for v in videos] + [str(folder / "broken.avi")]
    batch = {"path": np.array(paths, dtype=object), "name": np.array([Path(p).name for p in paths], dtype=object),
             "index": np.arange(4)}
    out = tracker(batch)
    assert list(out["index"]) == [0, 1, 2, 3]
    tracked = [json.loads(text) for text in out[TRACKS]]
    assert [t["frames"] for t in tracked] == [4, 5, 6, 0]
    assert tracked[3]["entries"] == [] and len(tracked[3]["messages"]) == 1 and "broken.avi" in tracked[3]["messages"][0]
    merged, _ = merged_tracks([(i, t["entries"], t["next_id"]) for i, t in enumerate(tracked)])
    same_tracks(merged, want)
    assert min(e["track_id"] for e in tracked[2]["entries"]) == 1        # each video alone numbers from 1


def _birth_quality_zero():
    from dataclasses import replace

    from posecal.inference.person_policy import VIDEO

    return replace(VIDEO, birth_quality=0.0)


def test_track_batches_refuses_an_unknown_setting():
    from posecal.tracking.batches import TrackBatches

    with pytest.raises(PosecalInputError, match="unknown setting.*render"):
        TrackBatches(model="fast", render="x.mp4")


@pytest.mark.parametrize("args, line", [
    (["--out", "-"], "--out -/.jsonl streams each frame from one process; with --engine ray give --out X.json"),
    (["--out", "{tmp}/t.jsonl"], "--out -/.jsonl streams each frame from one process; with --engine ray give "
                                 "--out X.json"),
    (["--show"], "--show is one process's window: leave out --engine ray, or --show"),
    (["--max-frames", "5"], "--max-frames and --duration limit one process's run over all its sources: leave them "
                            "out with --engine ray"),
])
def test_what_only_one_process_does_is_refused_in_one_line(args, line, tmp_path, capsys):
    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "t.json")]
    assert cli_error(capsys, "track", video, "--engine", "ray", *out, *args) == line


def test_ray_options_belong_to_the_ray_engine_in_track(tmp_path, capsys):
    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    assert cli_error(capsys, "track", video, "--address", "auto", "--out", tmp_path / "t.json") == \
        "--address and --workers are --engine ray's options"


@needs_ray
def test_a_live_source_is_tracked_by_one_process(tmp_path, capsys):
    assert cli_error(capsys, "track", "rtsp://camera.invalid/live", "--engine", "ray", "--out",
                     tmp_path / "t.json") == ("rtsp://camera.invalid/live: a live source is tracked by one process; "
                                              "--engine ray tracks video files")


# ---- through Ray: slow ----

@pytest.mark.slow
def test_track_through_ray_gives_one_process_results_and_overlays(tiny_model, tmp_path, local_ray, capsys):  # noqa: F811
    """Three clips and a broken file, two workers: the same results file as one process (track ids going on
    from video to video), the broken file said once, each clip's overlay video whole, the parts gone."""
    folder = clips(tmp_path / "in")
    common = ["track", folder, "--model", tiny_model, *TINY]
    rc, _, _ = run_cli(capsys, *common, "--threads", "1", "--out", tmp_path / "one.json", "--render", tmp_path / "one")
    assert rc == 0
    rc, out, err = run_cli(capsys, *common, "--engine", "ray", "--workers", "2", "--out", tmp_path / "ray.json",
                           "--render", tmp_path / "ray")
    assert rc == 0, err
    want, got = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "ray"))
    same_tracks(got, want)
    assert len({e["file_name"].split("#")[0] for e in got}) == 3 and len({e["track_id"] for e in got}) >= 3
    assert "3 track(s), 15 tracked pose(s) in 15 frame(s)" in out
    assert len([line for line in err.splitlines() if "broken.avi" in line]) == 1
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["walk0.mp4", "walk1.mp4", "walk2.mp4"]
    for i in range(3):
        assert frame_count(tmp_path / "ray" / f"walk{i}.mp4") == frame_count(tmp_path / "one" / f"walk{i}.mp4") == 4 + i
    assert not part_folder(tmp_path / "ray.json").exists()
