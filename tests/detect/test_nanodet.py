"""The shipped NanoDet-m person detector: decoding by hand, the ONNX file against the original TF.js graph's outputs,
real pictures with and without a person, and `--detector nanodet` / `ssd` through the API and the CLI."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from posecal.detect.detector import load_detector
from posecal.detect.nanodet import (INPUT_SIZE, NANODET_FILE, NANODET_THRESHOLD, REG_MAX, NanoDetPersonDetector,
                                    cell_centres, decode_nanodet)
from posecal.detect.ssd import SsdPersonDetector

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "nanodet_reference.npz"
# The astronaut by eye (scikit-image's astronaut, 512 x 512): from her left arm (x ~ 20) to her right shoulder
# (x ~ 365; the helmet she holds reaches further, and is not her), from the top of her hair (y ~ 15) to the
# bottom edge.
ASTRONAUT_BOX = np.array([20.0, 15.0, 345.0, 497.0])


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def bgr_of(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    im = np.asarray(getattr(data, name)())
    if im.ndim == 2:
        im = np.repeat(im[:, :, None], 3, 2)
    return np.ascontiguousarray(im[:, :, ::-1])


@pytest.fixture(scope="module")
def nanodet():
    return load_detector("nanodet", threads=1)


def test_cell_layout():
    centres, strides = cell_centres()
    assert len(centres) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    np.testing.assert_allclose(centres[0], [4, 4])                     # stride 8, cell (0, 0)
    np.testing.assert_allclose(centres[1], [12, 4])                    # x moves first
    np.testing.assert_allclose(centres[52], [4, 12])
    np.testing.assert_allclose(centres[2704], [8, 8])                  # stride 16 begins
    np.testing.assert_allclose(centres[-1], [INPUT_SIZE - 16, INPUT_SIZE - 16])
    assert strides[0] == 8 and strides[2704] == 16 and strides[-1] == 32


def test_decode_one_cell_by_hand():
    centres, strides = np.array([[100.0, 60.0]]), np.array([16.0])
    logits = np.full((1, 4, REG_MAX + 1), -50.0)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 3] = 50.0         # left 2, top 1, right 3 strides
    logits[0, 3, 4] = logits[0, 3, 5] = 50.0                           # bottom: half 4, half 5 -> 4.5 strides
    boxes, scores = decode_nanodet(np.array([0.7]), logits.reshape(1, -1), centres, strides, scale=0.5,
                                   offset=(10.0, 20.0))
    # input pixels: x0 = 100 - 32, y0 = 60 - 16, x1 = 100 + 48, y1 = 60 + 72; minus the offset, / 0.5
    np.testing.assert_allclose(boxes[0], [(68 - 10) / 0.5, (44 - 20) / 0.5, 80 / 0.5, 88 / 0.5])
    assert scores[0] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        decode_nanodet(np.zeros(2), np.zeros((2, 40)), np.zeros((2, 2)), np.ones(2), 1.0, (0.0, 0.0))


def test_letterbox_centres_the_picture():
    blob, scale, (ox, oy) = NanoDetPersonDetector.preprocess(np.full((100, 200, 3), 255, np.uint8))
    assert blob.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and blob.dtype == np.float32
    assert scale == pytest.approx(2.08) and (ox, oy) == (0.0, 104.0)
    assert blob[0, :, 0, 0] == pytest.approx((0 - np.array([103.53, 116.28, 123.675])) / [57.375, 57.12, 58.395])
    assert blob[0, 0, 208, 208] == pytest.approx((255 - 103.53) / 57.375)


def test_names_choose_the_shipped_detectors(nanodet):
    assert isinstance(nanodet, NanoDetPersonDetector) and nanodet.path == NANODET_FILE
    assert nanodet.score_threshold == NANODET_THRESHOLD
    assert NANODET_FILE.stat().st_size < 8.5e6                         # fp16-stored weights
    assert isinstance(load_detector("NanoDet", 0.4, threads=1), NanoDetPersonDetector)
    assert load_detector("nanodet", 0.4, threads=1).score_threshold == 0.4
    assert isinstance(load_detector("ssd", threads=1), SsdPersonDetector)
    assert isinstance(load_detector("SSD", threads=1), SsdPersonDetector)


def test_ssd_by_name_is_trust_guided_like_the_default_and_nanodet_is_not():
    from posecal.inference.person_policy import STILL
    from posecal.inference.pipeline import detection_setup

    default = detection_setup("default", None, True, STILL)
    assert detection_setup("ssd", None, True, STILL) == default and default[1].sure_score is not None
    threshold, policy = detection_setup("nanodet", None, True, STILL)       # its own threshold, every box sure
    assert threshold is None and policy.sure_score is None


def test_onnx_matches_the_original_tf_graph(nanodet):
    """tests/fixtures/nanodet_reference.npz: the TF.js graph's outputs as TensorFlow computes them (made by
    tools/convert_nanodet.py) on the astronaut through this detector's preprocessing. The ONNX file holds exactly
    the package's fp16 weights (stored fp16 there too) and computes in fp32, as TensorFlow does: they differ by
    fp32 rounding alone (1.5e-5 at conversion). Tolerances: 1e-3 on sigmoid scores (nothing near a threshold
    moves) and 1e-2 on box logits (a box edge moves by < 0.01 stride); 5x that when OpenCV resized the picture
    to other bytes than at conversion (another OpenCV version)."""
    ref = np.load(REFERENCE)
    bgr = bgr_of("astronaut")
    if hashlib.sha256(bgr.tobytes()).hexdigest() != str(ref["image_sha256"]):
        pytest.skip("this scikit-image's astronaut is not the picture the reference was made on")
    blob = NanoDetPersonDetector.preprocess(bgr)[0]
    loose = 1.0 if hashlib.sha256(blob.tobytes()).hexdigest() == str(ref["blob_sha256"]) else 5.0
    cls, reg = nanodet.raw(blob)
    assert cls.shape == (3549, 80) and reg.shape == (3549, 44)
    np.testing.assert_allclose(cls[:, 0], ref["person"], atol=1e-3 * loose)
    np.testing.assert_allclose(cls.max(1), ref["best"], atol=1e-3 * loose)
    np.testing.assert_allclose(cls[ref["rows"]], ref["cls_rows"], atol=1e-3 * loose)
    np.testing.assert_allclose(reg[ref["rows"]], ref["reg_rows"], atol=1e-2 * loose)
    assert ref["person"].max() > 0.7                                   # the reference does hold a person


def test_astronaut_found(nanodet):
    boxes, scores = nanodet(bgr_of("astronaut"))
    assert len(boxes) >= 1 and scores[0] >= NANODET_THRESHOLD
    assert iou(boxes[0], ASTRONAUT_BOX) >= 0.85
    assert all(iou(b, ASTRONAUT_BOX) < 0.3 for b in boxes[1:])        # nobody else above the threshold


@pytest.mark.parametrize("name", ["brick", "grass", "gravel", "chelsea", "coffee", "rocket"])
def test_no_person_on_person_free_pictures(nanodet, name):
    boxes, scores = nanodet(bgr_of(name))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_no_person_on_a_blank_image(nanodet, value):
    boxes, scores = nanodet(np.full((240, 320, 3), value, np.uint8))
    assert len(boxes) == 0 and len(scores) == 0


def test_odd_shapes_and_dtypes(nanodet):
    for shape in ((1, 1, 3), (7, 900, 3), (900, 7, 3)):
        boxes, scores = nanodet(np.full(shape, 90, np.uint8))
        assert boxes.shape[1] == 4 and len(boxes) == len(scores)
    boxes, _ = nanodet(bgr_of("astronaut").astype(np.float32))
    assert len(boxes) >= 1
    with pytest.raises(ValueError):
        nanodet(np.zeros((10, 10), np.uint8))


def small_astronaut() -> np.ndarray:
    import cv2

    return cv2.resize(bgr_of("astronaut"), (160, 160), interpolation=cv2.INTER_AREA)


def test_predictor_with_nanodet():
    from posecal import Predictor

    run = dict(flip=False, threads=1, backend="torch")
    predictor = Predictor(**run, detector="nanodet")
    assert isinstance(predictor.detector, NanoDetPersonDetector)
    people = predictor(small_astronaut())
    assert len(people) == 1 and iou(people[0].box, ASTRONAUT_BOX * 160 / 512) >= 0.7
    assert predictor(np.full((120, 160, 3), 128, np.uint8)).people == []
    assert isinstance(Predictor(**run, detector="ssd").detector, SsdPersonDetector)


def test_cli_predict_and_track_with_nanodet(tmp_path, capsys):
    import json

    import cv2

    from posecal.cli.main import main

    cv2.imwrite(str(tmp_path / "astronaut.png"), small_astronaut())
    out = tmp_path / "p.json"
    assert main(["predict", str(tmp_path / "astronaut.png"), "--out", str(out), "--no-progress", "--no-flip",
                 "--backend", "torch", "--detector", "nanodet", "--threads", "1"]) == 0
    results = json.loads(out.read_text())
    assert len(results) == 1 and iou(results[0]["bbox"], ASTRONAUT_BOX * 160 / 512) >= 0.7

    video = tmp_path / "astronaut.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 160))
    for _ in range(4):
        writer.write(small_astronaut())
    writer.release()
    tracks = tmp_path / "t.json"
    assert main(["track", str(video), "--out", str(tracks), "--no-progress", "--no-flip", "--backend", "torch",
                 "--detector", "nanodet", "--threads", "1"]) == 0
    results = json.loads(tracks.read_text())
    assert results and {r["track_id"] for r in results} == {results[0]["track_id"]}
