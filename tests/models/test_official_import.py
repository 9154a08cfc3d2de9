"""Published checkpoints: posecal's backbones reproduce every reference key/shape/dtype, `posecal import-weights`
maps each file layout strictly, and an imported model runs through `posecal eval` and S3 training."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import SHARED, make_coco
from posecal.models.checkpoint import load_model
from posecal.cli.main import main
from posecal.data.topdown import to_tensor
from posecal.models.estimator import build_estimator
from posecal.models.input_convention import InputConvention
from posecal.models.official.import_weights import import_weights, source_convention
from posecal.models.official.key_map import official_keys, to_posecal_key, unwrap
from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD

REFERENCE = SHARED / "reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference not available")

# reference list -> (model.backbone, heatmap channels)
REFERENCE_LISTS = {
    "hrnet_w32_256x192.json": ("hrnet_w32", 17), "hrnet_w48_256x192.json": ("hrnet_w48", 17),
    "pose_resnet_50_256x192.json": ("resnet50", 17), "pose_resnet_101_256x192.json": ("resnet101", 17),
    "pose_resnet_152_256x192.json": ("resnet152", 17), "stacked_hourglass_2.json": ("hourglass_2", 16),
    "stacked_hourglass_8.json": ("hourglass_8", 16),
}
MMPOSE_W32 = "mmpose_td-hm_hrnet-w32_8xb64-210e_coco-256x192.json"


def reference(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


def random_state(entries, seed: int = 0, drop_batch_counts: bool = False) -> dict:
    """A state_dict with the listed keys, shapes and dtypes and values that keep a deep net finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in entries:
        if key.endswith("num_batches_tracked"):
            if not drop_batch_counts:
                state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) > 1:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif key.endswith("weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    return state


@needs_reference
@pytest.mark.parametrize("name", sorted(REFERENCE_LISTS))
def test_backbone_state_dict_equals_the_reference_list(name):
    """Same keys (under the explicit map), same order, shapes and dtypes, and the same parameter count."""
    arch, k = REFERENCE_LISTS[name]
    ref = reference(name)
    with torch.device("meta"):  # structure only: no memory, no init cost for the 60M-parameter nets
        model = build_estimator(num_keypoints=k, imagenet=False, backbone=arch)
    mine = [[key, list(v.shape), str(v.dtype).removeprefix("torch.")] for key, v in model.state_dict().items()]
    assert mine == [[to_posecal_key(arch, key), shape, dtype] for key, shape, dtype in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]


@needs_reference
def test_mmpose_keys_map_to_the_same_model():
    ref = reference(MMPOSE_W32)
    official = reference("hrnet_w32_256x192.json")["state_dict"]
    mm = {key: torch.zeros(shape) for key, shape, _ in ref["state_dict"]}
    mm["data_preprocessor.mean"] = torch.zeros(1, 3, 1, 1)   # non-persistent in mmpose, dropped if present
    keys, from_mmpose = official_keys(mm)
    assert from_mmpose and list(keys) == [key for key, _, _ in official]


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize("name", ["pose_resnet_50_256x192.json", "stacked_hourglass_2.json", MMPOSE_W32])
def test_import_round_trips_every_tensor(tmp_path, capsys, name):
    """The file layouts as published: flat without batch counters (2018 SimpleBaseline), princeton-vl's
    {'state_dict': model.module.*}, mmpose's {'meta', 'state_dict': backbone.*/head.*}."""
    ref = reference(name)
    arch = REFERENCE_LISTS.get(name, ("hrnet_w32",))[0]
    if name.startswith("pose_resnet"):
        state = random_state(ref["state_dict"], drop_batch_counts=True)
        blob = state
    elif name.startswith("stacked"):
        state = random_state(ref["state_dict"])
        blob = {"state_dict": {ref["checkpoint_key_prefix"] + k: v for k, v in state.items()}, "epoch": 3}
    else:
        state = random_state(ref["state_dict"])
        blob = {"meta": {"epoch": 210}, "state_dict": state}
    src = tmp_path / "published.pth"
    torch.save(blob, src)
    cfg = import_weights(src, arch, tmp_path / "model.pt")
    model, loaded_cfg, meta = load_model(tmp_path / "model.pt")
    assert loaded_cfg == cfg and meta["imported_from"] == "published.pth"
    flat, _ = official_keys(unwrap(blob)[0])
    got = model.state_dict()
    for key, value in flat.items():
        assert torch.equal(got[to_posecal_key(arch, key)], value), key
    if name.startswith("pose_resnet"):   # missing counters (old BatchNorm format) load as 0
        assert int(got["backbone.bn1.num_batches_tracked"]) == 0
        assert (cfg.input_channels, cfg.input_wh, cfg.num_keypoints) == ("bgr", (192, 256), 17)
    elif name.startswith("stacked"):
        assert (cfg.input_channels, cfg.input_mean, cfg.input_std) == ("rgb", (0, 0, 0), (1, 1, 1))
        assert cfg.num_keypoints == 16 and cfg.input_wh == (256, 256)
        ann, img_dir = make_coco(tmp_path / "data", n_images=1)   # MPII joints: COCO eval refuses in one line
        assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(tmp_path / "ev"),
                     "--model", str(tmp_path / "model.pt")]) == 2
        assert "a 16-keypoint model" in capsys.readouterr().err
    else:
        assert cfg.input_channels == "rgb" and cfg.input_mean == IMAGENET_MEAN


