"""The online GPU trust training (tools/trust_online.py, tools/gpu_trust.py), run on CPU for a few
steps on a tiny pack made here: it writes best.pt in train_trust's format, and with_trust builds from it a model
whose trust model runs (and exports) at its own input side, 256; the pack for it leaves out the trust model's
held-out LSPET persons, and a pack that does not say so is refused. Also: a trust model's input side as a model
file records it (192 for the shipped ones, which load as before)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.data.coco import load_lspet
from posecal.errors import PosecalInputError
from posecal.models.assemble import pose_fingerprint, with_trust
from posecal.models.checkpoint import load_model, model_from_config, save_model
from posecal.models.config import ModelConfig, network_input
from posecal.models.trust import TRUST_INPUT, TrustNet
from posecal.training import trust_samples

from conftest import make_coco, make_lsp_like, write_movenet_base

ROOT = Path(__file__).resolve().parents[2]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack_tool, gpu_trust = _tool("pack_training_data"), _tool("gpu_trust")
trust_online = sys.modules["trust_online"]   # imported by gpu_trust from beside it
check_trust_pack, load_online_config = trust_online.check_trust_pack, trust_online.load_online_config


@pytest.fixture(scope="module")
def thunder(tmp_path_factory):
    """A MoveNet Thunder model file (the shipped Thunder network, no quality outputs): the base, 256 x 256."""
    return write_movenet_base(tmp_path_factory.mktemp("base") / "thunder.pt", "movenet_thunder")


@pytest.fixture(scope="module")
def packed(tmp_path_factory, thunder):
    """(config, pack) for a tiny run: 6 COCO persons + LSPET's non-held-out ones of 5 (2 held out here)."""
    folder = tmp_path_factory.mktemp("online")
    ann, images = make_coco(folder / "coco", n_images=6)
    val_ann, val_images = make_coco(folder / "val", n_images=3, seed=7)
    lsp_ann, lsp_images = make_lsp_like(folder / "lsp", 5)
    text = {"out_dir": str(folder / "run"), "output": str(folder / "model.pt"), "base": str(thunder),
            "init": "published",
            "data": {"train_annotations": str(ann), "train_images": str(images), "val_annotations": str(val_ann),
                     "val_images": str(val_images), "lspet_annotations": str(lsp_ann), "lspet_images": str(lsp_images)},
            "augment": {"truncation_prob": 0.5, "occluder_prob": 0.5, "blur_prob": 0.5, "jpeg_prob": 0.5},
            "samples": {"no_flip_share": 0.5, "num_workers": 0},
            # 9 packed persons: 1.5 passes at batch 2 = 6 steps, stopped at 3 by --epochs below
            "train": {"batch_size": 2, "lr": 0.001, "warmup_steps": 1, "threads": 1, "input_size": 256,
                      "freeze_prefix": False, "max_minutes": 0, "epochs": 1.5, "save_every": 2}}
    cfg = folder / "online.yaml"
    cfg.write_text(json.dumps(text))
    mp = pytest.MonkeyPatch()
    mp.setattr(trust_samples, "LSPET_TRUST_HELDOUT", 2)   # lspet_trust_split reads it when called
    try:
        assert pack_tool.main([str(cfg), "--trust", "--out", str(folder / "pack"), "--input-h", "96",
                               "--no-progress"]) == 0
        keep, held = trust_samples.lspet_trust_split(5)
    finally:
        mp.undo()
    return cfg, folder / "pack", (lsp_ann, lsp_images), keep, held


def test_the_trust_pack_leaves_out_the_held_out_lspet_persons_and_is_checked(packed, tmp_path):
    _, pack, (lsp_ann, lsp_images), keep, held = packed
    assert len(keep) == 3 and len(held) == 2
    lspet = load_lspet(lsp_ann, lsp_images)
    index = json.loads((pack / "shard_000" / "index.json").read_text())
    assert index["info"]["lspet_trust_heldout"] == "excluded" and index["info"]["aspect"] == 1.0
    names = [a["orig_file_name"] for a in index["annotations"] if a["source"] == "lspet"]
    assert sorted(names) == sorted(lspet[i].file_name for i in keep)
    assert not set(names) & {lspet[i].file_name for i in held}
    assert check_trust_pack(pack)["lspet"] == 3
    # a pack whose index does not say so (e.g. made for the pose network) is refused
    bad = tmp_path / "bad"
    (bad / "shard_000").mkdir(parents=True)
    index["info"].pop("lspet_trust_heldout")
    (bad / "shard_000" / "index.json").write_text(json.dumps(index))
    with pytest.raises(PosecalInputError, match="held-out LSPET"):
        check_trust_pack(bad)


