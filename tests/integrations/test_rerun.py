"""posecal's rerun recordings (posecal/integrations/rerun.py, `posecal track --rerun`): written from Pictures with
known numbers and read back, by rerun's own command line (`rerun rrd verify`, `rerun rrd print`) and by its chunk
reader (rerun.chunk.RrdReader, which reads the file here: no server, no viewer). Nothing reaches the network: rerun's
usage data is switched off (`rerun analytics disable`, and CI=1, which rerun's analytics read as "off") before
any rerun command runs, and only files are written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rr = pytest.importorskip("rerun")

from conftest import write_tiny_model, write_walking_video  # noqa: E402
from posecal.errors import MissingPackage, PosecalInputError  # noqa: E402
from posecal.inference.estimator import PersonPose  # noqa: E402
from posecal.inference.picture import Picture  # noqa: E402
from posecal.integrations.rerun import (NO_RADIUS, RerunRecording, import_rerun, track_colour,  # noqa: E402
                                        write_rerun)
from posecal.skeleton import COCO_KEYPOINTS, COCO_LIMBS  # noqa: E402

QUIET = {"CI": "1"}   # rerun's analytics are off where CI is set (re_analytics' pipeline), the SDK's and the CLI's
RERUN_CLI = Path(sys.executable).parent / "rerun"


@pytest.fixture(scope="module", autouse=True)
def analytics_off():
    """`rerun analytics disable` before any other rerun command, with CI set in this process too (the SDK)."""
    cli = str(RERUN_CLI) if RERUN_CLI.is_file() else shutil.which("rerun")
    if cli is None:
        pytest.skip("the rerun command line is not installed beside the SDK")
    saved = os.environ.get("CI")
    os.environ["CI"] = "1"
    subprocess.run([cli, "analytics", "disable"], env=os.environ | QUIET, check=True, capture_output=True,
                   timeout=60)
    yield cli
    if saved is None:
        os.environ.pop("CI", None)
    else:
        os.environ["CI"] = saved


def rerun_cli(cli: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *map(str, args)], env=os.environ | QUIET, capture_output=True, text=True,
                          timeout=120)


def verified(cli: str, path: Path) -> str:
    """`rerun rrd verify` passes on the file; returns `rerun rrd print`'s listing of its chunks."""
    check = rerun_cli(cli, "rrd", "verify", path)
    assert check.returncode == 0, check.stderr
    listing = rerun_cli(cli, "rrd", "print", path)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout + listing.stderr


def rows(path: Path) -> dict[str, list[dict]]:
    """Every row of the recording by entity path (a static row under "PATH (static)"), each a dict of its
    columns (timelines and components), in frame order."""
    out: dict[str, list[dict]] = {}
    for chunk in rr.chunk.RrdReader(path).stream():
        columns = chunk.to_record_batch().to_pydict()
        columns.pop("rerun.controls.RowId", None)
        key = chunk.entity_path + (" (static)" if chunk.is_static else "")
        out.setdefault(key, []).extend({k: v[i] for k, v in columns.items()} for i in range(chunk.num_rows))
    for found in out.values():
        found.sort(key=lambda row: row.get("frame", -1))
    return out


def person(track_id: int | None, dx: float, quality: float, absent=(3,), no_radius=(5,)) -> PersonPose:
    """A person with known numbers: keypoint k at (dx + 2k, k + 0.5), radius 1 + k/4 px (NaN for no_radius),
    `absent` keypoints with visibility 0."""
    k = np.arange(17, dtype=float)
    visibility = np.full(17, 2)
    visibility[list(absent)] = 0
    radius = 1 + k / 4
    radius[list(no_radius)] = np.nan
    return PersonPose(box=np.array([dx, 1.0, 30.0, 40.0]), keypoints=np.stack([dx + 2 * k, k + 0.5], 1),
                      keypoint_quality=np.full(17, 0.5), heatmap_scores=np.full(17, 0.5), pose_quality=quality,
                      visibility=visibility, keypoint_radius=radius, track_id=track_id)


def frame(index: int, people: list, tracked: bool = True) -> Picture:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)   # blue on the left (BGR): the JPEG must come back in the right colours
    return Picture(f"walk.mp4#{index}", "walk.mp4", people, image, index, tracked=tracked)


