"""The shipped models' int8 graphs (tools/quantize_shipped_graphs.py, issue 55 item 6): the sub-pixel rewrite of the
trust model's deconvolutions is the same function, the quantised graphs give the float graphs' answers on real
crops (tests/fixtures: no ../shared needed), and they open through the one opener with the model's calibration.
They answer alike on every x86 CPU kind (issue 64): the widened int8 path that an AVX2 CPU takes
(posecal.devices.int8_saturates) computes what this CPU computes, and, where qemu-user is installed, the graphs
run on an emulated AVX2 CPU give this CPU's outputs."""
import platform
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from posecal import devices
from posecal.data.crops import crops_to_batch
from posecal.export.session import INT8_KEY, OnnxEstimator, StagedOnnx, open_onnx_model
from posecal.models.shipped import (graph_weights, int8_graph, int8_graph_weights, packaged_graph, shipped_graph,
                                    staged_graphs)

from conftest import ROOT   # first: it puts tools/ on the path
from int8_recipe import INT8_WEIGHT_PREFIXES, phase_kernels, subpixel_deconvolutions  # noqa: E402

INT8 = [int8_graph("accurate", flip) for flip in (True, False)]
NAMES = ("accurate", "fast")


def fixture_crops(input_wh=(256, 256)) -> np.ndarray:
    """The two real 256-px square person crops of tests/fixtures/movenet_reference.npz (a hard one, a clear one),
    for another square size resized, for a 3:4 one their middle 3:4 resized."""
    ref = np.load(ROOT / "tests" / "fixtures" / "movenet_reference.npz")
    crops = [cv2.imdecode(ref[f"thunder_crop{i}_png"], cv2.IMREAD_COLOR) for i in range(2)]
    if tuple(input_wh) != (256, 256):
        crops = [cv2.resize(c if input_wh[0] == input_wh[1] else c[:, 32:224], tuple(input_wh),
                            interpolation=cv2.INTER_AREA) for c in crops]
    return crops_to_batch(crops)


