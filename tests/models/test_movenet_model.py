"""MoveNet as a posecal model: its fixed input on every path, its decode, ONNX round trip, heads training.

Lightning (the smaller port) keeps these fast; the port's own equivalence with the original graph is
tests/models/test_movenet_port.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_coco
from posecal.codec.movenet import FLIP_AGREE, merge_flip
from posecal.data.coco import load_coco_persons
from posecal.errors import PosecalInputError
from posecal.inference.predictor import Predictor
from posecal.inference.estimator import predict_records
from posecal.inference.estimator import runner_of
from posecal.inference.topdown import infer_crops
from posecal.models.checkpoint import load_model, model_from_config, save_model
from posecal.models.config import ModelConfig, default_decode, network_input
from posecal.training.config import load_train_config

LIGHTNING = network_input(ModelConfig(backbone="movenet_lightning", quality_heads=True, head_hidden=16),
                          given={"backbone", "quality_heads", "head_hidden"})


@pytest.fixture(scope="module")
def lightning_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("movenet") / "lightning_heads.pt"
    save_model(model_from_config(LIGHTNING), LIGHTNING, path, half=True)
    return path


def test_config_fixes_the_network_input():
    assert LIGHTNING.input_wh == (192, 192) and LIGHTNING.input_channels == "rgb"
    assert LIGHTNING.input_mean == (0.0, 0.0, 0.0) and np.allclose(LIGHTNING.input_std, 1 / 255)
    assert default_decode(LIGHTNING) == "movenet" and default_decode(ModelConfig()) == "dark"
    with pytest.raises(ValueError) as e:
        network_input(ModelConfig(backbone="movenet_thunder", input_wh=(144, 192)))
    assert e.value.args[0] == "input_wh" and "takes [256, 256]" in e.value.args[1]
    # every path that builds a model checks it: a model file or config with a 3:4 MoveNet is one line
    with pytest.raises(PosecalInputError, match=r"model\.input_wh: movenet_lightning takes \[192, 192\]"):
        model_from_config(ModelConfig(backbone="movenet_lightning", input_wh=(144, 192), input_mean=(0, 0, 0),
                                      input_std=(1 / 255,) * 3))


def test_training_yaml_fills_in_or_refuses_the_input(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  backbone: movenet_thunder\n  quality_heads: true\n")
    cfg = load_train_config(good)
    assert cfg.model.input_wh == (256, 256) and np.allclose(cfg.model.input_std, 1 / 255)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: movenet_thunder\n  input_wh: [192, 256]\n")
    with pytest.raises(PosecalInputError, match=r"bad\.yaml: model\.input_wh: movenet_thunder takes \[256, 256\]"):
        load_train_config(bad)


class _Recorder(torch.nn.Module):
    """Wraps the MoveNet backbone and keeps what it was fed."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward_pyramid(self, x):
        self.seen.append(x.detach().clone())
        return self.net.forward_pyramid(x)


@pytest.mark.slow
def test_every_path_feeds_a_square_rgb_0_255_crop(lightning_file, tmp_path):
    # A flat colour given as an RGB array (rgb=True) must reach the network as RGB 0..255 on a 192x192 crop; as a
    # BGR array (the API's default, what files become) its channels are swapped first.
    pred = Predictor(str(lightning_file), detector=None, flip=False, min_pose_quality=0, backend="torch")
    rec = _Recorder(pred.model.backbone)
    pred.model.backbone = rec
    image = np.zeros((300, 150, 3), np.uint8) + np.array([10, 20, 30], np.uint8)
    pred(image, boxes=[[20, 30, 90, 240]], rgb=True)          # a 3:4-ish box
    x = rec.seen[-1]
    assert tuple(x.shape[1:]) == (3, 192, 192)
    np.testing.assert_allclose(x[0, :, 96, 96].numpy(), [10, 20, 30], atol=1e-3)
    pred.predict_many([(image, [[20, 30, 90, 240]], None)])
    np.testing.assert_allclose(rec.seen[-1][0, :, 96, 96].numpy(), [30, 20, 10], atol=1e-3)

    # the evaluation path (COCO records -> TopDownDataset) crops the same way
    ann, img_dir = make_coco(tmp_path, n_images=2)
    model, cfg, _ = load_model(lightning_file)
    model.backbone = rec
    predict_records(model, load_coco_persons(ann, img_dir), cfg.input_wh, flip=True, progress=False)
    assert all(tuple(s.shape[2:]) == (192, 192) for s in rec.seen)
    assert all(float(s.min()) >= -1e-3 and float(s.max()) <= 255 + 1e-3 for s in rec.seen)


