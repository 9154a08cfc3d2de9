"""One rule for "is this keypoint there?": `visibility`, COCO's `c`, eval's --drop-unlabelled and the `opks` pose
score agree on every keypoint, so that a reader thresholding one never hides what another calls there."""
from __future__ import annotations

import numpy as np
import pytest

from posecal.inference.estimator import PersonPose
from posecal.inference.scoring import (keypoint_there, opks_pose_score, predicted_labelled, present_and_right,
                                       visibility_classes)
from posecal.inference.topdown import Predictions


def test_a_well_placed_keypoint_the_head_calls_absent_is_there_everywhere():
    # p(absent) 0.6 but placed well inside the picture (quality 0.9, in_frame 0.9): there, and visible
    probs = np.array([[0.6, 0.05, 0.35], [0.6, 0.05, 0.35], [0.1, 0.1, 0.8]])
    kq, in_frame = np.array([0.9, 0.3, 0.24]), np.array([0.9, 0.9, 0.9])
    there = keypoint_there(probs, kq, in_frame)
    assert there.tolist() == [True, False, True]
    assert visibility_classes(probs, 0.75, kq, in_frame).tolist() == [2, 0, 2]
    # c: the keypoint quality where there (0.9 where the former kq x (1 - p(absent)) wrote 0.36), 0 where not
    np.testing.assert_allclose(present_and_right(kq, probs, in_frame), [0.9, 0.0, 0.24])
    # the opks pose score: the mean keypoint quality over those called there, (0.9 + 0.24) / 2
    assert opks_pose_score(kq, probs, in_frame) == pytest.approx(0.57)


def test_every_reader_follows_the_one_rule_on_random_poses():
    rng = np.random.default_rng(0)
    n, k = 200, 17
    probs = rng.dirichlet(np.ones(3) * 0.7, size=(n, k))
    kq, in_frame = rng.uniform(0.01, 1, (n, k)), rng.uniform(0, 1, (n, k))
    vis = visibility_classes(probs, 0.75, kq, in_frame)
    there = vis != 0
    assert ((present_and_right(kq, probs, in_frame) > 0) == there).all()
    pred = Predictions([None] * n, np.zeros((n, k, 2)), kq, np.zeros(n), kq, probs, in_frame=in_frame)
    assert (predicted_labelled(pred) == there).all()
    for i in range(5):   # a record's c and visibility, as `predict` writes them
        person = PersonPose(np.array([0, 0, 10, 10.0]), np.zeros((k, 2)), kq[i], kq[i], 0.5, vis[i], probs[i],
                            in_frame=in_frame[i])
        record = person.to_dict()
        c = np.asarray(record["keypoints"]).reshape(k, 3)[:, 2]
        assert ((c > 0) == (np.asarray(record["visibility"]) != 0)).all()
