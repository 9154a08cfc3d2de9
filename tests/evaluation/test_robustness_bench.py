"""bench/robustness.py's condition transforms on tiny synthetic images: where rotated and cut keypoints land."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

_SPEC = importlib.util.spec_from_file_location(
    "robustness_bench", Path(__file__).resolve().parents[2] / "bench" / "robustness.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _ann(bbox, points, k: int = 17) -> dict:
    """A COCO annotation with the given (x, y) points labelled visible and the rest unlabelled (0, 0, 0)."""
    kp = np.zeros((k, 3))
    kp[: len(points), :2] = points
    kp[: len(points), 2] = 2
    return {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": list(map(float, bbox)),
            "keypoints": kp.reshape(-1).tolist(), "num_keypoints": len(points), "area": 321.0,
            "crop_transform": [[1, 0, 0], [0, 1, 0]]}


def _kp(ann) -> np.ndarray:
    return np.asarray(ann["keypoints"]).reshape(-1, 3)


def _centre(bbox) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x + w / 2, y + h / 2])


def test_rotation_by_90_turns_a_point_right_of_the_centre_to_above_it():
    # 80x60 (w x h) image, 10x30 box centred at (30, 40); a keypoint and a bright pixel 10 px right of it.
    img = np.zeros((60, 80, 3), np.uint8)
    img[40, 40] = 255
    out, ann = bench.rotate_person(img, _ann([25, 25, 10, 30], [[40, 40]]), 90)
    assert out.shape == (80, 60, 3)                      # the canvas holds the whole rotated image
    c = _centre(ann["bbox"])
    kp = _kp(ann)
    np.testing.assert_allclose(kp[0, :2], c + [0, -10], atol=1e-6)   # cv2: positive angle = counter-clockwise
    assert np.unravel_index(out[..., 0].argmax(), out.shape[:2]) == (round(kp[0, 1]), round(kp[0, 0]))
    np.testing.assert_allclose(ann["bbox"][2:], [30, 10], atol=1e-6)  # the box turns on its side
    assert (kp[1:] == 0).all() and ann["area"] == 321.0 and "crop_transform" not in ann


def test_rotation_by_45_box_is_the_hull_of_the_turned_corners():
    img = np.zeros((100, 100, 3), np.uint8)
    out, ann = bench.rotate_person(img, _ann([40, 40, 20, 20], [[50, 50]]), 45)
    assert out.shape == (142, 142, 3)                             # 100 * sqrt(2), rounded up
    np.testing.assert_allclose(ann["bbox"][2:], [20 * 2 ** 0.5] * 2, atol=1e-6)
    np.testing.assert_allclose(_kp(ann)[0, :2], _centre(ann["bbox"]), atol=1e-6)  # the centre stays the centre
    assert ann["area"] == 321.0


def test_rotation_by_180_twice_round_trips():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(50, 40, 3), dtype=np.uint8)
    ann = _ann([5, 8, 20, 30], rng.uniform(5, 35, size=(6, 2)))
    once_img, once = bench.rotate_person(img, ann, 180)
    twice_img, twice = bench.rotate_person(once_img, once, 180)
    assert twice_img.shape == img.shape
    assert np.abs(twice_img.astype(int) - img).max() <= 1
    np.testing.assert_allclose(_kp(twice), _kp(ann), atol=1e-6)
    np.testing.assert_allclose(twice["bbox"], ann["bbox"], atol=1e-6)
    assert not np.allclose(_kp(once)[:6, :2], _kp(ann)[:6, :2])    # the first turn did move them


def test_truncation_cuts_exactly_below_the_line_and_clips_the_box():
    # Box 30x60 -> 3:4 region 45x60, padded 1.25: height 75 around cy = 50, so y_cut = 50 + 37.5 - 30 = 57.5.
    bbox = [10, 20, 30, 60]
    assert bench.cut_line_y(bbox, (144, 192)) == pytest.approx(57.5)
    img = np.arange(100 * 70 * 3, dtype=np.uint32).reshape(100, 70, 3).astype(np.uint8)
    pts = [[20, 30], [20, 57], [20, 57.5], [20, 58], [25, 79]]
    out, ann, cut = bench.truncate_bottom(img, _ann(bbox, pts), (144, 192))
    assert out.shape == (58, 70, 3) and (out == img[:58]).all()   # rows 0..57 have y < 57.5
    assert cut.tolist() == [False, False, True, True, True] + [False] * 12
    kp = _kp(ann)
    assert kp[:2, 2].tolist() == [2, 2] and (kp[2:] == 0).all() and ann["num_keypoints"] == 2
    assert ann["bbox"] == pytest.approx([10, 20, 30, 37.5])
    assert ann["area"] == 321.0 and "crop_transform" not in ann


def test_absent_stats_counts_against_keypoints_labelled_before_the_cut():
    cut = np.array([[True, True, False, False, False]])
    still = np.array([[False, False, True, True, False]])          # the last keypoint was never labelled
    pred_absent = np.array([[True, False, True, False, True]])
    s = bench.absent_stats(pred_absent, cut, still)
    assert s["recall"] == 0.5 and s["precision"] == 0.5          # the unlabelled one is not counted
    assert (s["n_cut"], s["n_still_labelled"], s["n_predicted_absent"]) == (2, 2, 2)
