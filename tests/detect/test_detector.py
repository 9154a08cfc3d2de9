import time

import cv2
import numpy as np
import pytest

from posecal.detect.yolox import YoloxPersonDetector, decode_yolox
from posecal.errors import PosecalInputError

from conftest import SHARED

MODELS = SHARED / "models"
DETECTORS = ["yolox_nano_416.onnx", "light_person_detector_192.onnx"]
needs_models = pytest.mark.skipif(not all((MODELS / m).is_file() for m in DETECTORS),
                                  reason="../shared/models not available")


def test_decode_one_stride16_anchor():
    # 64 px input: 8x8 cells at stride 8, 4x4 at 16, 2x2 at 32 -> 84 rows; 2 classes
    raw = np.zeros((84, 7))
    row = 64 + 1 * 4 + 2  # stride 16, gy = 1, gx = 2 (row-major: gx fastest)
    raw[row, :7] = [0.5, 0.25, np.log(2), np.log(3), 0.8, 0.5, 0.9]
    boxes, scores = decode_yolox(raw, 64, ratio=0.5)
    assert boxes.shape == (84, 4) and scores.shape == (84,)
    # cx = (0.5 + 2) * 16 = 40, cy = (0.25 + 1) * 16 = 20, w = 2 * 16, h = 3 * 16; top-left, then / 0.5
    np.testing.assert_allclose(boxes[row], [(40 - 16) / 0.5, (20 - 24) / 0.5, 64, 96])
    assert scores[row] == pytest.approx(0.8 * 0.5)  # person = class 0, class 1 ignored
    assert np.count_nonzero(scores) == 1
    # first stride-8 row is cell (0, 0): centre at 0, size exp(0) * 8
    np.testing.assert_allclose(boxes[0], [-4 / 0.5, -4 / 0.5, 16, 16])


def test_decode_rejects_wrong_anchor_count():
    with pytest.raises(ValueError):
        decode_yolox(np.zeros((100, 6)), 64, 1.0)


def test_missing_file(tmp_path):
    with pytest.raises(PosecalInputError, match="nothere.onnx"):
        YoloxPersonDetector(tmp_path / "nothere.onnx")


def test_a_detector_neither_shipped_nor_a_file_names_the_shipped_ones(tmp_path, capsys):
    """--detector yolo (a mistyped name, not a file): one line naming the detectors posecal ships."""
    from posecal.detect.detector import load_detector

    from conftest import run_cli

    expected = "yolo: neither a detector posecal ships (default, ssd, nanodet, ssd+nanodet, none) nor a detector " \
               "model file found"
    with pytest.raises(PosecalInputError) as e:
        load_detector("yolo")
    assert str(e.value) == expected
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((64, 48, 3), 90, np.uint8))
    rc, _, err = run_cli(capsys, "predict", img, "--detector", "yolo", "--out", tmp_path / "p.json", "--no-progress")
    assert rc == 2 and err.strip().splitlines()[-1] == f"posecal: error: {expected}", err


def test_text_file_is_not_a_model(tmp_path):
    bad = tmp_path / "fake.onnx"
    bad.write_text("this is not a network\n")
    with pytest.raises(PosecalInputError, match="fake.onnx") as e:
        YoloxPersonDetector(bad)
    assert "\n" not in str(e.value)


def test_non_yolox_model_is_rejected(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "identity.onnx"
    onnx.save(model, path)
    with pytest.raises(PosecalInputError, match="identity.onnx.*YOLOX"):
        YoloxPersonDetector(path)


def iou(a, b):
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request):
    if not (MODELS / request.param).is_file():
        pytest.skip("../shared/models not available")
    return YoloxPersonDetector(MODELS / request.param)


@needs_models
def test_astronaut_found(detector):
    from skimage.data import astronaut

    bgr = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    t = time.perf_counter()
    boxes, scores = detector(bgr)
    print(f"{detector.path.name}: {boxes.round(1).tolist()} {scores.round(3).tolist()} "
          f"{(time.perf_counter() - t) * 1e3:.0f} ms")
    assert len(boxes) >= 1 and boxes.shape == (len(scores), 4)
    assert np.all(np.diff(scores) <= 0) and scores[0] > 0.5
    assert iou(boxes[0], np.array([0, 0, 460, 512])) > 0.5
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] + boxes[:, 2:] <= 512 + 1e-6)


@needs_models
def test_grey_image_has_nobody(detector):
    boxes, scores = detector(np.full((300, 400, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


@pytest.mark.slow
@needs_models
@pytest.mark.parametrize("nms", ["oks", "soft"])
def test_predict_with_real_detector_on_real_photo_keeps_distinct_poses(tmp_path, nms):
    """The shipped model behind a real detector: OKS-NMS leaves no two near-identical poses."""
    import json

    from posecal.cli.main import main
    from posecal.metrics.oks import opks

    skimage = pytest.importorskip("skimage")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), skimage.data.astronaut()[:, :, ::-1])
    out = tmp_path / "res.json"
    assert main(["predict", str(photo), "--detector", str(MODELS / "yolox_nano_416.onnx"), "--nms", nms,
                 "--out", str(out), "--no-progress"]) == 0
    people = json.loads(out.read_text())
    assert len(people) >= 1
    kps = np.array([p["keypoints"] for p in people]).reshape(len(people), 17, 3)[..., :2]
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            area = people[i]["bbox"][2] * people[i]["bbox"][3]
            assert opks(kps[j], kps[i], area).mean() <= 0.9
    top = max(people, key=lambda p: p["score"])
    assert 0 < top["pose_quality"] <= 1 and top["bbox"][2] > 200  # the astronaut, not a patch