def deconvolution_graph(weight: np.ndarray, bias: np.ndarray, size: int):
    from onnx import TensorProto, helper, numpy_helper

    cin = weight.shape[0]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[4, 4], strides=[2, 2],
                            pads=[1, 1, 1, 1], output_padding=[0, 0], dilations=[1, 1], group=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])
    graph = helper.make_graph([node], "deconv", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(proto, x):
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("cin,cout,size", [(3, 5, 7), (8, 4, 6)])
def test_the_subpixel_rewrite_is_the_same_deconvolution(cin, cout, size):
    rng = np.random.default_rng(cin)
    weight, bias = rng.normal(size=(cin, cout, 4, 4)).astype(np.float32), rng.normal(size=cout).astype(np.float32)
    x = rng.normal(size=(1, cin, size, size)).astype(np.float32)
    proto = deconvolution_graph(weight, bias, size)
    want = run(proto, x)
    assert subpixel_deconvolutions(proto) == 1
    assert [n.op_type for n in proto.graph.node] == ["Conv", "DepthToSpace"]
    got = run(proto, x)
    assert got.shape == want.shape == (1, cout, 2 * size, 2 * size)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert phase_kernels(weight).shape == (4 * cout, cin, 3, 3)


def test_a_deconvolution_of_another_shape_is_left_alone():
    from onnx import helper

    proto = deconvolution_graph(np.ones((2, 2, 4, 4), np.float32), np.zeros(2, np.float32), 4)
    proto.graph.node[0].attribute.append(helper.make_attribute("output_shape", [9, 9]))
    assert subpixel_deconvolutions(proto) == 0 and proto.graph.node[0].op_type == "ConvTranspose"


def test_only_the_trust_network_and_movenets_backbone_are_quantised():
    """MoveNet's FPN and heads (keypoint regressions and offsets in pixels) and the decode stay float."""
    proto = onnx.load(str(INT8[1]), load_external_data=False)
    qdq_inputs = {n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    for node in proto.graph.node:
        weight = node.input[1] if node.op_type == "Conv" and len(node.input) > 1 else ""
        if weight.startswith("model.backbone.") and not weight.startswith(INT8_WEIGHT_PREFIXES["accurate"]):
            assert weight not in qdq_inputs and not weight.endswith("_quantized"), weight
    quantised = {i for i in qdq_inputs if i.endswith("_quantized")}
    assert any(i.startswith("model.trust.") for i in quantised)
    assert any(i.startswith("model.backbone.backbone.") for i in quantised)
    assert not any(i.startswith(("model.backbone.fpn.", "model.backbone.regress_head.", "model.backbone.offset_head."))
                   for i in quantised)


@pytest.mark.parametrize("name", NAMES)
def test_both_int8_graphs_read_one_weights_file_and_carry_the_models_metadata(name):
    locations = set()
    for flip in (True, False):
        path = int8_graph(name, flip)
        proto = onnx.load(str(path), load_external_data=False)
        locations |= {{e.key: e.value for e in i.external_data}["location"] for i in proto.graph.initializer
                      if i.data_location == onnx.TensorProto.EXTERNAL}
        int8_model, float_model = open_onnx_model(path, flip, threads=1), OnnxEstimator(shipped_graph(name, flip))
        assert int8_model.int8 and not float_model.int8 and int8_model.flip_test is flip
        assert int8_model.meta["calibration"] == float_model.meta["calibration"]
        assert int8_model.config == float_model.config
        assert int8_model.meta["model_version"] == float_model.meta["model_version"] + "-int8"
        assert "train" in {p.key: p.value for p in proto.metadata_props}[INT8_KEY]
    assert locations == {int8_graph_weights(name).name}
    # stored once for both graphs; where the pose network's backbone is int8 too, smaller than the float graphs'
    # fp16 weights (fast's Lightning stays float, in fp32 beside the int8 trust network)
    if "model.backbone.backbone." in INT8_WEIGHT_PREFIXES[name]:
        assert int8_graph_weights(name).stat().st_size < graph_weights(name).stat().st_size


@pytest.mark.parametrize("flip", [True, False])
def test_accurates_int8_graphs_answer_as_the_float_graphs_on_real_crops(flip):
    """Crop 1 is a clear person (every keypoint within 2 px of the float graph's, in a 256-px crop); crop 0 a
    hard one, whose doubtful joints may move further. Trust outputs close on both where the keypoint stayed (5 px);
    a keypoint that moved is one the float graph doubts, and int8 is no surer of where it went."""
    x = fixture_crops()
    got = OnnxEstimator(int8_graph("accurate", flip), threads=1).outputs(x, flip)
    want = OnnxEstimator(shipped_graph("accurate", flip), threads=1).outputs(x, flip)
    assert set(got) == set(want)
    shift = np.linalg.norm(got["movenet_xy"] - want["movenet_xy"], axis=-1)
    assert shift[1].max() < 2.0 and np.median(shift) < 1.0
    np.testing.assert_allclose(got["oks"], want["oks"], atol=0.05)
    np.testing.assert_allclose(got["oks"][1], want["oks"][1], atol=0.01)
    stayed, q_int8, q_float = shift < 5.0, sigmoid(got["opks_logits"]), sigmoid(want["opks_logits"])
    assert np.abs(q_int8 - q_float)[stayed].max() < 0.2
    assert (q_float[~stayed] < 0.6).all() and (q_int8[~stayed] < q_float[~stayed] + 0.1).all()
    assert (got["vis_logits"].argmax(-1) == want["vis_logits"].argmax(-1)).mean() >= 0.9
    assert np.abs(got["heatmaps"] - want["heatmaps"]).max() < 0.1


@pytest.mark.parametrize("flip", [True, False])
def test_fasts_int8_graphs_answer_as_the_float_graphs_on_real_crops(flip):
    """fast's int8 graphs quantise its trust network only (INT8_WEIGHT_PREFIXES): Lightning's keypoints are the
    float graph's, and the trust network's answers stay close on both crops (a hard one, a clear one)."""
    x = fixture_crops((192, 192))
    got = OnnxEstimator(int8_graph("fast", flip), threads=1).outputs(x, flip)
    want = OnnxEstimator(shipped_graph("fast", flip), threads=1).outputs(x, flip)
    assert set(got) == set(want)
    np.testing.assert_allclose(got["movenet_xy"], want["movenet_xy"], atol=1e-3)
    np.testing.assert_allclose(got["oks"], want["oks"], atol=0.02)
    quality = np.abs(sigmoid(got["opks_logits"]) - sigmoid(want["opks_logits"]))   # measured: 0.15 / 0.006
    assert quality[0].max() < 0.2 and quality[1].max() < 0.02
    assert (got["vis_logits"].argmax(-1) == want["vis_logits"].argmax(-1)).mean() >= 0.9
    assert np.abs(got["heatmaps"] - want["heatmaps"]).max() < 0.15


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("name", NAMES)
def test_the_widened_int8_path_computes_what_this_cpu_computes(name, monkeypatch):
    """An AVX2 CPU runs the int8 graphs with the weights widened to uint8 (no 16-bit saturation); a VNNI CPU with
    its own exact kernels. Both sum the same integers, so on a VNNI CPU forcing the widening changes no output. On
    a CPU that saturates, the unwidened kernels clip (they are not the exact path to compare with): there the
    widened outputs must answer as the float graph does (the bounds of the int8-against-float tests above)."""
    saturates = devices.int8_saturates()          # this CPU's own answer, before it is forced below
    x = fixture_crops((256, 256) if name == "accurate" else (192, 192))
    outputs = {}
    for widened in (False, True):
        monkeypatch.setattr(devices, "int8_saturates", lambda widened=widened: widened)
        outputs[widened] = OnnxEstimator(int8_graph(name, False), threads=1).outputs(x, False)
        stages = staged_graphs(int8_graph(name, True))
        if stages is not None:   # the look and its refinement (issue 90) on the same crops
            refined = StagedOnnx(*(OnnxEstimator(g, threads=1) for g in stages)).outputs(x, True)
            outputs[widened] |= {f"staged/{key}": value for key, value in refined.items()}
    if not saturates:
        for key, value in outputs[False].items():
            np.testing.assert_allclose(outputs[True][key], value, atol=1e-4, err_msg=key)
        return
    want = OnnxEstimator(shipped_graph(name, False), threads=1).outputs(x, False)
    assert np.abs(outputs[True]["heatmaps"] - want["heatmaps"]).max() < 0.15
    np.testing.assert_allclose(outputs[True]["oks"], want["oks"], atol=0.05)


def test_session_options_widen_int8_weights_only_where_the_cpu_saturates(monkeypatch):
    for saturates in (False, True):
        monkeypatch.setattr(devices, "int8_saturates", lambda saturates=saturates: saturates)
        options = devices.session_options(1)
        try:
            widened = options.get_session_config_entry("session.x64quantprecision") == "1"
        except RuntimeError:   # onnxruntime's answer for an entry never set
            widened = False
        assert widened is saturates


AVX2_RUN = textwrap.dedent("""
    import os
    import sys
    import numpy as np
    sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]   # this test's folder, and conftest's
    from test_int8_graphs import fixture_crops
    from posecal.devices import int8_saturates
    from posecal.export.session import OnnxEstimator
    from posecal.export.session import StagedOnnx
    from posecal.models.shipped import int8_graph, staged_graphs
    assert int8_saturates(), "the emulated CPU should be one that saturates"
    out = {}
    for name, wh in (("fast", (192, 192)), ("accurate", (256, 256))):
        for key, value in OnnxEstimator(int8_graph(name, False), threads=1).outputs(fixture_crops(wh), False).items():
            out[name + "/" + key] = value
        stages = staged_graphs(int8_graph(name, True))
        if stages is not None:
            staged = StagedOnnx(*(OnnxEstimator(g, threads=1) for g in stages))
            for key, value in staged.outputs(fixture_crops(wh), True).items():
                out[name + "/staged/" + key] = value
    np.savez(sys.argv[1], **out)
""")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="needs qemu-user (Debian's qemu-user) on an x86-64 machine to emulate an AVX2 CPU")
def test_int8_graphs_answer_alike_on_an_emulated_avx2_cpu(tmp_path):
    """The CPU kind the shipped int8 graphs once failed on (AVX2, no VNNI: fast's clear person 0.923 OKS against
    float's 0.953), emulated by qemu: the same outputs as this machine's."""
    script, saved = tmp_path / "avx2_run.py", tmp_path / "avx2.npz"
    script.write_text(AVX2_RUN)
    done = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(script), str(saved),
                           str(ROOT / "tests" / "export")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    emulated = np.load(saved)
    for name, wh in (("fast", (192, 192)), ("accurate", (256, 256))):
        here = OnnxEstimator(int8_graph(name, False), threads=1).outputs(fixture_crops(wh), False)
        stages = staged_graphs(int8_graph(name, True))
        if stages is not None:   # the look and its refinement too (issue 90)
            staged = StagedOnnx(*(OnnxEstimator(g, threads=1) for g in stages)).outputs(fixture_crops(wh), True)
            here |= {f"staged/{key}": value for key, value in staged.items()}
        assert name != "accurate" or "staged/oks" in here
        for key, value in here.items():
            np.testing.assert_allclose(emulated[f"{name}/{key}"], value, atol=1e-4, err_msg=f"{name}/{key}")


@pytest.mark.parametrize("flip", [True, False])
def test_each_name_chooses_its_graph(flip, monkeypatch):
    """On a CPU with VNNI a shipped name runs int8 (the default model too), NAME-float its float graph; a GPU runs
    float; a CPU without VNNI runs float unless int8 is asked for (devices.auto_precision)."""
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    for name in NAMES:
        assert packaged_graph(name, flip) == int8_graph(name, flip)
        assert packaged_graph(f"{name}-float", flip) == shipped_graph(name, flip)
        assert packaged_graph(name, flip, "cuda") == packaged_graph(f"{name}-float", flip, "cuda") == shipped_graph(name, flip)
    assert packaged_graph(None, flip) == int8_graph("accurate", flip)
    assert packaged_graph("published", flip) is None and packaged_graph("x.onnx", flip) is None
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2"}))
    for name in NAMES:
        assert packaged_graph(name, flip) == shipped_graph(name, flip)
        assert packaged_graph(name, flip, precision="int8") == int8_graph(name, flip)


def test_the_default_predictor_runs_int8_where_the_cpu_has_vnni_and_the_float_name_float(monkeypatch):
    from posecal.inference.opener import open_model

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx_vnni"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    opened = open_model(None, flip=False, threads=1)
    assert opened.runner.int8 and opened.precision == "int8"
    assert not open_model("accurate-float", flip=False, threads=1).runner.int8
    fast = open_model("fast", flip=True, threads=1)
    assert fast.runner.int8 and fast.flip
    assert open_model(None, flip=False, threads=1, precision="float").precision == "float"