def test_recording_holds_the_frames_people_skeleton_and_pose_quality(tmp_path, analytics_off):
    path = tmp_path / "walk.rrd"
    pictures = [frame(0, [person(3, 0.0, 0.75), person(7, 10.0, 0.5)]),
                frame(1, [person(3, 2.0, 0.625)])]   # track 7 has left
    assert write_rerun(pictures, path, fps=10) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.rrd"]   # no temp file left beside it
    listing = verified(analytics_off, path)
    for entity in ("/video", "/video/image", "/video/people/3/keypoints", "/video/people/3/box",
                   "/video/people/7/keypoints", "/pose_quality/track_3", "/pose_quality/track_7"):
        assert f" - {entity} - " in listing
    got = rows(path)

    context = got["/video (static)"][0]["AnnotationContext:context"][0][0]["class_description"]
    assert [a["label"] for a in context["keypoint_annotations"]] == list(COCO_KEYPOINTS)
    assert [a["id"] for a in context["keypoint_annotations"]] == list(range(17))
    assert [(c["keypoint0"], c["keypoint1"]) for c in context["keypoint_connections"]] == list(COCO_LIMBS)

    points = got["/video/people/3/keypoints"]
    assert [r["frame"] for r in points] == [0, 1]
    assert [r["time"].total_seconds() for r in points] == pytest.approx([0.0, 0.1])
    shown = [k for k in range(17) if k != 3]   # the absent keypoint is left out
    for row, dx in zip(points, (0.0, 2.0)):
        assert row["Points2D:keypoint_ids"] == shown and row["Points2D:class_ids"] == [0]
        want = [[dx + 2 * k, k + 0.5] for k in shown]
        np.testing.assert_allclose(row["Points2D:positions"], want, atol=1e-5)
        np.testing.assert_allclose(row["Points2D:radii"], [NO_RADIUS if k == 5 else 1 + k / 4 for k in shown],
                                   atol=1e-6)
    r, g, b, a = track_colour(3)
    assert points[0]["Points2D:colors"] == [(r << 24) | (g << 16) | (b << 8) | a]

    box = got["/video/people/3/box"][1]
    np.testing.assert_allclose(box["Boxes2D:centers"], [[2.0 + 15, 1.0 + 20]])
    np.testing.assert_allclose(box["Boxes2D:half_sizes"], [[15.0, 20.0]])
    assert box["Boxes2D:labels"] == ["#3 q=0.62"]

    assert [(r["frame"], r["Scalars:scalars"]) for r in got["/pose_quality/track_3"]] == [(0, [0.75]), (1, [0.625])]
    assert [(r["frame"], r["Scalars:scalars"]) for r in got["/pose_quality/track_7"]] == [(0, [0.5])]
    assert got["/pose_quality/track_7 (static)"][0]["SeriesLines:names"] == ["#7"]
    # the track that left is cleared on the frame it is gone, so the viewer shows no stale pose
    assert [(r["frame"], r["Clear:is_recursive"]) for r in got["/video/people/7"]] == [(1, [True])]

    images = got["/video/image"]
    assert [r["frame"] for r in images] == [0, 1] and images[0]["EncodedImage:media_type"] == ["image/jpeg"]
    decoded = cv2.imdecode(np.frombuffer(bytes(images[0]["EncodedImage:blob"][0]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3)
    assert abs(int(decoded[24, 8, 0]) - 255) < 8 and int(decoded[24, 56].max()) < 8   # BGR kept as BGR


def test_untracked_pictures_without_images_and_a_failed_picture(tmp_path, analytics_off):
    path = tmp_path / "still.rrd"
    failed = Picture("broken.jpg", "broken.jpg", [], np.zeros((0, 0, 3), np.uint8), error="cannot decode")
    still = Picture("a.jpg", "a.jpg", [person(None, 4.0, 0.5, absent=(), no_radius=())],
                    np.zeros((20, 20, 3), np.uint8))
    with RerunRecording(path, images=False) as recording:
        recording.log(failed)
        recording.log(still)
        assert recording.close() == path   # closed before the block ends: the block's end changes nothing
    assert recording.close() == path
    verified(analytics_off, path)
    got = rows(path)
    assert "/video/image" not in got and "time" not in got["/video/people/person_0/keypoints"][0]
    assert [r["frame"] for r in got["/video/people/person_0/keypoints"]] == [1]   # a still picture: its place
    assert got["/video/people/person_0/keypoints"][0]["Points2D:keypoint_ids"] == list(range(17))
    assert got["/pose_quality/person_0"][0]["Scalars:scalars"] == [0.5]
    assert got["/log"][0]["TextLog:text"] == ["broken.jpg: cannot decode"]


def test_a_failure_midway_leaves_the_previous_file_and_no_temp(tmp_path, analytics_off):
    path = tmp_path / "walk.rrd"
    path.write_bytes(b"the previous recording")

    def pictures():
        yield frame(0, [person(1, 0.0, 0.5)])
        raise RuntimeError("the video broke")

    with pytest.raises(RuntimeError, match="the video broke"):
        write_rerun(pictures(), path)
    assert path.read_bytes() == b"the previous recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.rrd"]


def test_bad_paths_and_a_missing_sdk_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(PosecalInputError, match=r"a rerun recording is a \.rrd file"):
        RerunRecording(tmp_path / "walk.mp4")
    with pytest.raises(PosecalInputError, match="does not exist"):
        RerunRecording(tmp_path / "missing" / "walk.rrd")
    with pytest.raises(PosecalInputError, match="fps must be > 0"):
        RerunRecording(tmp_path / "walk.rrd", fps=0)
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "rerun", None)   # `import rerun` now fails as if it were not installed
    with pytest.raises(MissingPackage, match=r"--rerun needs the optional package 'rerun-sdk': pip install "
                                             r"'posecal\[rerun\]'"):
        import_rerun("--rerun")


