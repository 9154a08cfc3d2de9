"""The one-to-one scorer of reported poses (posecal/metrics/reported.py) against hand-computed OKS."""
import math

import numpy as np
import pytest

from posecal.metrics.reported import DUPLICATE, MATCHED, UNCOVERED, match_reported, truth_boxes
from posecal.skeleton import COCO_SIGMAS


def person(x0: float, y0: float = 0.0) -> np.ndarray:
    """(17, 3) labelled keypoints of a standing figure 100 px tall with its top-left at (x0, y0)."""
    ys = np.linspace(0, 100, 17)
    xs = x0 + 20 + 10 * np.sin(np.arange(17))
    return np.stack([xs, y0 + ys, np.full(17, 2.0)], -1)


def hand_oks(pred_xy, gt, area):
    terms = [math.exp(-((pred_xy[k, 0] - gt[k, 0]) ** 2 + (pred_xy[k, 1] - gt[k, 1]) ** 2)
                      / (2 * area * (2 * COCO_SIGMAS[k]) ** 2)) for k in range(17) if gt[k, 2] > 0]
    return sum(terms) / len(terms)


def test_one_to_one_in_order_of_quality_with_a_duplicate():
    a, b = person(0), person(200)
    areas = np.array([2000.0, 2000.0])
    shifted = a[:, :2] + [3.0, 0.0]
    poses = np.stack([a[:, :2], shifted, b[:, :2] + [0.0, 5.0]])
    boxes = np.array([[0, 0, 50, 100], [3, 0, 50, 100], [200, 5, 50, 100]], float)
    s = match_reported(poses, boxes, [0.6, 0.9, 0.8], np.stack([a, b]), areas)
    # the shifted pose is rated higher, so it takes person a; the exact pose on a comes second: a duplicate, 0
    assert list(s.kind) == [DUPLICATE, MATCHED, MATCHED]
    assert list(s.person) == [0, 0, 1]
    assert s.target[0] == 0.0
    assert s.shared[0] == pytest.approx(1.0)
    assert s.target[1] == pytest.approx(hand_oks(shifted, a, 2000.0))
    assert s.target[2] == pytest.approx(hand_oks(b[:, :2] + [0.0, 5.0], b, 2000.0))


def test_a_pose_on_nobody_is_not_scored_and_a_merge_is_flagged():
    a, b = person(0), person(60)
    merged = a[:, :2].copy()
    merged[9:] = b[9:, :2]            # head and arms on a, legs on b
    poses = np.stack([merged, np.full((17, 2), 900.0)])
    boxes = np.array([[0, 0, 110, 100], [880, 880, 40, 40]], float)
    s = match_reported(poses, boxes, [0.8, 0.7], np.stack([a, b]), np.array([2000.0, 2000.0]))
    assert s.kind[1] == UNCOVERED and np.isnan(s.target[1])
    assert s.kind[0] == MATCHED
    assert s.target[0] < 0.6 and s.merge[0]


def test_a_cut_person_is_scored_on_every_joint_and_inside_on_the_picture_only():
    a = person(0, -40)               # the top 40 px above the picture
    pose = a[:, :2].copy()
    outside = a[:, 1] < 0
    pose[outside] += [0.0, 30.0]     # the joints above the picture guessed 30 px low
    s = match_reported(pose[None], np.array([[0, 0, 50, 60]]), [0.9], a[None], np.array([2000.0]), size=(200, 200))
    assert s.cut[0]
    assert s.target[0] == pytest.approx(hand_oks(pose, a, 2000.0))
    assert s.inside[0] == pytest.approx(1.0)
    assert s.target[0] < s.inside[0]


def test_half_pose_leaves_visible_keypoints_outside_its_box():
    a = person(0)
    s = match_reported(a[None, :, :2], np.array([[0, 0, 50, 40]], float), [0.9], a[None], np.array([2000.0]))
    assert s.half[0]
    s = match_reported(a[None, :, :2], np.array([[0, 0, 50, 100]], float), [0.9], a[None], np.array([2000.0]))
    assert not s.half[0]


def test_truth_boxes_around_labelled_keypoints():
    kp = np.zeros((1, 17, 3))
    kp[0, 0] = [10, 20, 2]
    kp[0, 5] = [30, 70, 1]
    assert truth_boxes(kp).tolist() == [[10, 20, 20, 50]]
