"""The reported-pose quality (posecal/calibration/reported.py): its features by hand, its fit, its file, and the
pipeline that rates found boxes with it and leaves the caller's alone."""
import json

import numpy as np
import pytest

from posecal.calibration.maps import LogisticScore
from posecal.calibration.reported import (FEATURES, ReportedQuality, fit_reported_quality, reported_features)

from conftest import STANDING, pose_of

F = {name: i for i, name in enumerate(FEATURES)}


def box_around(xy, pad=10.0):
    lo, hi = xy.min(0) - pad, xy.max(0) + pad
    return np.r_[lo, hi - lo]


def test_features_by_hand():
    a = STANDING.astype(float)
    twice = a.copy()
    twice[7:] += [0.0, 60.0]                      # 7 keypoints on a's, 10 far off
    far = a + [300.0, 0.0]
    kps = np.stack([a, twice, far])
    boxes = np.stack([box_around(a), box_around(a), box_around(far)])
    boxes[1] = boxes[0] + [0, 0, 0, 0]            # the same box: IoU 1
    q = np.array([0.9, 0.5, 0.73])
    f = reported_features(kps, boxes, q, (640, 480))
    assert f[:, F["logit_quality"]] == pytest.approx(np.log(q / (1 - q)))
    assert f[:, F["shared_keypoints"]] == pytest.approx([7 / 17, 7 / 17, 0.0])
    assert f[:, F["box_overlap"]] == pytest.approx([1.0, 1.0, 0.0])
    assert f[:, F["outside_frame"]] == pytest.approx([0.0, 0.0, 0.0])
    # the second pose's moved keypoints lying further below its box than 10 % of its height are outside it
    x, y, w, h = boxes[1]
    below = int((twice[:, 1] > y + h + 0.1 * h).sum())
    assert below >= 3
    assert f[1, F["outside_box"]] == pytest.approx(below / 17)
    assert f[0, F["outside_box"]] == 0.0
    # no verifier, no visibility: their features stay 0
    assert (f[:, F["logit_person"]] == 0).all() and (f[:, F["absent_share"]] == 0).all()


def test_outside_frame_reads_in_frame_else_the_picture_edges():
    a = STANDING.astype(float) - [0.0, 60.0]      # the top of the figure above the picture
    above = int((a[:, 1] < -0.5).sum())
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480))
    assert f[0, F["outside_frame"]] == pytest.approx(above / 17)
    in_frame = np.full((1, 17), 0.75)
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480), in_frame=in_frame)
    assert f[0, F["outside_frame"]] == pytest.approx(0.25)
    vis = np.tile([0.2, 0.1, 0.7], (1, 17, 1))
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480), vis, None, [0.9], [0.4])
    assert f[0, F["absent_share"]] == pytest.approx(0.2)
    assert f[0, F["logit_person"]] == pytest.approx(np.log(9.0))
    assert f[0, F["box_score"]] == pytest.approx(0.4)


def test_the_fit_lowers_poses_that_share_keypoints_and_keeps_the_rest():
    """Drawn truth: a pose sharing keypoints with another is right half the time (one of a pair is a duplicate,
    scored 0), a pose alone is right as its crop says. The fit learns to lower the first and not the second."""
    rng = np.random.default_rng(0)
    n = 4000
    f = np.zeros((n, len(FEATURES)))
    q = rng.uniform(0.5, 0.95, n)
    f[:, F["logit_quality"]] = np.log(q / (1 - q))
    shared = rng.random(n) < 0.3
    f[shared, F["shared_keypoints"]] = rng.uniform(0.3, 0.6, shared.sum())
    target = np.where(shared & (rng.random(n) < 0.5), 0.0, q)
    model = fit_reported_quality(f, target)
    rated = model(f)
    assert rated[shared].mean() == pytest.approx(target[shared].mean(), abs=0.03)
    assert rated[~shared].mean() == pytest.approx(target[~shared].mean(), abs=0.03)
    assert model.score.weights[F["shared_keypoints"]] < 0


def test_the_file_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    score = LogisticScore(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.linspace(-0.1, 0.1, len(FEATURES)), 0.2)
    model = ReportedQuality(score, "val")
    model.write(tmp_path / "r.json")
    back = ReportedQuality.read(tmp_path / "r.json")
    f = np.random.default_rng(1).normal(size=(5, len(FEATURES)))
    np.testing.assert_allclose(back(f), model(f))
    d = json.loads((tmp_path / "r.json").read_text())
    d["features"] = d["features"][:-1]
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="bad.json: reported quality is unreadable"):
        ReportedQuality.read(tmp_path / "bad.json")


def test_the_pipeline_rates_found_boxes_and_leaves_given_ones():
    from posecal.inference.person_policy import DETECTED, GIVEN, PersonPolicy
    from posecal.inference.pipeline import PosePipeline

    # a map that takes 1 off the logit of every pose: sigmoid(logit q - 1)
    score = LogisticScore(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES)), -1.0)
    people = [pose_of(STANDING, 0.8), pose_of(STANDING + [200, 0], 0.8)]

    def estimate(items):
        for p in people:
            p.scores = {"oks": p.pose_quality}
            p.person_probability = 0.9
        return [people]

    pipeline = PosePipeline(estimate, policy=PersonPolicy(), reported=ReportedQuality(score))
    out = pipeline.people([(np.zeros((480, 640, 3), np.uint8), np.zeros((2, 4)), np.ones(2), [DETECTED, GIVEN])])[0]
    expected = 1 / (1 + np.exp(-(np.log(0.8 / 0.2) - 1)))
    assert out[0].pose_quality == pytest.approx(expected) and out[0].crop_quality == pytest.approx(0.8)
    assert out[0].scores["oks"] == pytest.approx(expected)           # the results' default score
    assert out[0].to_dict()["crop_quality"] == pytest.approx(0.8)
    assert out[1].pose_quality == pytest.approx(0.8) and out[1].crop_quality is None
    assert "crop_quality" not in out[1].to_dict()
    # rated again (a carried person's next frame), the crop's quality is read, not the rated one
    again = pipeline.rated(out, (640, 480))
    assert again[0].pose_quality == pytest.approx(expected) and again[0].crop_quality == pytest.approx(0.8)


def test_the_picture_never_rates_a_pose_above_its_crop():
    """A correction that would raise every pose (bias +1) leaves the crop's quality; one that lowers, lowers."""
    f = np.zeros((3, len(FEATURES)))
    q = np.array([0.3, 0.6, 0.9])
    f[:, F["logit_quality"]] = np.log(q / (1 - q))
    ones = np.ones(len(FEATURES))
    up = ReportedQuality(LogisticScore(np.zeros(len(FEATURES)), ones, np.zeros(len(FEATURES)), 1.0))
    down = ReportedQuality(LogisticScore(np.zeros(len(FEATURES)), ones, np.zeros(len(FEATURES)), -1.0))
    np.testing.assert_allclose(up(f), q)
    np.testing.assert_allclose(down(f), 1 / (1 + np.exp(-(np.log(q / (1 - q)) - 1))))
