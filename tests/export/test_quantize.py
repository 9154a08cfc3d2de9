"""int8 export (`posecal export --int8`) and evaluating exported .onnx files with `posecal eval --model X.onnx`."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from posecal.cli.main import main
from conftest import make_coco, write_tiny_model

pytestmark = pytest.mark.slow   # every test here exports a model to ONNX first (10-20 s)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_onnx):
    """A tiny model with all heads, its fp32 and int8 exports without flip, and a 3-person COCO set. The model is
    write_tiny_model's: `posecal export` takes the session's export of it from the cache (tiny_onnx), not one more."""
    folder = tmp_path_factory.mktemp("quant")
    model = write_tiny_model(folder / "tiny.pt")
    tiny_onnx(False)
    ann, images = make_coco(folder / "data", n_images=3)
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    assert main(["export", "--model", str(model), "--out", str(fp32), "--no-flip"]) == 0
    assert main(["export", "--model", str(model), "--out", str(int8), "--no-flip", "--int8", str(ann),
                 "--images", str(images), "--int8-crops", "2"]) == 0
    return {"model": model, "fp32": fp32, "int8": int8, "ann": ann, "images": images, "folder": folder}


def evaluate(files, model, out, *extra) -> dict:
    args = ["eval", "--annotations", str(files["ann"]), "--images", str(files["images"]), "--model", str(model),
            "--out", str(out), "--no-progress", "--threads", "1", *extra]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_calibration_crops_are_spread_over_the_persons_as_the_model_sees_them(files):
    from posecal.export.quantize import calibration_crops

    crops = calibration_crops(files["ann"], files["images"], (48, 64), 2)
    assert crops.shape == (2, 3, 64, 48) and crops.dtype == np.float32
    everyone = calibration_crops(files["ann"], files["images"], (48, 64), 50)   # more asked than there are: all 3
    assert everyone.shape == (3, 3, 64, 48)
    np.testing.assert_array_equal(crops[0], everyone[0])     # first and last person: evenly spread
    np.testing.assert_array_equal(crops[1], everyone[2])


@pytest.mark.slow
def test_int8_file_is_quantised_and_keeps_the_posecal_metadata(files, capsys):
    onnx = pytest.importorskip("onnx")
    from posecal.export.session import OnnxEstimator

    ops = {n.op_type for n in onnx.load(str(files["int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(files["fp32"])).graph.node}
    fp32, int8 = OnnxEstimator(files["fp32"], threads=1), OnnxEstimator(files["int8"], threads=1)
    assert int8.config == fp32.config and int8.flip_test is False and int8.has_quality_heads


@pytest.mark.slow
def test_eval_runs_an_exported_onnx_file_like_the_model_it_came_from(files, tmp_path):
    torch_metrics = evaluate(files, files["model"], tmp_path / "torch", "--no-flip", "--backend", "torch")
    fp32_metrics = evaluate(files, files["fp32"], tmp_path / "fp32", "--no-flip")
    int8_metrics = evaluate(files, files["int8"], tmp_path / "int8", "--no-flip")
    assert fp32_metrics["num_instances"] == int8_metrics["num_instances"] == 3
    for key in ("ap", "ap50", "ar"):
        for mode, value in torch_metrics[key].items():
            assert fp32_metrics[key][mode] == pytest.approx(value, abs=1e-3), (key, mode)
    torch_results = json.loads((tmp_path / "torch" / "results.json").read_text())
    fp32_results = json.loads((tmp_path / "fp32" / "results.json").read_text())
    np.testing.assert_allclose([r["keypoints"] for r in fp32_results], [r["keypoints"] for r in torch_results],
                               atol=1e-2)
    assert set(int8_metrics["keypoint_ece"]) == set(fp32_metrics["keypoint_ece"])


def test_onnx_flip_mismatch_and_int8_without_images_are_one_line(files, tmp_path, capsys):
    args = ["eval", "--annotations", str(files["ann"]), "--images", str(files["images"]), "--model",
            str(files["int8"]), "--out", str(tmp_path / "e"), "--no-progress"]   # flip on, file exported without
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8.onnx: exported without the flip test built in; add --no-flip" in err[0]
    assert main(["export", "--model", str(files["model"]), "--out", str(tmp_path / "x.onnx"), "--int8",
                 str(files["ann"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8 and --images go together" in err[0]
    assert not (tmp_path / "x.onnx").exists()
