"""The one pipeline (posecal/inference/pipeline.py): the API, `posecal predict`
and `posecal track` going through the same PosePipeline and PersonPolicy; Predictor.predict(source), to_dict(),
plot() and bgr=."""
import json
import warnings

import cv2
import numpy as np
import pytest

from posecal.cli.main import main
from posecal.inference.person_policy import DETECTED, WHOLE, PersonPolicy
from posecal.inference.pipeline import PosePipeline
from posecal.inference.predictor import Predictor

from conftest import STANDING, pose_of, write_tiny_model, write_walking_video


def pose_scored(xy, quality):
    person = pose_of(xy, quality)
    person.scores = {"oks": quality}
    return person


def test_pipeline_finds_boxes_by_detector_or_whole_picture():
    seen = []

    def estimate(items):
        seen.extend(items)
        return [[pose_scored(STANDING, 0.8) for _ in boxes] for _, boxes, _ in items]

    bgr = np.zeros((40, 30, 3), np.uint8)
    whole = PosePipeline(estimate)
    assert len(whole(bgr)) == 1 and seen[-1][1].tolist() == [[0, 0, 30, 40]]
    two_boxes = PosePipeline(estimate, detector=lambda image: (np.array([[0, 0, 10, 10], [1, 1, 10, 10.]]),
                                                               np.array([0.9, 0.8])))
    assert len(two_boxes(bgr)) == 1          # the same pose twice: one person after pose NMS


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.mark.slow
def test_api_predict_and_track_use_one_pipeline_and_one_rule(tiny_model, tmp_path, monkeypatch):
    """The same PersonPolicy.keep runs in all three, and the API and `posecal predict` report the same people."""
    calls = []
    keep = PersonPolicy.keep

    def counted(self, people, origins, mode=None, sure_factor=1.0):
        calls.append(origins if isinstance(origins, str) else
                     next(iter({str(o) for o in np.atleast_1d(origins)}), WHOLE))
        return keep(self, people, origins, mode, sure_factor)
    monkeypatch.setattr(PersonPolicy, "keep", counted)
    image = np.full((160, 120, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    # PyTorch throughout: this is about the rule (ONNX parity: test_predict_cli, test_calibration_cli)
    api = Predictor(tiny_model, detector=None, min_pose_quality=0, backend="torch")(image)
    assert calls == [WHOLE]
    out = tmp_path / "p.json"
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(tiny_model), "--out", str(out), "--detector",
                 "none", "--min-pose-quality", "0", "--no-progress", "--backend", "torch"]) == 0
    assert calls == [WHOLE, WHOLE]
    entry = json.loads(out.read_text())[0]
    np.testing.assert_allclose(np.reshape(entry["keypoints"], (17, 3))[:, :2], api[0].keypoints, atol=1e-3)
    video = write_walking_video(tmp_path / "walk.avi", frames=3)
    assert main(["track", str(video), "--model", str(tiny_model), "--detector", "none", "--out",
                 str(tmp_path / "t.json"), "--no-progress", "--backend", "torch"]) == 0
    assert calls[2:] and set(calls[2:]) <= {WHOLE}   # track: the same policy (no detector: the whole frame)