def test_input_convention_reproduces_the_published_pipelines():
    """posecal's crop tensor, converted by the model, equals what each published pipeline feeds its network."""
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)   # BGR, as cv2 reads it
    x = to_tensor(crop)[None]
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    expected = {  # HRNet repo resnet configs (COLOR_RGB false): BGR / 255, then ImageNet mean/std per position
        "bgr": (crop / 255.0 - mean) / std,
        "rgb": (crop[:, :, ::-1] / 255.0 - mean) / std,          # HRNet configs, mmpose
        "hourglass": crop[:, :, ::-1] / 255.0,                    # princeton-vl: RGB / 255
    }
    for name, (channels, m, s) in {"bgr": source_convention("resnet50", False),
                                   "rgb": source_convention("hrnet_w32", True),
                                   "hourglass": source_convention("hourglass_8", False)}.items():
        got = InputConvention(channels, m, s)(x)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, expected[name], atol=1e-5, err_msg=name)
    assert source_convention("resnet50", True)[0] == "rgb"   # mmpose's resnet files were trained on RGB


def test_imported_model_applies_its_convention_before_the_network():
    """forward() on posecal crops == forward_pose() on the network's own input: the model carries the
    conversion, the data pipeline stays network-agnostic."""
    torch.manual_seed(0)
    model = build_estimator(imagenet=False, backbone="resnet18", input_channels="bgr").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        native = x.flip(1) * model.input_convention.scale + model.input_convention.shift
        assert torch.allclose(model(x).heatmaps, model.forward_pose(native).heatmaps, atol=1e-6)
        assert torch.equal(model.network_input(x), native) and (native - x).abs().max() > 1
    assert build_estimator(imagenet=False, backbone="resnet18").input_convention is None


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "hrnet_w32", "hourglass_2"])
def test_model_file_round_trip_per_family(tmp_path, arch):
    """A model with quality heads saves and loads back to the same weights, config and outputs."""
    from posecal.models.checkpoint import model_from_config, save_model
    from posecal.models.config import ModelConfig
    torch.manual_seed(1)
    cfg = ModelConfig(input_wh=(64, 64), backbone=arch, imagenet=False, quality_heads=True, head_hidden=16,
                      input_channels="bgr")
    model = model_from_config(cfg).eval()
    save_model(model, cfg, tmp_path / "m.pt")
    loaded, loaded_cfg, _ = load_model(tmp_path / "m.pt")
    assert loaded_cfg == cfg
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x, flip_test=True), loaded(x, flip_test=True)
    assert a.heatmaps.shape == (2, 17, 16, 16)
    for name in ("heatmaps", "oks", "opks_logits", "vis_logits"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_hourglass_supervises_every_stack():
    """Pose-only training loss of a 2-stack hourglass = heatmap MSE of stack 1 + that of stack 2."""
    from posecal.models.config import ModelConfig
    from posecal.training.config import TrainConfig
    from posecal.training.losses import heatmap_mse
    from posecal.training.train import step_losses
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig(input_wh=(64, 64), backbone="hourglass_2", imagenet=False))
    model = build_estimator(imagenet=False, backbone="hourglass_2")
    images = torch.randn(2, 3, 64, 64)
    batch = {"heatmaps": torch.rand(2, 17, 16, 16), "target_weight": torch.ones(2, 17)}
    loss = step_losses(model, batch, images, cfg, None, 0)["total"]
    out = model(images)
    assert len(out.intermediate_heatmaps) == 1
    by_hand = sum(heatmap_mse(h, batch["heatmaps"], batch["target_weight"])
                  for h in (out.heatmaps, out.intermediate_heatmaps[0]))
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_config_errors_name_the_field():
    from posecal.models.checkpoint import model_from_config
    from posecal.models.config import ModelConfig
    from posecal.errors import PosecalInputError
    with pytest.raises(PosecalInputError, match=r"model.input_wh: resnet50 needs .* multiples of 32.*144x192"):
        model_from_config(ModelConfig(backbone="resnet50", imagenet=False))
    with pytest.raises(PosecalInputError, match="model.imagenet: posecal ships no ImageNet weights for hrnet_w32"):
        model_from_config(ModelConfig(backbone="hrnet_w32", imagenet=True))
    with pytest.raises(PosecalInputError, match="model.backbone: unknown backbone 'hrnet_w18'"):
        model_from_config(ModelConfig(backbone="hrnet_w18", imagenet=False))


