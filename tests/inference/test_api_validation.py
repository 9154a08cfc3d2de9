"""The Python API refuses bad images, boxes and scores with one PosecalInputError line naming the argument,
before any work, and flags boxes the way `posecal predict` does (posecal.data.box_files.check_boxes)."""
import re
import warnings

import numpy as np
import pytest

from posecal.errors import PosecalInputError

from conftest import tiny_heads_predictor

IMG = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return tiny_heads_predictor(tmp_path_factory.mktemp("m"))


def _refused(call, message: str) -> str:
    """The call raises PosecalInputError whose one-line text contains `message` verbatim."""
    with pytest.raises(PosecalInputError) as info:
        call()
    text = str(info.value)
    assert message in text and "\n" not in text, text
    return text


@pytest.mark.parametrize("boxes, message", [
    ([10, 20, 30, 40, 50, 60], "boxes: expected N x 4 or N x 5 rows"),
    ([10, 20, 30, 40, 50, 60, 70, 80], "got shape (8,)"),
    (np.arange(12.0), "a flat list is not regrouped"),
    ([[10, 20, 30, 40], [1, 2, 3]], "boxes: rows of different lengths"),
    ([[10, 20, 30, 40, 0.5, 1]], "got shape (1, 6)"),
    ([[10, 20, "a", 40]], "boxes: expected numbers, got 'a'"),
    ([[10, 20, None, 40]], "boxes: expected numbers, got None"),
    ("10 20 30 40", "boxes: expected N x 4 or N x 5 numbers, got str"),
    ([[0, 0, 10, 10], [0, 0, 10, 10], [10, 20, 0, 40]], "boxes[2]: width must be > 0, got 0"),
    ([[10, 20, 30, -4]], "boxes[0]: height must be > 0, got -4"),
    ([[10, 20, 30, 40], [np.nan, 20, 30, 40]], "boxes[1]: values must be finite"),
    ([[10, 20, np.inf, 40]], "boxes[0]: values must be finite"),
    ([[10, 20, 30, 40, 1.5]], "boxes[0]: score must be in [0, 1], got 1.5"),
    ([[10, 20, 30, 40, np.nan]], "boxes[0]: values must be finite"),
])
def test_bad_boxes_are_refused_by_name(predictor, boxes, message):
    _refused(lambda: predictor(IMG, boxes=boxes), message)


@pytest.mark.parametrize("boxes, scores, message", [
    ([[10, 20, 30, 40]] * 2, [0.5], "box_scores: 1 scores for 2 boxes"),
    ([[10, 20, 30, 40]], [0.5, 0.5], "box_scores: 2 scores for 1 boxes"),
    ([[10, 20, 30, 40]] * 2, [0.5, -0.1], "box_scores[1] must be in [0, 1], got -0.1"),
    ([[10, 20, 30, 40]], [np.inf], "box_scores[0] must be in [0, 1], got inf"),
    ([[10, 20, 30, 40]], ["high"], "box_scores: expected numbers, got 'high'"),
    ([[10, 20, 30, 40, 0.9]], [0.9], "box_scores given twice"),
    (None, [0.9], "box_scores given without boxes"),
])
def test_bad_box_scores_are_refused(predictor, boxes, scores, message):
    _refused(lambda: predictor(IMG, boxes=boxes, box_scores=scores), message)


@pytest.mark.parametrize("image, message", [
    (np.zeros((5, 5, 7)), "image: array must be HxW, HxWx1, HxWx3 or HxWx4 and non-empty, got shape (5, 5, 7)"),
    (np.zeros((0, 5, 3)), "got shape (0, 5, 3)"),
    (np.zeros((2, 5, 5, 3)), "got shape (2, 5, 5, 3)"),
    (np.zeros(5), "got shape (5,)"),
    (np.array([["a"] * 4] * 4), "image: pixels must be numbers, got dtype <U1"),
    (np.zeros((4, 4), bool), "image: pixels must be numbers, got dtype bool"),
    ([[0, 1, 2], [3, 4]], "image: expected a numpy array (H x W[ x C]), a PIL image, nested lists of pixels or a "
                          "file path, got list that numpy cannot make one array of (rows of unequal length?)"),
    ([["a", "b"], ["c", "d"]], "got list whose values are not pixel numbers (numpy makes dtype <U1 of it)"),
    (b"\x00" * 12, "got bytes"),
    (object(), "got object"),
    (None, "got NoneType"),
])
def test_bad_images_are_refused_by_name(predictor, image, message):
    _refused(lambda: predictor(image), message)


