"""The shipped models' ONNX graphs (what the wheel carries): made from the model files in this tree, fp16 weights
stored once for both graphs, the same outputs as the PyTorch model, and run by the one opener without export."""
import hashlib
import tomllib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")   # the train extra's: the graphs' own files are read

from posecal.export.session import SOURCE_KEY, VERSION_KEY, OnnxEstimator
from posecal.inference.opener import open_model
from posecal.models.shipped import (SHIPPED_GRAPHS, SHIPPED_MODELS, graph_weights, packaged_graph, shipped_graph,
                                    trust_graph)

from conftest import ROOT

GRAPHED = [name for name in SHIPPED_MODELS if shipped_graph(name, True).is_file()]


def meta_of(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_the_default_and_the_fast_model_ship_as_graphs():
    assert set(GRAPHED) == set(SHIPPED_GRAPHS) == {"accurate", "fast"}
    assert packaged_graph("accurate-float", True) == packaged_graph(None, True, "cuda") == shipped_graph("accurate", True)
    assert packaged_graph("fast-float", False) == shipped_graph("fast", False)
    assert packaged_graph("published", True) is None and packaged_graph("my.pt", True) is None


@pytest.mark.parametrize("name", GRAPHED)
def test_each_graph_was_made_from_the_model_file_in_this_tree(name):
    """A .pt changed without `python tools/build_shipped_graphs.py NAME` fails here."""
    digest = hashlib.sha256(SHIPPED_MODELS[name].read_bytes()).hexdigest()
    for flip in (True, False):
        meta = meta_of(shipped_graph(name, flip))
        assert meta[SOURCE_KEY] == digest, f"{shipped_graph(name, flip).name} is stale: rebuild it"
        assert meta[VERSION_KEY] == f"{name}-{digest[:12]}"


@pytest.mark.parametrize("name", GRAPHED)
def test_both_graphs_read_one_fp16_weights_file(name):
    locations, halves = set(), 0
    for flip in (True, False):
        proto = onnx.load(str(shipped_graph(name, flip)), load_external_data=False)
        for init in proto.graph.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                locations.add({e.key: e.value for e in init.external_data}["location"])
                halves += init.data_type == onnx.TensorProto.FLOAT16
    assert locations == {graph_weights(name).name} and halves > 100
    # the weights are stored once: the file is smaller than the two graphs' external tensors together
    assert graph_weights(name).stat().st_size < 0.6 * 2 * sum(
        int({e.key: e.value for e in i.external_data}["length"])
        for i in onnx.load(str(shipped_graph(name, True)), load_external_data=False).graph.initializer
        if i.data_location == onnx.TensorProto.EXTERNAL)


def test_the_wheel_takes_the_graphs_and_their_weights_and_leaves_the_pt_files():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["package-data"]["posecal"]) >= {"weights/*.onnx", "weights/*.onnx.data"}
    assert setuptools["exclude-package-data"]["posecal"] == ["weights/*.pt"]


def test_a_shipped_name_opens_its_graph_with_the_flip_setting(monkeypatch):
    import posecal.export.cache as cache

    monkeypatch.setattr(cache, "cached_onnx", lambda *a, **k: pytest.fail("a shipped model was exported"))
    for flip in (True, False):
        opened = open_model("fast", flip=flip, threads=1)
        assert isinstance(opened.runner, OnnxEstimator) and opened.runner.flip_test is flip and opened.flip is flip
        assert opened.meta["calibration"] and opened.meta["model_version"].startswith("fast-")
    assert open_model(None, threads=1).config.backbone == "movenet_thunder"   # the default: accurate


@pytest.mark.slow
@pytest.mark.parametrize("name", GRAPHED)
def test_graphs_give_the_pytorch_models_outputs(name, real_person):
    from posecal.inference.estimator import runner_of
    from posecal.models.checkpoint import load_model
    from conftest import real_person_crops

    model, cfg, _ = load_model(name)
    batch = real_person_crops(real_person, cfg.input_wh).numpy()
    for flip in (True, False):
        want = runner_of(model).outputs(batch, flip)
        got = OnnxEstimator(shipped_graph(name, flip), threads=1).outputs(batch, flip)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=2e-3 if key == "movenet_xy" else 1e-4, err_msg=key)


def test_the_trust_graph_reads_the_accurate_models_weights_file_and_was_made_from_its_pt():
    """posecal_accurate.trust.onnx (calibrate --images without PyTorch): made from the .pt in this tree, its
    weights all found in the model's own fp16 weights file (the wheel carries them once)."""
    path = trust_graph("accurate")
    digest = hashlib.sha256(SHIPPED_MODELS["accurate"].read_bytes()).hexdigest()
    assert meta_of(path)[SOURCE_KEY] == digest, f"{path.name} is stale: python tools/build_shipped_graphs.py accurate"
    proto = onnx.load(str(path), load_external_data=False)
    external = [i for i in proto.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) > 100
    locations = {next(e.value for e in i.external_data if e.key == "location") for i in external}
    assert locations == {graph_weights("accurate").name}
    assert path.stat().st_size < 2_000_000


@pytest.mark.slow
def test_the_trust_graph_gives_the_pytorch_trust_models_outputs(real_person):
    """The evidence `calibrate --images` reads: the same numbers from the graph (no PyTorch) as from the model."""
    from posecal.evaluation.evidence import PosecalEvidence

    path, box, kps = real_person
    rng = np.random.default_rng(0)
    points = np.stack([kps[:, :2], kps[:, :2] + rng.normal(0, 8, (17, 2))])   # right and displaced keypoints
    boxes = np.stack([box, box])
    graph, torch_model = PosecalEvidence(), PosecalEvidence("accurate")
    assert graph.description == torch_model.description
    got, want = graph([path, path], boxes, points), torch_model([path, path], boxes, points)
    for field in ("keypoint_quality", "visibility_probs", "pose_quality"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), atol=1e-4, err_msg=field)
