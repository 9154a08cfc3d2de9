"""Two people, one behind the other, get two poses, not one mixed (issue 84 item 5, issue 92 item 1): a real val
person drawn twice over a grey background, the copy in front shifted by a share of the person's width (side by
side) or also down by a share of their height (nearer the camera, hiding the legs of the one behind, as vtest's
walkers), posed by the shipped model as `predict` poses a picture."""
import json

import numpy as np
import pytest

from bench.lab.moving_people import soft_box_alpha
from conftest import COCO_CROPS, REAL_PERSON
from posecal.metrics.oks import oks


def posed_pair(real_person, shift_x: float, shift_y: float = 0.0):
    """The people posed on the drawn pair, and each one's OKS to (the one in front, the one behind)."""
    import cv2

    from posecal import Predictor

    path, box, keypoints = real_person
    image = cv2.imread(path)
    h, w = image.shape[:2]
    alpha = soft_box_alpha((w, h), box)[..., None]
    dx, dy = int(shift_x * box[2]), int(shift_y * box[3])
    canvas = np.full((h + dy, w + dx, 3), 110, np.float32)
    for x, y in ((0, 0), (dx, dy)):   # the one behind first, then the one in front
        canvas[y:y + h, x:x + w] = canvas[y:y + h, x:x + w] * (1 - alpha) + image * alpha
    behind, front = keypoints.copy(), keypoints.copy()
    front[:, :2] += [dx, dy]
    labels = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())["annotations"]
    area = float(next(a["area"] for a in labels if a["id"] == REAL_PERSON[1]))
    people = Predictor("accurate", threads=2)(canvas.astype(np.uint8)).people
    return people, np.array([[oks(p.keypoints, t[:, :2], t[:, 2], area) for t in (front, behind)] for p in people])


@pytest.mark.slow
@pytest.mark.parametrize("shift", [0.55, 0.9])
def test_two_people_one_behind_the_other_get_a_pose_each(real_person, shift):
    people, on = posed_pair(real_person, shift)
    assert len(people) == 2
    assert sorted(on.argmax(1).tolist()) == [0, 1]            # one pose on each person ...
    assert (on.max(1) >= 0.4).all() and (on.min(1) < 0.1).all(), on   # ... and none mixing the two


@pytest.mark.slow
@pytest.mark.parametrize("shift", [(0.3, 0.35), (0.5, 0.5)])
def test_one_in_front_hiding_the_legs_of_the_one_behind_gets_two_poses_or_a_low_quality(real_person, shift):
    people, on = posed_pair(real_person, *shift)
    quality = np.array([p.pose_quality for p in people])
    assert (on[quality >= 0.5].max(1) >= 0.5).all(), (quality, on)   # every trusted pose lies on one person
    assert (on.max(0) >= 0.5).all(), on                              # and each person has a right pose
