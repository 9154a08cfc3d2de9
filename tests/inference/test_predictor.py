"""Python API on a tiny model written by the test (the shipped model is checked in test_shipped_model.py)."""
import numpy as np
import pytest

from posecal.errors import PosecalInputError

from conftest import tiny_heads_predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return tiny_heads_predictor(tmp_path_factory.mktemp("m"))


@pytest.mark.slow
def test_predictor_returns_typed_people(predictor):
    img = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    people = predictor(img, boxes=[[10, 10, 40, 80], [0, 0, 90, 120]])
    assert len(people) == 2
    p = people[0]
    assert p.keypoints.shape == (17, 2) and p.keypoint_quality.shape == (17,)
    assert p.visibility.shape == (17,) and p.visibility_probs.shape == (17, 3)
    np.testing.assert_allclose(p.visibility_probs.sum(-1), 1, atol=1e-5)
    assert 0 <= p.pose_quality <= 1 and ((p.keypoint_quality >= 0) & (p.keypoint_quality <= 1)).all()
    # keypoints are decoded inside the padded crop region of the box
    assert (p.keypoints[:, 0] > -20).all() and (p.keypoints[:, 0] < 70).all()


@pytest.mark.slow
def test_whole_image_when_no_boxes_and_grayscale_input(predictor):
    people = predictor(np.zeros((50, 40), np.uint8))
    assert len(people) == 1 and people[0].box.tolist() == [0, 0, 40, 50]
    assert predictor(np.zeros((50, 40, 3), np.uint8), boxes=np.zeros((0, 4))).people == []


def test_bad_inputs_raise_clear_errors(predictor, tmp_path):
    with pytest.raises(PosecalInputError, match="width must be > 0, got 0"):
        predictor(np.zeros((50, 40, 3), np.uint8), boxes=[[0, 0, 0, 10]])
    with pytest.raises(PosecalInputError, match="image not found"):
        predictor(tmp_path / "nope.jpg")
    with pytest.raises(PosecalInputError, match="shape"):
        predictor(np.zeros((5, 5, 7)))
