"""bench/audit_planted.py's raw-heatmap baseline: the heatmaps it reads are the estimator's own (the estimator no
longer carries them: only this bench needs them), and the bilinear reading at image points by hand.

In the lab's tier (issue 83): the bench makes docs/audit.md's and the model card's numbers, and nothing the product
runs; its real-person check exports lite0 to ONNX (20 s), which no test of the product needs."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COCO_CROPS = REPO.parent / "shared" / "data" / "coco-val2017-crops"
# A real standing person with all 17 keypoints labelled visible (val split), large in its crop (tests/conftest.py's)
REAL_PERSON = ("000000381639_900003651.jpg", 900003651)
# image -> input-crop matrix: input = 0.5 * image + (10, 0)
MATRIX = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 0.0]])


@pytest.fixture(scope="module")
def real_person() -> tuple[str, np.ndarray]:
    """(image path, COCO box) of REAL_PERSON; skipped without ../shared."""
    if not COCO_CROPS.is_dir():
        pytest.skip("../shared data not available")
    data = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())
    ann = next(a for a in data["annotations"] if a["id"] == REAL_PERSON[1])
    return str(COCO_CROPS / "images" / REAL_PERSON[0]), np.array(ann["bbox"], float)


@pytest.fixture(scope="module")
def planted():
    path = REPO / "bench" / "audit_planted.py"
    spec = importlib.util.spec_from_file_location("script_bench_audit_planted", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gaussian_heatmaps(peak_xy=(4, 5), h=12, w=9, sigma=1.0):
    """(1, 2, h, w): keypoint 0 a unit Gaussian at peak_xy (heatmap pixels), keypoint 1 all zero."""
    ys, xs = np.mgrid[0:h, 0:w]
    g = np.exp(-((xs - peak_xy[0]) ** 2 + (ys - peak_xy[1]) ** 2) / (2 * sigma ** 2))
    return np.stack([g, np.zeros_like(g)])[None]


def test_heatmap_value_at_a_point_by_hand(planted):
    hm = _gaussian_heatmaps()
    # heatmap (4, 5) -> input ((4 + .5) * 4 - .5, (5 + .5) * 4 - .5) = (17.5, 21.5) -> image (15, 43)
    # heatmap (4.5, 5) -> input (19.5, 21.5) -> image (19, 43): halfway to the next cell, bilinear
    values = planted.heatmap_values(hm, MATRIX[None], np.array([[[15.0, 43.0], [19.0, 43.0]]]))
    assert values[0, 0] == pytest.approx(1.0)
    assert values[0, 1] == 0.0                                          # keypoint 1's heatmap is empty
    values = planted.heatmap_values(hm, MATRIX[None], np.array([[[19.0, 43.0], [15.0, 43.0]]]))
    assert values[0, 0] == pytest.approx((1 + np.exp(-0.5)) / 2)       # (g(4,5) + g(5,5)) / 2
    far = planted.heatmap_values(hm, MATRIX[None], np.array([[[-500.0, 43.0], [15.0, 43.0]]]))
    assert far[0, 0] == 0.0                                             # outside the heatmap


def test_raw_heatmaps_are_the_estimators(planted, real_person):
    """A heatmap model's (lite0's) raw heatmaps of the real person's crop peak where and as high as the estimator says
    (its heatmap scores are the peaks; its keypoints sit within a cell of them), and the matrix is the crop's."""
    from posecal.data.coco import PersonRecord
    from posecal.data.transforms import person_crop_matrix
    from posecal.inference.estimator import predict_records
    from posecal.inference.opener import open_model

    path, box = real_person
    hm, matrices = planted.raw_heatmaps("lite0", np.array([path]), box[None], threads=1)
    opened = open_model("lite0", "onnx", True, 1)
    assert hm.shape[:2] == (1, 17)
    np.testing.assert_allclose(matrices[0], person_crop_matrix(box, tuple(opened.config.input_wh)))
    record = PersonRecord(path, 0, box, np.zeros((17, 3)), 0.0)
    pred = predict_records(opened.runner, [record], opened.config.input_wh, flip=opened.flip, progress=False)
    np.testing.assert_allclose(hm.reshape(1, 17, -1).max(-1), pred.heatmap_scores, rtol=1e-5, atol=1e-6)
    at_keypoints = planted.heatmap_values(hm, matrices, pred.keypoints)
    assert np.all(at_keypoints >= 0.5 * pred.heatmap_scores)   # the keypoint sits on its own peak
