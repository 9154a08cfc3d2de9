"""The shipped SSD person detector: anchors and decoding by hand, and the real network on real pictures."""
import math

import numpy as np
import pytest

from posecal.detect.detector import load_detector
from posecal.detect.ssd import SHIPPED_DETECTOR, SsdPersonDetector, decode_ssd, ssd_anchors


def test_anchor_layout_by_hand():
    a = ssd_anchors()
    # 19x19x3 + 10x10x6 + 5x5x6 + 3x3x6 + 2x2x6 + 1x1x6
    assert a.shape == (1083 + 600 + 150 + 54 + 24 + 6, 4) == (1917, 4)
    c = 0.5 / 19
    np.testing.assert_allclose(a[0], [c, c, 0.1, 0.1])                                   # lowest layer: 0.1, ratio 1
    np.testing.assert_allclose(a[1], [c, c, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)])     # scale 0.2, ratio 2
    np.testing.assert_allclose(a[2], [c, c, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)])     # ratio 0.5
    np.testing.assert_allclose(a[3, :2], [1.5 / 19, c])                                  # next cell: x moves first
    np.testing.assert_allclose(a[1083], [0.05, 0.05, 0.35, 0.35])                        # layer 1: scale 0.35
    np.testing.assert_allclose(a[1083 + 3], [0.05, 0.05, 0.35 * math.sqrt(3), 0.35 / math.sqrt(3)])
    s = math.sqrt(0.35 * 0.5)                                                            # interpolated square
    np.testing.assert_allclose(a[1083 + 5], [0.05, 0.05, s, s])
    np.testing.assert_allclose(a[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)])      # last: sqrt(0.95 * 1)


def test_decode_one_anchor_by_hand():
    anchors = np.array([[0.5, 0.5, 0.2, 0.2], [0.25, 0.75, 0.1, 0.4]])
    raw = np.array([[1.0, 0.0, 5 * math.log(2), 0.0],     # (y, x, h, w): y moves 1/10 of the anchor, h doubles
                    [0.0, -2.0, 0.0, 5 * math.log(0.5)]])
    boxes, scores = decode_ssd(raw, np.array([0.0, math.log(3)]), anchors, width=600, height=300)
    # anchor 0: cy = 0.1 * 0.2 + 0.5 = 0.52, h = 0.4, w = 0.2 -> x = (0.5 - 0.1) * 600, y = (0.52 - 0.2) * 300
    np.testing.assert_allclose(boxes[0], [240, 96, 120, 120])
    # anchor 1: cx = -0.2 * 0.1 + 0.25 = 0.23, w = 0.05, h = 0.4 -> x = 0.205 * 600, y = 0.55 * 300
    np.testing.assert_allclose(boxes[1], [0.205 * 600, 0.55 * 300, 30, 120])
    np.testing.assert_allclose(scores, [0.5, 0.75])      # sigmoid(0), sigmoid(log 3)
    with pytest.raises(ValueError):
        decode_ssd(np.zeros((3, 4)), np.zeros(3), anchors, 10, 10)


@pytest.fixture(scope="module")
def ssd():
    return load_detector(None, threads=1)


def test_shipped_detector_is_the_default_and_none_means_none(ssd):
    assert isinstance(ssd, SsdPersonDetector) and ssd.path == SHIPPED_DETECTOR
    assert SHIPPED_DETECTOR.stat().st_size < 12e6
    assert load_detector("none") is None and load_detector("NONE") is None


@pytest.mark.parametrize("value", [0, 128, 255])
def test_no_person_on_a_blank_image(ssd, value):
    boxes, scores = ssd(np.full((480, 640, 3), value, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_astronaut_found_and_the_cat_is_not_a_person(ssd):
    data = pytest.importorskip("skimage.data")
    boxes, scores = ssd(np.ascontiguousarray(data.astronaut()[:, :, ::-1]))
    assert len(boxes) >= 1 and scores[0] >= 0.3
    x, y, w, h = boxes[0]
    assert x < 200 and y < 100 and x + w > 350 and h > 300   # she fills most of the 512x512 photo
    for photo in (data.chelsea(), data.coffee(), data.rocket()):
        assert len(ssd(np.ascontiguousarray(photo[:, :, ::-1]))[0]) == 0


@pytest.mark.slow
def test_predictor_finds_nobody_on_a_blank_image_and_reports_the_whole_image_given():
    from posecal import Predictor

    blank = np.full((240, 320, 3), 128, np.uint8)
    # PyTorch: what is judged is the detector and the pose quality, not the runtime (an ONNX export of the shipped
    # model without the flip test, made for this test alone, would cost a minute)
    run = dict(flip=False, threads=1, backend="torch")
    assert Predictor(**run)(blank).people == []                                       # shipped detector: no box
    whole = Predictor(**run, detector=None)(blank)
    assert len(whole) == 1 and whole.pose_quality[0] < 0.3      # the whole image given: reported, its pose poor


def test_cli_default_detector_on_a_blank_image(tmp_path, capsys):
    import cv2

    from posecal.cli.main import main

    cv2.imwrite(str(tmp_path / "blank.png"), np.full((200, 300, 3), 255, np.uint8))
    out = tmp_path / "p.json"
    assert main(["predict", str(tmp_path / "blank.png"), "--out", str(out), "--no-progress", "--no-flip",
                 "--backend", "torch"]) == 0
    err = capsys.readouterr().err   # no box, or (trust-guided) unsure boxes the person rule dropped, said as such
    assert "blank.png: the detector found nobody" in err or "blank.png: 1 box(es) from the detector, none kept" in err
    assert out.read_text().strip() == "[]"
