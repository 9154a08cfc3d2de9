"""Issue 63, items 5-7: a person the user gives (a box, or the whole image with `--detector none`) is reported with
its honest pose quality, by one rule every path calls; every per-person field stacks on `Picture`, and a
`PersonPose` prints in one line; and the loose ends: `flip` must be a bool, `--boxes` with `--detector` is named,
an output file's missing folder is refused (output folders are made), FFmpeg's own lines never come before
posecal's, an interrupted run counts what it counted (inputs, or a preview's frames)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from posecal import Picture, PoseTracker, Predictor
from posecal.errors import PosecalInputError
from posecal.inference.person_policy import CARRIED, DETECTED, GIVEN, MIN_POSE_QUALITY, STILL, WHOLE, PersonPolicy

from conftest import (ROOT, STANDING, cli_error, interrupt_second_estimate, pose_of, run_cli,
                      write_walking_video)

TORCH = ["--backend", "torch", "--threads", "1", "--no-progress"]


@pytest.fixture
def crops(tmp_path):
    """Three one-person 'crops' drawn with cv2 (a stick figure, a grey square, noise): pictures the user says are
    one person each, of different sizes."""
    folder = tmp_path / "crops"
    folder.mkdir()
    figure = np.full((160, 120, 3), 40, np.uint8)
    for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
        cv2.line(figure, tuple(int(v) for v in STANDING[a]), tuple(int(v) for v in STANDING[b]), (200, 180, 160), 3)
    noise = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    for name, image in (("figure.png", figure), ("grey.png", np.full((120, 90, 3), 100, np.uint8)),
                        ("noise.png", noise)):
        cv2.imwrite(str(folder / name), image)
    return folder


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and len(text) < 300, text
    return text


# --- item 5: a person given is reported ------------------------------------------------------------------------

def test_detector_none_reports_every_image_as_one_person_with_its_low_quality(tiny_model, crops, tmp_path, capsys):
    """The untrained tiny model's poses are far below MIN_POSE_QUALITY (the rule that dropped 11 of 30 one-person
    crops): each image is still one person, its box the whole image, its low pose quality reported."""
    out = tmp_path / "p.json"
    rc, summary, _ = run_cli(capsys, "predict", crops, "--detector", "none", "--model", tiny_model, "--out", out,
                             *TORCH)
    results = json.loads(out.read_text())
    assert rc == 0 and "3 person(s) in 3 image(s)" in summary
    by_name = {e["file_name"]: e for e in results}
    assert sorted(by_name) == ["figure.png", "grey.png", "noise.png"]
    assert by_name["figure.png"]["bbox"] == [0, 0, 120, 160] and by_name["noise.png"]["bbox"] == [0, 0, 60, 80]
    assert all(e["pose_quality"] < MIN_POSE_QUALITY for e in results)   # what the old rule dropped
    # the API and the CLI: the same people (one pipeline, one policy)
    api = Predictor(tiny_model, detector=None, backend="torch", threads=1)(str(crops / "figure.png"))
    assert len(api) == 1 and api.pose_quality[0] == pytest.approx(by_name["figure.png"]["pose_quality"], abs=1e-4)


def test_boxes_given_are_reported_whatever_their_pose_says(tiny_model, crops, tmp_path, capsys):
    """The user's boxes are people as given: each one reported, none dropped for its pose and none merged with
    another (two boxes on one figure stay two), through --boxes and through Predictor(image, boxes)."""
    boxes = {"figure.png": [[10, 10, 100, 140], [12, 12, 98, 138]], "grey.png": [[0, 0, 40, 40]]}
    (tmp_path / "b.json").write_text(json.dumps(boxes))
    out = tmp_path / "p.json"
    rc, _, _ = run_cli(capsys, "predict", crops / "figure.png", crops / "grey.png", "--boxes", tmp_path / "b.json",
                       "--model", tiny_model, "--out", out, *TORCH)
    results = json.loads(out.read_text())
    assert rc == 0 and [(e["file_name"], e["bbox"]) for e in results] == [
        ("figure.png", [10, 10, 100, 140]), ("figure.png", [12, 12, 98, 138]), ("grey.png", [0, 0, 40, 40])]
    strict = Predictor(tiny_model, detector=None, min_pose_quality=1.0, backend="torch", threads=1)
    figure = cv2.imread(str(crops / "figure.png"))
    assert len(strict(figure, boxes[ "figure.png"])) == 2     # no pose reaches 1.0: still both given boxes
    assert len(strict(figure)) == 1                           # and the whole image, no detector


def test_the_one_rule_that_decides_given_people():
    """PersonPolicy.keep is where it is decided: given boxes and the whole picture are kept, whatever their pose;
    a detected or carried box with the same poor pose is nobody."""
    low, unseen = pose_of(STANDING, quality=0.05), pose_of(STANDING + [200, 0], quality=0.65, vis=1)
    for person in (low, unseen):
        person.scores = {"oks": person.pose_quality}
    assert STILL.keep([low, unseen], WHOLE) == [low, unseen]
    assert STILL.keep([low, unseen], GIVEN) == [low, unseen]
    assert STILL.keep([low, unseen], DETECTED) == [] and STILL.keep([low, unseen], CARRIED) == []
    assert [PersonPolicy.given(o) for o in (GIVEN, WHOLE, DETECTED, CARRIED)] == [True, True, False, False]


# --- item 6: every field stacked, a short repr -----------------------------------------------------------------

def _person(shift: float, radius=None, in_frame=None, p_person=None, source="detected"):
    person = pose_of(STANDING + [shift, 0], quality=0.7)
    person.keypoint_radius, person.in_frame, person.person_probability = radius, in_frame, p_person
    person.pose_source = source
    return person


def test_every_per_person_field_is_stacked_with_none_where_the_model_has_none():
    full = _person(0, radius=np.full(17, 4.0), in_frame=np.full(17, 0.9), p_person=0.8)
    bare = _person(200, source="held")                   # a box no verifier judged, no calibration
    picture = Picture("p.png", "", [full, bare], np.zeros((240, 400, 3), np.uint8))
    assert picture.visibility.shape == (2, 17) and picture.visibility.dtype.kind == "i"
    assert picture.visibility_probs.shape == (2, 17, 3) and picture.heatmap_scores.shape == (2, 17)
    np.testing.assert_array_equal(picture.keypoint_radius[0], np.full(17, 4.0))
    assert np.isnan(picture.keypoint_radius[1]).all() and np.isnan(picture.in_frame[1]).all()
    assert picture.person_probability[0] == 0.8 and np.isnan(picture.person_probability[1])
    assert picture.pose_source.tolist() == ["detected", "held"]
    none = Picture("q.png", "", [_person(0)], np.zeros((240, 400, 3), np.uint8))
    assert none.keypoint_radius is None and none.in_frame is None and none.person_probability is None
    none.people[0].visibility = none.people[0].visibility_probs = None
    assert none.visibility is None and none.visibility_probs is None
    empty = Picture("e.png", "", [], np.zeros((10, 10, 3), np.uint8))
    assert empty.keypoint_radius.shape == (0, 17) and empty.person_probability.shape == (0,)
    assert empty.visibility_probs.shape == (0, 17, 3) and empty.pose_source.shape == (0,)


def test_a_picture_from_the_model_stacks_what_the_model_gives(tiny_model):
    """The tiny model has visibility heads and no calibration; nothing judged its whole-image box."""
    picture = Predictor(tiny_model, detector=None, backend="torch", threads=1)(np.full((120, 90, 3), 90, np.uint8))
    assert picture.visibility.shape == (1, 17) and picture.visibility_probs.shape == (1, 17, 3)
    assert picture.keypoint_radius is None and picture.in_frame is None and picture.person_probability is None
    assert picture.pose_source.tolist() == ["detected"]
    np.testing.assert_array_equal(picture.visibility_probs[0], picture.people[0].visibility_probs)


def test_a_person_prints_in_one_short_line():
    person = _person(0, p_person=0.934)
    person.visibility[:5] = 1
    text = repr(person)
    assert "\n" not in text and len(text) < 160, text
    assert text == ("PersonPose(box=[28, 16, 64, 146], pose_quality=0.70, person_probability=0.93, visible=12/17, "
                    "source='detected')")
    person.track_id, person.person_probability, person.visibility = 7, None, None
    assert repr(person) == "PersonPose(box=[28, 16, 64, 146], pose_quality=0.70, source='detected', track_id=7)"
    assert str(person) == repr(person)


# --- item 7: loose ends -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, said", [("yes", "the string 'yes'"), ("no", "the string 'no'"), (1, "the number 1"),
                                         ([True], "a list of 1")])
def test_flip_must_be_a_bool(value, said):
    """Refused before any model is looked for (the model named here does not exist)."""
    with pytest.raises(PosecalInputError) as e:
        Predictor("no_such_model.pt", flip=value)
    assert one_line(e) == f"flip: must be True or False (a bool), got {said}"
    with pytest.raises(PosecalInputError, match="flip: must be True or False"):
        PoseTracker(model="no_such_model.pt", flip=value)
    with pytest.raises(PosecalInputError, match="second_look: must be True or False"):
        Predictor("no_such_model.pt", second_look="off")


def test_flip_as_a_bool_or_none_is_taken(tiny_model):
    """flip=None is the flip test on (the default), a numpy bool is taken as the bool it is: each Predictor says
    which it runs, and poses a picture as the one of that setting does (the flip test changes the keypoints)."""
    picture = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    poses = {}
    for value, flips in ((True, True), (False, False), (None, True), (np.bool_(False), False)):
        p = Predictor(tiny_model, flip=value, detector=None, backend="torch", threads=1)
        assert p.flip == flips and isinstance(p.flip, (bool, np.bool_)), value
        keypoints = p.predict(picture)[0].keypoints
        if flips in poses:
            np.testing.assert_array_equal(keypoints, poses[flips])
        poses.setdefault(flips, keypoints)
    assert not np.array_equal(poses[True], poses[False])


@pytest.mark.parametrize("detector", ["none", "nanodet"])
def test_boxes_with_a_detector_name_the_conflict(tiny_model, crops, tmp_path, capsys, detector):
    (tmp_path / "b.json").write_text(json.dumps({"grey.png": [[0, 0, 40, 40]]}))
    line = cli_error(capsys, "predict", crops, "--boxes", tmp_path / "b.json", "--detector", detector,
                     "--model", tiny_model, "--out", tmp_path / "p.json", *TORCH)
    assert line == (f"--boxes and --detector {detector} contradict each other: --boxes gives the person boxes, "
                    f"--detector finds them (--detector none: the whole image); give one")
    assert not (tmp_path / "p.json").exists()


def test_an_output_files_missing_folder_is_refused_and_an_output_folder_is_made(tiny_model, crops, tmp_path,
                                                                                 capsys):
    missing = tmp_path / "nonexistent_dir"
    for command in ("predict", "track"):
        line = cli_error(capsys, command, crops, "--out", missing / "x.json", "--model", tiny_model, *TORCH)
        assert line == (f"--out {missing / 'x.json'}: folder {missing} does not exist; create it first (posecal "
                        f"makes output folders, not the folder of an output file)")
    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    line = cli_error(capsys, "track", video, "--out", tmp_path / "t.json", "--render", missing / "t.mp4",
                     "--model", tiny_model, "--detector", "none", *TORCH)
    assert line.startswith(f"--render {missing / 't.mp4'}: folder {missing} does not exist")
    assert not missing.exists()                                   # nothing made on the way to the refusal
    # an output folder is the output named: made, with the folders above it (as --render always did)
    rc, _, _ = run_cli(capsys, "predict", crops / "grey.png", "--out", tmp_path / "p.json", "--render",
                       tmp_path / "new" / "overlays", "--detector", "none", "--model", tiny_model, *TORCH)
    assert rc == 0 and (tmp_path / "new" / "overlays" / "grey.png").is_file()


def truncated_mp4(path):
    """An mp4 cut in half, as a copy that stopped early leaves it: FFmpeg says `moov atom not found`."""
    frames = np.random.default_rng(0).integers(0, 255, (30, 120, 160, 3), dtype=np.uint8)   # noise: a big mdat
    whole = path.with_name("whole.mp4")
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def posecal_process(*args, **env_extra) -> subprocess.CompletedProcess:
    """`python -m posecal ARGS` in a fresh process (FFmpeg's log level is set once per process, at its first open:
    this test process has opened videos already), without the user's OpenCV log settings unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")} | env_extra
    return subprocess.run([sys.executable, "-m", "posecal", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.mark.parametrize("command", ["predict", "track"])
def test_ffmpegs_own_lines_never_come_before_posecals(tmp_path, command):
    video = truncated_mp4(tmp_path / "cut.mp4")
    done = posecal_process(command, video, "--out", tmp_path / "r.json", "--no-progress")
    nothing = "no readable inputs among" if command == "predict" else "no video among"
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"posecal: {video}: cannot open video (unsupported codec or not a video)",
                                        f"posecal: error: nothing to do: {nothing} {video}"]
    # the file does make FFmpeg speak: a level the user sets is theirs, and FFmpeg's line is back
    told = posecal_process(command, video, "--out", tmp_path / "r.json", "--no-progress",
                           OPENCV_FFMPEG_LOGLEVEL="16")
    assert told.returncode == 2 and "moov atom not found" in told.stdout + told.stderr


def test_an_interrupted_run_counts_what_it_counted(tiny_model, tmp_path, capsys, monkeypatch):
    """Ctrl-C after a video's first frame of a --max-frames preview (which keeps no parts: what it did is written
    at once): frames, not inputs. Without --max-frames the video is not whole: nothing is kept."""
    interrupt_second_estimate(monkeypatch)
    video = write_walking_video(tmp_path / "walk.avi", frames=4)
    out = tmp_path / "p.json"
    rc, _, err = run_cli(capsys, "predict", video, "--model", tiny_model, "--out", out, "--detector", "none",
                         "--batch-size", "1", *TORCH)
    assert rc == 130 and not out.exists()
    assert err.strip().splitlines()[-1] == f"posecal: interrupted: none of the 1 input(s) was done; nothing written to {out}"
    interrupt_second_estimate(monkeypatch)
    rc, _, err = run_cli(capsys, "predict", video, "--model", tiny_model, "--out", out, "--detector", "none",
                         "--batch-size", "1", "--max-frames", "3", *TORCH)
    assert rc == 130
    assert err.strip().splitlines()[-1] == f"posecal: interrupted: kept the 1 frame(s) done (1 pose(s)) in {out}"
    assert [e["frame_index"] for e in json.loads(out.read_text())] == [0]
