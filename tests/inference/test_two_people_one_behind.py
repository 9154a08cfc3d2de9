"""Two people, one behind the other, get two poses, not one mixed (issue 84 item 5): a real val person drawn twice
over a grey background, the copy in front shifted by a share of the person's width, posed by the shipped model as
`predict` poses a picture. Each pose must lie on one person (OKS to it, none to the other)."""
import json

import numpy as np
import pytest

from bench.lab.moving_people import soft_box_alpha
from conftest import COCO_CROPS, REAL_PERSON
from posecal.metrics.oks import oks


@pytest.mark.slow
@pytest.mark.parametrize("shift", [0.55, 0.9])
def test_two_people_one_behind_the_other_get_a_pose_each(real_person, shift):
    import cv2

    from posecal import Predictor

    path, box, keypoints = real_person
    image = cv2.imread(path)
    h, w = image.shape[:2]
    alpha = soft_box_alpha((w, h), box)[..., None]
    dx = int(shift * box[2])
    canvas = np.full((h, w + dx, 3), 110, np.float32)
    for x in (0, dx):   # the one behind first, then the one in front, dx to the right
        canvas[:, x:x + w] = canvas[:, x:x + w] * (1 - alpha) + image * alpha
    behind, front = keypoints.copy(), keypoints.copy()
    front[:, 0] += dx
    labels = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())["annotations"]
    area = float(next(a["area"] for a in labels if a["id"] == REAL_PERSON[1]))
    people = Predictor("accurate", threads=2)(canvas.astype(np.uint8)).people
    assert len(people) == 2
    on = np.array([[oks(p.keypoints, t[:, :2], t[:, 2], area) for t in (front, behind)] for p in people])
    assert sorted(on.argmax(1).tolist()) == [0, 1]            # one pose on each person ...
    assert (on.max(1) >= 0.4).all() and (on.min(1) < 0.1).all(), on   # ... and none mixing the two