@pytest.mark.slow
def test_online_training_writes_best_pt_that_builds_a_256_model(packed, thunder, tmp_path):
    cfg_path, pack, *_ = packed
    out = tmp_path / "run"
    assert gpu_trust.main(["train", str(cfg_path), "--packed", str(pack), "--out-dir", str(out), "--device", "cpu",
                           "--epochs", "0.7", "--video-val"]) == 0
    log = json.loads((out / "log.json").read_text())
    assert log["summary"]["steps"] == 3 and [v["step"] for v in log["val"]] == [0, 2, 3]
    # judged on the val persons as photos and as video show them; best.pt by the mean of the two
    for v in log["val"]:
        assert np.isclose(v["score"], (v["photo_score"] + v["video_score"]) / 2, atol=1e-3)
    assert log["summary"]["stopped_by"] == "steps" and log["summary"]["trust_input"] == 256
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    state = ckpt["state"]
    base = load_model(thunder)[0]
    assert state["trained_for"] == pose_fingerprint(base) and state["trust_input"] == 256
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert set(ckpt["model"]) == set(TrustNet().state_dict())

    model, cfg, meta = with_trust(out / "best.pt", thunder)
    assert cfg.trust and cfg.trust_input == 256 and model.trust.input_size == 256
    assert meta["trust_trained_for"] == state["trained_for"]
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        look = model.trust.look(x)
        y = model(x, flip_test=True)
    assert look.heatmaps.shape[-1] == 64   # stride 4 of 256: no resize to 192
    assert y.oks.shape == (2,) and torch.isfinite(y.oks).all() and y.vis_logits.shape == (2, 17, 3)
    # the model file records the side, and loads at it
    save_model(model, cfg, tmp_path / "model.pt", half=True)
    again, cfg2, _ = load_model(tmp_path / "model.pt")
    assert cfg2.trust_input == 256 and again.trust.input_size == 256
    with torch.no_grad():
        np.testing.assert_allclose(again(x).oks.numpy(), model.half().float()(x).oks.numpy(), atol=1e-4)


@pytest.mark.slow
def test_the_probe_runs_the_step_on_random_crops(packed, capsys):
    cfg_path, *_ = packed
    assert gpu_trust.main(["probe", str(cfg_path), "--steps", "1", "--device", "cpu"]) == 0
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["probe"]
    assert probe["batch_size"] == 2 and probe["trust_input"] == 256 and np.isfinite(probe["loss"])


@pytest.mark.slow
def test_the_256_trust_model_exports_to_onnx_at_its_side(packed, thunder, tmp_path):
    pytest.importorskip("onnxruntime")
    from posecal.export.onnx import export_onnx

    cfg = network_input(ModelConfig(backbone="movenet_thunder", quality_heads=True, trust=True, trust_input=256),
                        given=())
    model = model_from_config(cfg, imagenet=True).eval()
    assert model.trust.input_size == 256
    x = torch.randn(2, 3, 256, 256)
    diffs = export_onnx(model, cfg, tmp_path / "m.onnx", check_inputs=x, flip_test=False)
    assert max(diffs.values()) < 1e-2


def test_shipped_trust_inputs_accurate_256_published_192(tmp_path):
    model, cfg, _ = load_model("accurate")
    assert cfg.trust_input == 256 and model.trust.input_size == 256          # trained on a GPU at 256
    model, cfg, _ = load_model("published")
    assert cfg.trust_input == TRUST_INPUT == 192 and model.trust.input_size == 192   # a file without the field
    assert TrustNet().input_size == 192
    with pytest.raises(ValueError, match="multiple of 32"):
        TrustNet(input_size=200)
    with pytest.raises(PosecalInputError, match="trust_input"):
        model_from_config(ModelConfig(backbone="movenet_thunder", quality_heads=True, trust=True, trust_input=200,
                                      input_wh=(256, 256), input_mean=(0.0,) * 3, input_std=(1 / 255,) * 3),
                          imagenet=False)


@pytest.mark.parametrize("name", ["accurate_gpu", "accurate_video_gpu"])
def test_the_gpu_config_loads_as_planned(name):
    cfg = load_online_config(ROOT / "configs" / "trust" / f"{name}.yaml")
    assert cfg.train.input_size == 256 and not cfg.train.freeze_prefix and cfg.init == "accurate"
    assert cfg.samples.no_flip_share == 0.4 and cfg.train.batch_size == 128 and cfg.samples.num_workers == 14
    assert cfg.train.max_minutes * 60 <= 560 - 30   # the device call's `timeout 560`, with room to start and end
    if name == "accurate_video_gpu":                 # video-like samples: small people, noise, more blur and JPEG
        a = cfg.augment
        assert a.small_prob > 0 and tuple(a.small_height) == (40, 200) and a.noise_prob > 0 and a.blur_prob > 0.25
