"""The Python API's one result type and one input check (issue 54): `Predictor` takes a path, an array (BGR by
default, rgb=True for RGB) or a list of either and returns Pictures; `predict(source, stream=True)` yields them;
`PoseTracker` checks its frames as `Predictor` checks its images and `track(source)` yields tracked Pictures; a
user's mistake is one PosecalInputError line that never prints an array's values."""
import json
import types
import warnings

import cv2
import numpy as np
import pytest

from posecal import Picture, PoseTracker, Predictor
from posecal.errors import PosecalInputError

from conftest import SHARED, write_tiny_model, write_walking_video

VIDEO = SHARED / "data" / "videos" / "intel_two_persons_walking.mp4"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("m") / "tiny.pt")


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor(model, detector=None, min_pose_quality=0, backend="torch", threads=1, flip=False)


@pytest.fixture(scope="module")
def tracker(model):
    return PoseTracker(model=str(model), detector="none", backend="torch", threads=1, min_pose_quality=0)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and len(text) < 300, text
    return text


# --- Picture --------------------------------------------------------------------------------------------------

def test_an_opencv_image_gives_a_picture_with_stacked_arrays(predictor, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((120, 90, 3), 100, np.uint8))
    picture = predictor.predict(cv2.imread(str(tmp_path / "a.png")))[0]   # the crash: now a Picture
    assert isinstance(picture, Picture) and len(picture) == 1
    assert picture.keypoints.shape == (1, 17, 2) and picture.keypoint_quality.shape == (1, 17)
    assert picture.visibility.shape == (1, 17) and picture.visibility.dtype.kind == "i"
    assert picture.pose_quality.shape == (1,) and picture.boxes.tolist() == [[0, 0, 90, 120]]
    assert picture.track_ids is None                                      # not tracked
    np.testing.assert_array_equal(picture.keypoints[0], picture.people[0].keypoints)
    assert repr(picture) == "Picture('image' 90x120, 1 person(s))"
    record = json.loads(picture.to_json())
    assert record == picture.to_dict() and len(record["people"][0]["keypoints"]) == 51
    saved = picture.save(tmp_path / "out" / "a.jpg")
    assert cv2.imread(str(saved)).shape == (120, 90, 3)
    with pytest.raises(PosecalInputError) as e:
        picture.save(tmp_path / "a.json")
    assert "to_json()" in one_line(e)


def test_a_picture_with_nobody_has_empty_arrays(predictor):
    picture = predictor(np.zeros((50, 40, 3), np.uint8), boxes=np.zeros((0, 4)))
    assert len(picture) == 0 and picture.keypoints.shape == (0, 17, 2) and picture.boxes.shape == (0, 4)
    assert picture.plot().shape == (50, 40, 3)