def test_track_refuses_rerun_with_several_sources_ray_or_another_suffix(tmp_path, capsys):
    from posecal.cli.main import main

    a = write_walking_video(tmp_path / "a.avi", frames=2)
    b = write_walking_video(tmp_path / "b.avi", frames=2)
    out = ["--out", str(tmp_path / "t.json"), "--no-progress"]
    assert main(["track", str(a), str(b), "--rerun", str(tmp_path / "x.rrd"), *out]) == 2
    assert "one recording for 2 sources" in capsys.readouterr().err
    assert main(["track", str(a), "--rerun", str(tmp_path / "x.mp4"), *out]) == 2
    assert "--rerun " in (err := capsys.readouterr().err) and "a rerun recording is a .rrd file" in err
    assert main(["track", str(a), "--engine", "ray", "--rerun", str(tmp_path / "x.rrd"), *out]) == 2
    err = capsys.readouterr().err
    assert "--rerun writes one recording from one process" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi", "b.avi"]


def test_track_cli_writes_the_recording_of_its_results(tmp_path, capsys, analytics_off):
    """`posecal track VIDEO --rerun OUT.rrd`: the recording holds every frame, and each tracked person's keypoints
    and pose quality are the numbers of the results file."""
    from posecal.cli.main import main

    video = write_walking_video(tmp_path / "walk.avi", frames=6)
    out, recording = tmp_path / "tracks.json", tmp_path / "walk.rrd"
    assert main(["track", str(video), "--out", str(out), "--rerun", str(recording), "--no-progress",
                 "--model", str(write_tiny_model(tmp_path / "tiny.pt")), "--backend", "torch", "--detector", "none",
                 "--min-birth-quality", "0", "--min-pose-quality", "0", "--threads", "1"]) == 0
    assert f"rerun recording {recording}" in capsys.readouterr().out
    listing = verified(analytics_off, recording)
    results = json.loads(out.read_text())
    assert results and " - /video/image - " in listing
    got = rows(recording)
    assert [r["frame"] for r in got["/video/image"]] == list(range(6))
    assert got["/video/image"][1]["time"].total_seconds() == pytest.approx(0.1)   # the video's 10 fps
    for entry in results:
        track, index = entry["track_id"], entry["image_id"]
        points = next(r for r in got[f"/video/people/{track}/keypoints"] if r["frame"] == index)
        shown = [k for k in range(17) if entry["visibility"][k] != 0]
        assert points["Points2D:keypoint_ids"] == shown
        xy = np.array(entry["keypoints"], float).reshape(17, 3)[shown, :2]
        np.testing.assert_allclose(points["Points2D:positions"], xy, atol=1e-3)
        quality = next(r for r in got[f"/pose_quality/track_{track}"] if r["frame"] == index)
        assert quality["Scalars:scalars"][0] == pytest.approx(entry["pose_quality"], abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", "tracks.json", "walk.avi", "walk.rrd"]