@pytest.mark.slow
@needs_reference
def test_imported_checkpoint_runs_through_eval_and_s3(tmp_path, capsys):
    """CLI end to end: import a random HRNet-W32 file, `posecal eval --model` it on a tiny COCO set the test
    writes, then train only the quality heads from it (S3) and evaluate that."""
    state = random_state(reference("hrnet_w32_256x192.json")["state_dict"], seed=3)
    torch.save(state, tmp_path / "pose_hrnet_w32_256x192.pth")
    model_file = tmp_path / "w32.pt"
    assert main(["import-weights", str(tmp_path / "pose_hrnet_w32_256x192.pth"), "--arch", "hrnet_w32",
                 "--out", str(model_file), "--input-wh", "64", "64"]) == 0
    assert "hrnet_w32, 17 keypoints, input 64x64 RGB" in capsys.readouterr().out
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    out = tmp_path / "eval"
    assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(out),
                 "--model", str(model_file), "--no-progress", "--batch-size", "2", "--backend", "torch"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_instances"] == 2 and 0 <= metrics["ap"]["heatmap"] <= 100
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'heads'}
data: {{train_annotations: {ann}, train_images: {img_dir}, val_annotations: {ann}, val_images: {img_dir}}}
model: {{input_wh: [64, 64], backbone: hrnet_w32, imagenet: false, quality_heads: true, head_hidden: 16}}
strategy: s3
init_from: {model_file}
epochs: 1
batch_size: 2
max_steps: 1
num_workers: 0
""")
    assert main(["train", str(cfg), "--no-progress"]) == 0
    heads, heads_cfg, _ = load_model(tmp_path / "heads" / "best_model.pt")
    pose, _, _ = load_model(model_file)
    assert heads.has_quality_heads and heads_cfg.backbone == "hrnet_w32"
    assert torch.equal(heads.state_dict()["heatmap_head.final_layer.weight"],
                       pose.state_dict()["heatmap_head.final_layer.weight"])   # S3 leaves the pose net as imported


def test_import_errors_are_one_line(tmp_path, capsys):
    not_ckpt = tmp_path / "notes.pth"
    not_ckpt.write_text("hello")
    wrong = tmp_path / "r18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "final_layer.weight": torch.zeros(17, 256, 1, 1)}, wrong)
    cases = [
        (["import-weights", str(tmp_path / "missing.pth"), "--arch", "hrnet_w32", "--out", str(tmp_path / "a.pt")],
         "missing.pth: checkpoint file not found"),
        (["import-weights", str(not_ckpt), "--arch", "hrnet_w32", "--out", str(tmp_path / "a.pt")],
         "notes.pth: not a PyTorch checkpoint"),
        (["import-weights", str(wrong), "--arch", "resnet50", "--out", str(tmp_path / "a.pt")],
         "r18.pth: does not match --arch resnet50 ("),
        (["import-weights", str(wrong), "--arch", "resnet18", "--out", str(tmp_path / "a.pt")],
         "--arch: 'resnet18' has no published checkpoints here"),
        (["import-weights", str(wrong), "--arch", "hrnet_w32", "--out", str(tmp_path)],
         "is a folder; a file name is needed"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "a.pt").exists()


def test_shape_mismatch_names_the_key(tmp_path, capsys):
    with torch.device("meta"):
        model = build_estimator(imagenet=False, backbone="resnet50")
    state = {k.split(".", 1)[1]: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 1, 1)
    torch.save(state, tmp_path / "r50.pth")
    assert main(["import-weights", str(tmp_path / "r50.pth"), "--arch", "resnet50", "--out",
                 str(tmp_path / "a.pt")]) == 2
    assert "layer1.0.conv1.weight has shape [32, 64, 1, 1], a resnet50 needs [64, 64, 1, 1]" in \
        capsys.readouterr().err


def test_init_from_refuses_another_input_convention(tmp_path):
    """S3 from an imported BGR SimpleBaseline with a config that forgot `input_channels: bgr` would train the
    heads on wrongly coloured input without any error; it is refused, naming the field and the value to set."""
    from posecal.models.checkpoint import load_state_from, model_from_config, save_model
    from posecal.models.config import ModelConfig
    from posecal.errors import PosecalInputError
    imported = ModelConfig(input_wh=(64, 64), backbone="resnet18", imagenet=False, input_channels="bgr")
    save_model(model_from_config(imported), imported, tmp_path / "imported.pt")
    heads = ModelConfig(input_wh=(64, 64), backbone="resnet18", imagenet=False, quality_heads=True, head_hidden=16)
    with pytest.raises(PosecalInputError, match=r"input_channels bgr; set model.input_channels: bgr in the config"):
        load_state_from(model_from_config(heads), tmp_path / "imported.pt", heads)
    heads.input_channels = "bgr"
    model = model_from_config(heads)
    load_state_from(model, tmp_path / "imported.pt", heads)
    assert model.input_convention.channels == "bgr"