def test_show_without_a_display_is_one_line(predictor, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(PosecalInputError) as e:
        predictor(np.zeros((50, 40, 3), np.uint8)).show()
    assert "save(path)" in one_line(e)


# --- Predictor: sources, colour order, streaming ------------------------------------------------------------

def test_path_array_and_lists_of_either_give_the_same_people(predictor, tmp_path):
    bgr = np.random.default_rng(1).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    from_path = predictor(str(tmp_path / "a.png"))
    from_array = predictor(bgr)
    assert from_path.name == "a.png" and from_array.name == "image"
    np.testing.assert_allclose(from_path.keypoints, from_array.keypoints)
    mixed = predictor.predict([tmp_path / "a.png", bgr, bgr[:, :, ::-1].copy()])
    assert [p.name for p in mixed] == ["a.png", "images[1]", "images[2]"]
    np.testing.assert_allclose(mixed[1].keypoints, from_array.keypoints)
    assert [p.name for p in predictor([bgr, bgr])] == ["images[0]", "images[1]"]   # a list: a list of Pictures
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    np.testing.assert_allclose(predictor(rgb, rgb=True).keypoints, from_array.keypoints)
    np.testing.assert_allclose(predictor(rgb, bgr=False).keypoints, from_array.keypoints)   # the former keyword
    np.testing.assert_allclose(predictor(bgr / 255.0).keypoints, from_array.keypoints, atol=1e-3)   # float 0..1


def test_stream_yields_lazily_and_a_list_is_made_at_once(predictor, tmp_path):
    video = write_walking_video(tmp_path / "walk.avi", frames=5)
    stream = predictor.predict(video, stream=True)
    assert isinstance(stream, types.GeneratorType)
    first = next(stream)
    assert first.name == "walk.avi#0" and first.frame_index == 0
    assert [p.frame_index for p in stream] == [1, 2, 3, 4]
    assert [p.frame_index for p in predictor.predict(video, every=2)] == [0, 2, 4]


def test_a_bad_file_among_good_ones_is_its_own_answer_and_a_warning(predictor, tmp_path):
    """One Picture per input file, in order (zip(paths, pictures) pairs them right): an unreadable one is a Picture
    with its error and no people, and a warning naming it, once."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((40, 30, 3), 9, np.uint8))
    (tmp_path / "fake.mp4").write_text("not a video")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths = [tmp_path / "a.png", tmp_path / "missing.jpg", tmp_path / "fake.mp4", tmp_path / "broken.jpg",
             tmp_path / "b.png"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pictures = predictor.predict(paths)
    assert [p.name for p in pictures] == ["a.png", "missing.jpg", "fake.mp4", "broken.jpg", "b.png"]
    assert [p.error is None for p in pictures] == [True, False, False, False, True]
    assert all(p.error.startswith(str(path)) and len(p) == 0 for p, path in zip(pictures, paths) if p.error)
    assert "error=" in repr(pictures[1]) and pictures[0].image.shape == (40, 30, 3)
    assert pictures[1].to_dict() == {"file_name": "missing.jpg", "frame_index": None, "people": [],
                                     "error": pictures[1].error}
    with pytest.raises(PosecalInputError, match="missing.jpg: nothing to draw"):
        pictures[1].plot()
    messages = [str(w.message) for w in caught]
    assert sum("missing.jpg" in m for m in messages) == 1 and any("broken.jpg" in m for m in messages)


API_MISTAKES = [
    ("tiny array to predict", lambda p, d: p.predict(np.zeros((5, 5, 7), np.uint8)), "shape (5, 5, 7)"),
    ("2-D list of numbers", lambda p, d: p(np.zeros((30, 30, 2))), "HxW"),
    ("negative floats", lambda p, d: p(np.full((30, 30, 3), -1.0)), "[0, 1] or [0, 255]"),
    ("floats above 255", lambda p, d: p(np.full((30, 30, 3), 300.0)), "[0, 1] or [0, 255]"),
    ("strings as pixels", lambda p, d: p(np.full((30, 30, 3), "a")), "pixels must be numbers"),
    ("missing file", lambda p, d: p.predict(d / "nope.jpg"), "nope.jpg"),
    ("empty list", lambda p, d: p.predict([]), "empty list"),
    ("every 0", lambda p, d: p.predict(np.zeros((30, 30, 3), np.uint8), every=0), "every"),
    ("rgb and bgr disagree", lambda p, d: p(np.zeros((30, 30, 3), np.uint8), rgb=True, bgr=True), "contradict"),
    ("rgb not a bool", lambda p, d: p(np.zeros((30, 30, 3), np.uint8), rgb="yes"), "rgb"),
    ("boxes with a list", lambda p, d: p([np.zeros((30, 30, 3), np.uint8)] * 2, boxes=[[0, 0, 5, 5]]), "boxes"),
    ("None", lambda p, d: p(None), "image"),
]


@pytest.mark.parametrize("what, call, says", API_MISTAKES, ids=[m[0] for m in API_MISTAKES])
def test_api_mistakes_are_one_line_that_never_prints_an_array(predictor, tmp_path, what, call, says):
    with pytest.raises(PosecalInputError) as e:
        call(predictor, tmp_path)
    line = one_line(e)
    assert says in line and "[[" not in line, line


# --- PoseTracker --------------------------------------------------------------------------------------------

TRACKER_MISTAKES = [
    ("2-D frame", lambda t, d: t(np.zeros((4,), np.uint8)), "HxW"),
    ("a path as a frame", lambda t, d: t(str(d / "clip.mp4")), "track(path)"),
    ("bool frame", lambda t, d: t(np.zeros((30, 30, 3), bool)), "pixel"),
    ("frame out of range", lambda t, d: t(np.full((30, 30, 3), 1e4)), "[0, 1] or [0, 255]"),
    ("non-finite time", lambda t, d: t(np.zeros((30, 30, 3), np.uint8), t=float("nan")), "t:"),
    ("track a text file", lambda t, d: t.track(d / "fake.mp4"), "cannot open video"),
    ("track an empty file", lambda t, d: t.track(d / "empty.mp4"), "fake"),
    ("track a missing file", lambda t, d: t.track(d / "nope.mp4"), "no such video"),
    ("track an image file", lambda t, d: t.track(d / "a.png"), "not a video"),
    ("track one array", lambda t, d: t.track(np.zeros((30, 30, 3), np.uint8)), "one image"),
    ("track a number", lambda t, d: t.track(1.5), "expected a video file"),
]


@pytest.mark.parametrize("what, call, says", TRACKER_MISTAKES, ids=[m[0] for m in TRACKER_MISTAKES])
def test_tracker_mistakes_are_one_line(tracker, tmp_path, what, call, says):
    (tmp_path / "fake.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    if what == "track an empty file":
        says = "empty.mp4"
    with pytest.raises(PosecalInputError) as e:
        call(tracker, tmp_path)
    line = one_line(e)
    assert says in line and "[[" not in line, line


def test_float_frames_in_0_1_are_the_same_frames(tracker):
    frame = np.random.default_rng(2).integers(0, 255, (60, 80, 3)).astype(np.uint8)
    tracker.reset()
    a = tracker(frame)
    tracker.reset()
    b = tracker(frame.astype(np.float32) / 255)              # read as 0..1, not clipped to near black
    assert a.tracked and b.tracked and a.track_ids.shape == (len(a),)
    np.testing.assert_array_equal(a.image, b.image)
    tracker.reset()
    c = tracker(np.ascontiguousarray(frame[:, :, ::-1]), rgb=True)
    np.testing.assert_array_equal(c.image, a.image)


def test_track_a_video_streams_pictures(tracker, tmp_path):
    video = write_walking_video(tmp_path / "walk.avi", frames=4)
    stream = tracker.track(video, stream=True)
    assert isinstance(stream, types.GeneratorType)
    pictures = list(stream)
    assert [p.frame_index for p in pictures] == [0, 1, 2, 3] and all(p.tracked for p in pictures)
    assert [p.name for p in pictures] == [f"walk.avi#{k}" for k in range(4)]
    assert all(p.track_ids.dtype.kind == "i" and len(p.track_ids) == len(p) for p in pictures)
    again = tracker.track([p.image for p in pictures])       # the frames as arrays: a new video, the same poses
    assert [len(p) for p in again] == [len(p) for p in pictures]


@pytest.mark.skipif(not VIDEO.is_file(), reason="../shared videos not available")
def test_track_gives_the_ids_posecal_track_gives(tmp_path):
    cap = cv2.VideoCapture(str(VIDEO))
    frames = [cap.read()[1] for _ in range(8)]
    cap.release()
    clip = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for f in frames:
        out.write(f)
    out.release()
    tracker = PoseTracker(model="fast", threads=1)
    pictures = tracker.track(clip)
    assert sum(len(p) for p in pictures) > 0 and "track_ids=[" in repr(pictures[-1])
    ids = {int(i) for p in pictures for i in p.track_ids}
    assert ids and min(ids) >= 1
    from posecal.cli.main import main

    assert main(["track", str(clip), "--model", "fast", "--threads", "1", "--out", str(tmp_path / "t.json"),
                 "--no-progress"]) == 0
    entries = json.loads((tmp_path / "t.json").read_text())
    assert sorted((e["frame_index"], e["track_id"]) for e in entries) == sorted(
        (p.frame_index, int(i)) for p in pictures for i in p.track_ids)
