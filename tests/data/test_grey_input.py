"""Grey, 16-bit, alpha and H x W x 1 pictures are the same photo as their colour twins (issue 22): one converter
for files and arrays (exact values on tiny arrays), and on real photos the same people as the colour version."""
import cv2
import numpy as np
import pytest

from posecal.data.images import is_grey, read_image, to_bgr8
from posecal.inference.image_input import bgr_from_array
from posecal.metrics.boxes import box_iou

from conftest import COCO_CROPS, needs_shared


def test_to_bgr8_exact_values():
    deep = np.array([[0, 257, 32767], [32896, 65279, 65535]], np.uint16)       # 16-bit grey, H x W
    out = to_bgr8(deep)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 127], [128, 254, 255]])  # x 255/65535, rounded
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    np.testing.assert_array_equal(to_bgr8(deep[..., None]), out)                # H x W x 1 = H x W
    bgra = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)          # alpha dropped, order kept
    np.testing.assert_array_equal(to_bgr8(bgra), [[[10, 20, 30], [40, 50, 60]]])


def test_api_arrays_go_through_the_same_converter():
    rgb = np.array([[[30, 20, 10], [60, 50, 40]]], np.uint8)
    np.testing.assert_array_equal(bgr_from_array(rgb), [[[10, 20, 30], [40, 50, 60]]])
    rgba = np.concatenate([rgb, np.full((1, 2, 1), 7, np.uint8)], 2)
    np.testing.assert_array_equal(bgr_from_array(rgba), [[[10, 20, 30], [40, 50, 60]]])
    grey = np.array([[0, 128, 255]], np.uint8)
    for arr in (grey, grey[..., None], grey.astype(np.uint16) * 257, grey.astype(np.float32) / 255):
        np.testing.assert_array_equal(bgr_from_array(arr), np.repeat(grey[..., None], 3, 2))


def test_grey_file_and_array_give_the_same_pixels(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
    cv2.imwrite(str(tmp_path / "g16.png"), grey.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), bgr_from_array(grey))
    assert is_grey(read_image(tmp_path / "g16.png"))
    assert not is_grey(bgr_from_array(np.dstack([grey, grey, grey // 2])))


def _grey_versions(rgb: np.ndarray, folder):
    """The colour photo and its grey forms: a grey JPEG file, a 16-bit grey PNG file, H x W and H x W x 1."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "grey.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(folder / "grey16.png"), grey.astype(np.uint16) * 257)
    return {"grey.jpg": str(folder / "grey.jpg"), "grey16.png": str(folder / "grey16.png"), "HxW": grey,
            "HxWx1": grey[..., None]}


@pytest.fixture(scope="module")
def shipped():
    from posecal.inference.person_policy import PersonPolicy
    from posecal.inference.predictor import Predictor
    from posecal.models.checkpoint import SHIPPED_MODELS

    if not SHIPPED_MODELS["lite0"].is_file():
        pytest.skip("shipped model not available")
    # no export, no nobody rule and no verifier (some of these people get doubtful poses): this is about the
    # detector on grey, so the pose network is lite0, whose keypoints grey leaves where colour puts them (MoveNet
    # Lightning's, `fast`'s, move: a median 15 % of the box on 000000002431's person)
    return Predictor("lite0", threads=2, backend="torch", policy=PersonPolicy(min_pose_quality=0), verifier=None)


# COCO val crops whose person the shipped detector finds in colour but, before issue 22, not in grey (the grey
# threshold, posecal/detect/ssd.py, recovers about 60% of such people: bench/detector_recall.py --grey).
LOST_IN_GREY = ("000000002299_900000042.jpg", "000000002431_900000050.jpg", "000000004134_900000070.jpg")


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("name", LOST_IN_GREY)
def test_grey_photo_keeps_its_people(shipped, tmp_path, name):
    rgb = read_image(COCO_CROPS / "images" / name)[:, :, ::-1].copy()
    colour = shipped(rgb, rgb=True)
    assert len(colour) >= 1
    for form, image in _grey_versions(rgb, tmp_path).items():
        people = shipped(image)
        # the lossless greys keep every person; the JPEG keeps every person posed at Q >= 0.7 and may lose one
        # doubtful pose whose place among its neighbours its compression noise decides (000000002299's corner pose,
        # Q 0.64, turned a quarter in colour and half in grey: kept in one, a duplicate in the other)
        lost = 1 if form == "grey.jpg" else 0
        assert len(colour) - lost <= len(people) <= len(colour), form
        confident = colour.boxes[[p.pose_quality >= 0.7 for p in colour.people]]
        assert (box_iou(confident, people.boxes).max(1) >= 0.5).all(), form
        scale = np.sqrt(colour[0].box[2] * colour[0].box[3])
        same = int(np.argmax(box_iou(colour.boxes[:1], people.boxes)[0]))      # colour's first person, in grey
        moved = np.linalg.norm(people[same].keypoints - colour[0].keypoints, axis=1) / scale
        assert np.median(moved) < 0.1, form   # nearly the same keypoints (median within 10% of the box size)


@pytest.mark.slow
def test_astronaut_in_grey(shipped, tmp_path):
    skimage = pytest.importorskip("skimage.data")
    rgb = skimage.astronaut()
    colour = shipped(rgb, rgb=True)
    for form, image in _grey_versions(rgb, tmp_path).items():
        people = shipped(image)
        assert len(people) == len(colour) == 1, form
        assert np.median(np.linalg.norm(people[0].keypoints - colour[0].keypoints, axis=1)) < 10, form