@pytest.mark.slow
def test_predict_source_yields_pictures_with_dicts_and_plots(tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((80, 60, 3), 120, np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    write_walking_video(folder / "walk.avi", frames=4)
    predictor = Predictor(tiny_model, detector=None, min_pose_quality=0, batch_size=2, backend="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pictures = list(predictor.predict(folder, every=2))
    # every file of the folder answers, in order: the unreadable one as a Picture with its error
    assert [p.name for p in pictures] == ["a.png", "broken.jpg", "walk.avi#0", "walk.avi#2"]
    assert pictures[1].error is not None and len(pictures[1]) == 0
    assert any("broken.jpg" in str(w.message) for w in caught)
    record = json.loads(json.dumps(pictures[2].to_dict()))             # plain JSON types
    assert record["frame_index"] == 0 and len(record["people"]) == 1
    assert len(record["people"][0]["keypoints"]) == 51 and 0 <= record["people"][0]["pose_quality"] <= 1
    drawn = pictures[0].plot()
    assert drawn.shape == (80, 60, 3) and not np.array_equal(drawn, pictures[0].image)


@pytest.mark.slow
def test_bgr_arrays_as_opencv_gives_them(tiny_model):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    predictor = Predictor(tiny_model, detector=None, min_pose_quality=0, backend="torch")
    from_bgr = predictor(bgr)[0]                                        # BGR by default, as cv2.imread gives
    from_rgb = predictor(rgb, rgb=True)[0]
    np.testing.assert_array_equal(from_rgb.keypoints, from_bgr.keypoints)
    old_keyword = predictor(rgb, bgr=False)[0]                         # the former keyword still works
    np.testing.assert_array_equal(old_keyword.keypoints, from_bgr.keypoints)
    np.testing.assert_array_equal(predictor(bgr, bgr=True)[0].keypoints, from_bgr.keypoints)
    swapped = predictor(rgb)[0]                                         # the RGB array read as BGR: other pixels
    assert not np.array_equal(swapped.keypoint_quality, from_bgr.keypoint_quality)


def test_the_shipped_detector_runs_at_the_policys_floor_unless_a_threshold_is_given(tiny_model):
    from posecal.inference.person_policy import DETECTOR_FLOOR, SURE_SCORE

    guided = Predictor(tiny_model, backend="torch")
    assert guided.pipeline.policy.sure_score == SURE_SCORE
    assert guided.pipeline.detector.score_threshold == DETECTOR_FLOOR
    plain = Predictor(tiny_model, detector_threshold=0.4, backend="torch")
    assert plain.pipeline.policy.sure_score is None and plain.pipeline.detector.score_threshold == 0.4


def test_an_explicit_min_pose_quality_replaces_the_policys_own_and_only_then(tiny_model):
    """A policy and min_pose_quality both given: min_pose_quality decides; the policy alone: its own decides, in the
    API and in PoseTracker (whose default once replaced the policy's with MIN_POSE_QUALITY)."""
    from dataclasses import replace

    from posecal.inference.person_policy import VIDEO
    from posecal.tracking.pose_tracker import PoseTracker

    image = np.full((64, 48, 3), 90, np.uint8)
    nobody = PersonPolicy(min_pose_quality=1.0)      # no pose reaches 1: a detected box is nobody
    strict = Predictor(tiny_model, detector=None, policy=nobody, backend="torch", threads=1)
    pose = strict.pipeline.people([(image, np.array([[0, 0, 48, 64]]), np.ones(1), DETECTED)])
    assert strict.pipeline.policy.min_pose_quality == 1.0 and pose == [[]]
    assert len(strict(image)) == 1                    # the whole picture is given: reported whatever its pose
    both = Predictor(tiny_model, detector=None, policy=nobody, min_pose_quality=0, backend="torch", threads=1)
    assert both.pipeline.policy.min_pose_quality == 0
    assert len(both.pipeline.people([(image, np.array([[0, 0, 48, 64]]), np.ones(1), DETECTED)])[0]) == 1
    assert both.pipeline.policy.unsure_person == nobody.unsure_person      # the rest of the policy kept
    own = replace(VIDEO, min_pose_quality=0.8)
    tracked = PoseTracker(model=str(tiny_model), detector="none", backend="torch", threads=1, policy=own)
    assert tracked.predictor.pipeline.policy.min_pose_quality == 0.8
    given = PoseTracker(model=str(tiny_model), detector="none", backend="torch", threads=1, policy=own,
                        min_pose_quality=0.1)
    assert given.predictor.pipeline.policy.min_pose_quality == 0.1
    assert given.tracker.policy.min_pose_quality == 0.1                   # the tracker reads the same policy


def test_threads_are_the_predictors_own(tiny_model):
    import torch

    before = torch.get_num_threads()
    predictor = Predictor(tiny_model, detector=None, backend="torch", threads=1)
    predictor(np.zeros((64, 48, 3), np.uint8))
    assert torch.get_num_threads() == before and predictor.threads == 1


def test_two_boxes_on_one_person_give_one_person_and_a_neighbour_stays():
    # a seated person's second box shifted onto the desk: the same upper body to a pixel, legs hidden and guessed
    # elsewhere, a pose quality as good (the second skeleton `predict` reported before)
    person, desk = pose_scored(STANDING, 0.85), pose_scored(STANDING + 1.5, 0.9)
    desk.visibility[11:] = 1
    person.visibility[11:] = 0
    desk.keypoints[11:] += [30.0, 50.0]
    neighbour = pose_scored(STANDING + [28.0, 0.0], 0.8)     # someone beside them, shoulders a body width off
    assert PersonPolicy().keep([person, desk, neighbour], DETECTED) == [desk, neighbour]
    assert PersonPolicy(duplicate_oks=0.9).keep([person, desk], DETECTED) == [desk]
