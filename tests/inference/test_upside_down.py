"""People upside down or lying keep their visible joints visible: a pose found upside down (or lying) in its upright
crop has its visibility judged in its crop turned half (a quarter) turn to stand it up (orientation.visibility_turns,
Estimator), its pose and qualities staying the upright crop's."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import STANDING
from posecal.inference.orientation import (LYING_TILT, TURN_BELOW_VISIBLE, UPSIDE_DOWN_TILT, torso_tilt,
                                          visibility_turns)


def test_which_poses_are_upside_down():
    standing = STANDING[None]
    head_down = np.c_[STANDING[:, 0], 160 - STANDING[:, 1]][None]
    lying = STANDING[:, ::-1][None]
    xy = np.concatenate([standing, head_down, lying])
    assert torso_tilt(xy).round().tolist() == [0, 180, 90]
    assert np.flatnonzero(visibility_turns({"xy": xy}) == 180.0).tolist() == [1]
    assert UPSIDE_DOWN_TILT > 90 and visibility_turns({"xy": np.zeros((0, 17, 2))}).tolist() == []


def test_each_pose_is_judged_in_the_turn_that_stands_it_up():
    """visibility_turns: half a turn upside down, a quarter turn lying (the side the head lies on says which), none
    standing; the crop turned so (person_crop_matrix) holds the pose with its shoulders above its hips."""
    from posecal.data.transforms import apply_affine, person_crop_matrix

    head_left = STANDING[:, ::-1].astype(float)
    head_right = np.c_[200 - STANDING[:, 1], STANDING[:, 0]]
    head_down = np.c_[STANDING[:, 0], 160 - STANDING[:, 1]]
    poses = np.stack([STANDING, head_left, head_right, head_down]).astype(float)
    turns = visibility_turns({"xy": poses})
    assert turns.tolist() == [0.0, 270.0, 90.0, 180.0]
    for xy, turn in zip(poses, turns):
        box = np.r_[xy.min(0), np.ptp(xy, 0)]
        stood = apply_affine(xy, person_crop_matrix(box, (256, 256), turn))
        assert torso_tilt(stood[None])[0] < 1.0
    # a pose its upright crop already sees (TURN_BELOW_VISIBLE keypoints at p(visible) >= 0.5 or more) stays
    probs = np.tile([0.1, 0.3, 0.6], (4, 17, 1))
    assert visibility_turns({"xy": poses, "visibility_probs": probs}).tolist() == [0.0] * 4
    probs[:, TURN_BELOW_VISIBLE - 1:, 2] = 0.4           # one keypoint short of the bar: turned as before
    assert visibility_turns({"xy": poses, "visibility_probs": probs}).tolist() == turns.tolist()
    # a lean short of LYING_TILT is judged as found
    leaning = np.c_[STANDING[:, 0] + 0.9 * (160 - STANDING[:, 1]), STANDING[:, 1]][None]
    assert torso_tilt(leaning)[0] < LYING_TILT and visibility_turns({"xy": leaning}).tolist() == [0.0]


@pytest.mark.parametrize("flip", [True, False])   # the staged crop (look, refine) and the one-pass crop
def test_a_person_turned_upside_down_keeps_the_joints_seen_upright_visible(real_person, flip):
    import cv2

    from posecal.data.images import read_image
    from posecal.inference.predictor import Predictor
    from posecal.models.shipped import is_installed

    if not is_installed("accurate"):
        pytest.skip("accurate is not in this installation")
    path, box, truth = real_person
    image = read_image(path)
    h, w = image.shape[:2]
    x, y, bw, bh = box
    predictor = Predictor("accurate", precision="float", threads=2, detector=None, flip=flip)
    upright = predictor(image, boxes=[box]).people[0]
    turned_box = [w - x - bw, h - y - bh, bw, bh]
    turned = predictor(cv2.rotate(image, cv2.ROTATE_180), boxes=[turned_box]).people[0]
    assert (truth[:, 2] == 2).all() and (upright.visibility == 2).sum() == 17
    assert (turned.visibility == 2).sum() >= 15          # the upright crop alone called 9 of 17 visible
    # the pose is the upright crop's: its keypoints lie where the turned person's joints are
    back = np.c_[w - 1 - turned.keypoints[:, 0], h - 1 - turned.keypoints[:, 1]]
    assert np.median(np.linalg.norm(back - truth[:, :2], axis=1)) < 0.1 * bh