def test_default_decode_is_movenets_and_flip_merges(lightning_file):
    model, cfg, _ = load_model(lightning_file)
    model = runner_of(model)
    crops = torch.randn(3, 3, 192, 192).numpy()
    own = infer_crops(model, crops, flip=False)
    named = infer_crops(model, crops, flip=False, decode_method="movenet")
    np.testing.assert_array_equal(own["xy"], named["xy"])
    dark = infer_crops(model, crops, flip=False, decode_method="dark")
    assert not np.allclose(own["xy"], dark["xy"])
    flipped = infer_crops(model, crops, flip=True)
    assert flipped["xy"].shape == (3, 17, 2) and np.isfinite(flipped["xy"]).all()


def test_merge_flip_by_hand():
    w = 192
    xy = np.zeros((1, 17, 2))
    xy_m = np.zeros((1, 17, 2))
    s, s_m = np.full((1, 17), 0.5), np.full((1, 17), 0.5)
    # keypoint 0 (nose, its own mirror): at x=50 in the crop, x=140 in the mirror -> back at 191-140 = 51
    xy[0, 0], xy_m[0, 0] = (50, 60), (140, 62)
    # keypoint 1 (left eye) pairs with 2 (right eye) in the mirror: far apart -> the higher score wins
    xy[0, 1], s[0, 1] = (10, 10), 0.9
    xy_m[0, 2], s_m[0, 2] = (w - 1 - 100, 100), 0.3
    merged, scores = merge_flip(xy, s, xy_m, s_m, w)
    np.testing.assert_allclose(merged[0, 0], [50.5, 61.0])
    np.testing.assert_allclose(merged[0, 1], [10, 10])
    assert scores[0, 1] == pytest.approx(0.6)
    assert np.linalg.norm([100 - 10, 100 - 10]) > FLIP_AGREE * w
    xy_m[0, 2], s_m[0, 2] = (w - 1 - 100, 100), 0.95
    merged, _ = merge_flip(xy, s, xy_m, s_m, w)
    np.testing.assert_allclose(merged[0, 1], [100, 100])


@pytest.mark.slow
def test_pack_load_onnx_round_trip_keeps_movenet_outputs(lightning_file, tmp_path):
    pytest.importorskip("onnxscript")
    from posecal.cli.main import main
    from posecal.export.onnx import export_onnx
    from posecal.export.session import open_onnx_model
    from posecal.models.outputs import MOVENET_OUTPUTS

    assert main(["pack", str(lightning_file), str(tmp_path / "packed.pt")]) in (0, None)
    model, cfg, meta = load_model(tmp_path / "packed.pt")
    assert cfg == LIGHTNING and meta["packed_from"] == str(lightning_file)
    crops = torch.randn(2, 3, 192, 192)
    diffs = export_onnx(model, cfg, tmp_path / "m.onnx", check_inputs=crops, flip_test=True)
    assert set(MOVENET_OUTPUTS) <= set(diffs) and max(diffs.values()) < 1e-3, diffs
    onnx_model = open_onnx_model(tmp_path / "m.onnx", flip=True, threads=1)
    assert onnx_model.config == cfg and onnx_model.has_quality_heads
    a, b = infer_crops(runner_of(model), crops.numpy(), flip=True), infer_crops(onnx_model, crops.numpy(), flip=True)
    np.testing.assert_allclose(a["xy"], b["xy"], atol=0.05)
    np.testing.assert_allclose(a["oks"], b["oks"], atol=1e-3)


def test_s3_heads_train_on_shipped_movenet_without_init_from(tmp_path):
    from posecal.training.train import train

    ann, img_dir = make_coco(tmp_path, n_images=3)
    cfg_file = tmp_path / "heads.yaml"
    cfg_file.write_text(json.dumps({
        "out_dir": str(tmp_path / "run"), "strategy": "s3", "epochs": 2, "batch_size": 2, "max_steps": 2,
        "warmup_steps": 1, "num_workers": 0, "threads": 1, "flip_targets": True,
        "data": {"train_annotations": str(ann), "train_images": str(img_dir), "val_annotations": str(ann),
                 "val_images": str(img_dir)},
        "model": {"backbone": "movenet_lightning", "quality_heads": True, "head_hidden": 16}}))
    cfg = load_train_config(cfg_file)
    result = train(cfg, progress=False)
    assert result["step"] == 2
    model, saved, _ = load_model(tmp_path / "run" / "best_model.pt")
    assert saved.backbone == "movenet_lightning" and model.has_quality_heads and model.is_movenet


def test_decode_movenet_on_another_model_is_one_line_before_inference(tmp_path, capsys):
    from posecal.cli.main import main
    from posecal.models.estimator import build_estimator

    ann, img_dir = make_coco(tmp_path, n_images=2)
    cfg = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False)
    save_model(build_estimator(cfg.head_widths, imagenet=False), cfg, tmp_path / "tiny.pt")
    code = main(["eval", "--model", str(tmp_path / "tiny.pt"), "--decode", "movenet", "--annotations", str(ann),
                 "--images", str(img_dir), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--decode movenet needs a MoveNet model" in err and "efficientnet_lite0" in err
    assert not (tmp_path / "out" / "results.json").exists()
