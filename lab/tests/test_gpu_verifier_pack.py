"""The GPU verifier run's pack (lab/tools/gpu_verifier.py): photos and their labelled boxes round trip, a shrunk photo's
boxes shrink with it, and the boxes judged are read the same every time while training draws afresh each epoch."""
import cv2
import numpy as np
import pytest

gpu_verifier = pytest.importorskip("gpu_verifier")


def as_pixels(crop: np.ndarray) -> np.ndarray:
    """A normalised (3, H, W) crop back in 0-255 RGB."""
    from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD

    return crop * np.array(IMAGENET_STD, np.float32)[:, None, None] * 255 + \
        np.array(IMAGENET_MEAN, np.float32)[:, None, None] * 255


def photo(tmp_path):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)
    path = tmp_path / "p.jpg"
    cv2.imwrite(str(path), bgr)
    person = np.array([50.0, 40, 100, 300])
    boxes = [("labelled", person, None), ("cut", np.array([50.0, 40, 100, 180]), (1, 220.0)),
             ("empty", np.array([200.0, 10, 60, 100]), None), ("jitter", np.array([80.0, 100, 100, 200]), None)]
    return bgr, path, person, boxes


def test_pack_round_trip_and_scale(tmp_path):
    bgr, path, person, boxes = photo(tmp_path)
    jpeg, rows = gpu_verifier.photo_rows(7, bgr, boxes, person[None], 1.0, path)
    assert jpeg == path.read_bytes()                      # a photo kept as it is travels as its own file
    kinds = [gpu_verifier.tpv.KINDS[int(r[1])] for r in rows]
    # the jittered box overlaps the person by IoU 0.39: between "not one" (< 0.3) and "one" (>= 0.5), left out
    assert kinds == ["labelled", "cut", "empty"] and [r[2] for r in rows] == [1, 1, 0]
    small, srows = gpu_verifier.photo_rows(7, bgr, boxes, person[None], 0.5, path)
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape == (200, 150, 3)
    np.testing.assert_allclose(np.array(srows)[:, 3:7], np.array(rows)[:, 3:7] * 0.5)
    assert srows[1][7:] == [1, 110.0]                    # the cut line shrinks with the photo
    gpu_verifier.write_pack(tmp_path / "a.npz", [(jpeg, rows), (small, srows)])
    d = np.load(tmp_path / "a.npz")
    assert d["rows"].shape == (6, 10) and d["rows"][:, 9].tolist() == [0, 0, 0, 1, 1, 1]
    assert bytes(d["blob"][d["offsets"][0]:d["offsets"][1]]) == jpeg


def test_judged_boxes_are_fixed_and_training_draws_afresh(tmp_path):
    bgr, path, person, boxes = photo(tmp_path)
    gpu_verifier.write_pack(tmp_path / "a.npz", [gpu_verifier.photo_rows(1, bgr, boxes, person[None], 1.0, path)])
    judged = gpu_verifier.PackedBoxes([tmp_path / "a.npz"], train=False)
    crop, mask, label, kind = judged[0]
    assert crop.shape == (3, 192, 128) and mask.shape == (1, 6, 4) and label == 1
    np.testing.assert_array_equal(judged[0][0], crop)
    assert as_pixels(judged[1][0])[:, -10:].mean() < 12                    # the cut person: below the line is black
    train = gpu_verifier.PackedBoxes([tmp_path / "a.npz"], train=True)
    draws = []
    for epoch in range(6):
        train.epoch = epoch
        draws.append(train[2][0])
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])
    train.epoch = 0
    np.testing.assert_array_equal(train[2][0], draws[0])  # deterministic by epoch and box
