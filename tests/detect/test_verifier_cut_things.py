"""The verifier's cut things (tools/train_person_verifier.py): boxes on nobody cut by a made frame edge, so that black
beyond a box's edge stops meaning "a person" (a box of black padding scored 1.0 before)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
tpv = pytest.importorskip("train_person_verifier")


def test_cut_box_keeps_part_of_the_box_and_blacks_out_beyond_the_line():
    box = np.array([100.0, 50, 60, 200])
    for seed in range(20):
        left, (axis, at) = tpv.cut_box(box, np.random.default_rng(seed))
        area = left[2] * left[3] / (box[2] * box[3])
        assert 0.45 <= area <= 0.75
        assert left[0] >= box[0] and left[1] >= box[1]
        assert left[0] + left[2] <= box[0] + box[2] + 1e-9 and left[1] + left[3] <= box[1] + box[3] + 1e-9
        bgr = np.full((300, 300, 3), 200, np.uint8)
        cut = tpv.with_cut(bgr, (axis, at))
        cx, cy = left[0] + left[2] / 2, left[1] + left[3] / 2       # what is left of the box is not blacked out
        assert cut[int(cy), int(cx)].tolist() == [200, 200, 200]
        assert (cut == 0).any()


def test_cut_things_are_boxes_on_nobody_and_drawn_by_the_seed():
    person = np.array([[10.0, 10, 50, 150]])
    boxes = [("labelled", person[0], None), ("cut", np.array([10.0, 10, 50, 90]), (1, 100.0)),
             ("empty", np.array([150.0, 20, 60, 120]), None),
             ("detector", np.array([12.0, 12, 50, 140]), None),          # on the person: never a cut thing
             ("detector", np.array([220.0, 100, 40, 80]), None)]
    a = tpv.cut_things(boxes, person, 300, 300, np.random.default_rng(3))
    b = tpv.cut_things(boxes, person, 300, 300, np.random.default_rng(3))
    assert len(a) == 2 and [k for k, _, _ in a] == ["cut_thing"] * 2
    assert all(np.allclose(x[1], y[1]) and x[2] == y[2] for x, y in zip(a, b))
    for _, box, cut in a:
        assert tpv.iou(box[None], person).max() < tpv.NOT_PERSON and cut is not None
    labels = tpv.labelled_boxes(a, person)
    assert [lab for _, _, lab, _ in labels] == [0, 0]
    assert tpv.cut_things(boxes, person, 300, 300, np.random.default_rng(3), most=1)[0][0] == "cut_thing"