@pytest.mark.slow
def test_array_likes_numpy_makes_a_picture_of_are_taken_as_that_picture(predictor):
    """Nested lists and PIL images (issue 32): the same poses as the numpy array they are."""
    from PIL import Image

    img = np.zeros((120, 160, 3), np.uint8)
    img[20:100, 70:90] = 200
    want = predictor(img, boxes=[[60, 10, 40, 100]])[0].keypoints
    for same in (img.tolist(), Image.fromarray(img), Image.fromarray(img).convert("RGBA")):
        got = predictor(same, boxes=[[60, 10, 40, 100]])
        assert len(got) == 1 and np.array_equal(got[0].keypoints, want)
    grey = predictor(Image.fromarray(img).convert("L"), boxes=[[60, 10, 40, 100]])   # a grey PIL image: 2-D
    assert len(grey) == 1 and grey[0].keypoints.shape == want.shape


def test_non_finite_pixels_are_counted(predictor):
    img = np.full((20, 20, 3), 0.5)
    img.reshape(-1)[:12] = [np.nan] * 6 + [np.inf] * 3 + [-np.inf] * 3
    _refused(lambda: predictor(img), "image: 12 non-finite pixels")


def test_missing_path_keeps_the_readers_error(predictor, tmp_path):
    _refused(lambda: predictor(str(tmp_path / "nope.jpg")), "image not found")


def test_predict_many_names_the_item(predictor):
    good = (IMG, None, None)
    _refused(lambda: predictor.predict_many([good, good, good, (np.zeros((5, 5, 7)), None, None)]),
             "images[3]: array must be HxW")
    _refused(lambda: predictor.predict_many([good, (IMG, [[1, 2, 0, 4]], None)]),
             "images[1]: boxes[0]: width must be > 0, got 0")
    _refused(lambda: predictor.predict_many([good, (IMG, [[1, 2, 3, 4]], [0.1, 0.2])]),
             "images[1]: box_scores: 2 scores for 1 boxes")
    _refused(lambda: predictor.predict_many([good, IMG]), "images[1]: expected an (image, boxes, box_scores) tuple")
    _refused(lambda: predictor.predict_many([good, (np.full((4, 4), np.nan), None, None)]),
             "images[1]: 16 non-finite pixels")


def test_bad_item_costs_no_work(predictor, monkeypatch):
    """Checks run over every item before the first crop is inferred."""
    import posecal.inference.estimator as module

    calls = []
    monkeypatch.setattr(module, "infer_crops", lambda *a: calls.append(a))
    with pytest.raises(PosecalInputError):
        predictor.predict_many([(IMG, None, None)] * 40 + [(IMG, [1, 2, 3, 4, 5, 6], None)])
    assert calls == []


def test_outside_and_normalised_boxes_warn_like_the_cli(predictor):
    with pytest.warns(UserWarning, match=re.escape("boxes: skipped 1 of 2 box(es): #1 [500.0, 10.0, 20.0, 20.0] "
                                                   "lies outside the 90x120 image")):
        people = predictor(IMG, boxes=[[10, 10, 40, 80], [500, 10, 20, 20]], box_scores=[0.8, 0.9])
    assert len(people) == 1 and people[0].box.tolist() == [10, 10, 40, 80] and people[0].box_score == 0.8
    with pytest.warns(UserWarning) as caught:
        people = predictor.predict_many([(IMG, [[0.1, 0.2, 0.5, 0.6]], None)])[0]
    assert [str(w.message) for w in caught] == [
        "images[0]: boxes: all boxes have coordinates <= 1, as if normalised to [0, 1]; posecal wants pixels "
        "(x, y, w, h) in the 90x120 image",
        "images[0]: boxes: skipped 1 of 1 box(es): #0 [0.1, 0.2, 0.5, 0.6] is under 1 px (0.5 x 0.6)"]
    assert len(people) == 0  # flagged, and under a pixel: skipped (data/boxcheck.py)


def test_equivalent_box_forms_give_the_same_pose(predictor):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid pixel boxes raise no warning
        as_list = predictor(IMG, boxes=[[10, 10, 40, 80]], box_scores=[0.7])[0]
        as_n5 = predictor(IMG, boxes=np.array([[10, 10, 40, 80, 0.7]], np.float32))[0]
        as_1d = predictor(IMG, boxes=[10, 10, 40, 80], box_scores=[0.7])[0]
        as_tuple_1d5 = predictor(IMG, boxes=(10, 10, 40, 80, 0.7))[0]
        empty = predictor(IMG, boxes=[])
    for other in (as_n5, as_1d, as_tuple_1d5):
        np.testing.assert_allclose(other.keypoints, as_list.keypoints, atol=1e-4)
        np.testing.assert_allclose(other.box, as_list.box)
        assert other.box_score == pytest.approx(0.7)
    assert len(empty) == 0 and empty.people == []


@pytest.mark.slow
def test_other_valid_images_are_accepted(predictor):
    gray1 = predictor(IMG[:, :, :1].copy(), boxes=[[10, 10, 40, 80]])[0]
    gray = predictor(IMG[:, :, 0].copy(), boxes=[[10, 10, 40, 80]])[0]
    np.testing.assert_allclose(gray1.keypoints, gray.keypoints, atol=1e-4)
    assert len(predictor(np.zeros((30, 20, 4), np.float32))) == 1
