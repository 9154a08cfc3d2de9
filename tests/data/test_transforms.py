import cv2
import numpy as np
import pytest

from posecal.data.transforms import (apply_affine, box_to_center_scale, crop_matrix, flip_keypoints,
                                     invert_affine, warp)


def test_box_to_center_scale_fixes_aspect_and_pads():
    c, s = box_to_center_scale([10, 20, 30, 100], aspect=0.75)
    assert c.tolist() == [25, 70]
    assert s.tolist() == pytest.approx([75 * 1.25, 100 * 1.25])
    c, s = box_to_center_scale([0, 0, 90, 60], aspect=0.75)
    assert s.tolist() == pytest.approx([90 * 1.25, 120 * 1.25])


@pytest.mark.parametrize("bad", [[0, 0, 0, 10], [0, 0, 10, -1], [0, 0, float("nan"), 3]])
def test_degenerate_boxes_raise(bad):
    with pytest.raises(ValueError):
        box_to_center_scale(bad, 0.75)


def test_box_edges_land_on_pixel_edges_and_centre_on_centre():
    m = crop_matrix(center=(100, 50), size=(80, 120), rotation_deg=0, out_wh=(40, 60))
    pts = apply_affine(np.array([[60, 50], [140, 50], [100, -10], [100, 50]]), m)
    np.testing.assert_allclose(pts, [[-0.5, 29.5], [39.5, 29.5], [19.5, -0.5], [19.5, 29.5]])


def test_affine_inverse_round_trip_with_rotation():
    m = crop_matrix(center=(123.4, 77.7), size=(90, 120), rotation_deg=33, out_wh=(144, 192))
    pts = np.random.default_rng(1).uniform(0, 300, size=(20, 2))
    back = apply_affine(apply_affine(pts, m), invert_affine(m))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_rotation_turns_points_about_the_centre():
    m = crop_matrix(center=(0, 0), size=(10, 10), rotation_deg=90, out_wh=(10, 10))
    # A point to the right of the centre goes to above the centre (counter-clockwise on screen).
    p = apply_affine(np.array([[1.0, 0.0]]), m)[0] - [4.5, 4.5]
    np.testing.assert_allclose(p, [0, -1], atol=1e-12)


def test_warp_moves_a_bright_pixel_where_the_matrix_says():
    img = np.zeros((200, 300, 3), np.uint8)
    img[120, 170] = 255
    m = crop_matrix(center=(150, 100), size=(100, 100), rotation_deg=20, out_wh=(100, 100))
    crop = warp(cv2.GaussianBlur(img, (7, 7), 2), m, (100, 100))
    y, x = np.unravel_index(crop[:, :, 0].argmax(), crop.shape[:2])
    expected = apply_affine(np.array([[170, 120]]), m)[0]
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_flip_keypoints_mirrors_and_swaps():
    kp = np.zeros((17, 3))
    kp[5] = (10, 20, 2)   # left shoulder
    kp[6] = (30, 20, 1)   # right shoulder
    out = flip_keypoints(kp, width=100)
    assert out[6].tolist() == [89, 20, 2]   # the old left shoulder is now the right one
    assert out[5].tolist() == [69, 20, 1]


def test_color_jitter_is_the_float_brightness_contrast_saturation_formula():
    """The one-pass cv2.transform equals the step-by-step float formula to within one grey level."""
    from posecal.data.transforms import color_jitter

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    img[:10] = 250   # saturating region
    for seed in range(5):
        got = color_jitter(img, 0.5, np.random.default_rng(seed)).astype(int)
        b, c, s = np.random.default_rng(seed).uniform(0.5, 1.5, size=3)
        ref = img.astype(np.float64) * b
        ref = (ref - ref.mean()) * c + ref.mean()
        gray = ref.mean(axis=2, keepdims=True)
        ref = np.clip((ref - gray) * s + gray, 0, 255).astype(np.uint8).astype(int)   # truncation, as before
        assert np.abs(got - ref).max() <= 1 and abs((got - ref).mean()) < 0.15   # OpenCV's 8-bit rounding
    assert color_jitter(img, 0.0, rng) is img
