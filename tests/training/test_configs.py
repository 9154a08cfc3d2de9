"""Every config in configs/ loads with posecal's own typed loaders and builds the model it trains, from what
it starts from (init_from: a shipped model's name or a file posecal ships), without ../shared: training configs
(`posecal train`) through training.train.training_model, trust configs (configs/trust/, `posecal train-trust`)
down to their base network and the trust model they start from."""
from pathlib import Path

import pytest

pytest.importorskip("torch")

from posecal.models.assemble import trust_weights
from posecal.models.checkpoint import WEIGHTS_DIR, load_model, model_file, read_torch_file
from posecal.models.config import MOVENET_VARIANTS
from posecal.training.config import DataConfig, TrainConfig, load_train_config, load_trust_config
from posecal.training.train import training_model

from conftest import cli_error

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAIN = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "trust")
TRUST = sorted((CONFIGS / "trust").glob("*.yaml"))


def test_configs_are_found_and_hold_only_configs():
    assert {"baseline.yaml", "pose_gpu.yaml", "movenet_thunder_gpu_long.yaml"} <= {p.name for p in TRAIN}
    assert {"accurate.yaml"} <= {p.name for p in TRUST}
    assert [p.name for p in CONFIGS.rglob("*") if p.is_file() and p.suffix != ".yaml"] == []   # no logs


@pytest.mark.parametrize("path", TRAIN, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_training_config_loads_and_builds_its_model(path):
    cfg = load_train_config(path)
    assert cfg.epochs > 0 and len(cfg.model.input_wh) == 2
    model = training_model(cfg, pretrained=False)     # the recipe's checks, then init_from's weights loaded
    assert model.has_quality_heads == cfg.model.quality_heads
    if cfg.init_from:
        assert model_file(cfg.init_from).resolve().is_relative_to(WEIGHTS_DIR.resolve()), \
            f"init_from {cfg.init_from}: not a shipped model (a run's file is not there for whoever runs it)"


@pytest.mark.parametrize("path", TRUST, ids=lambda p: p.name)
def test_every_trust_config_loads_its_base_and_what_it_starts_from(path):
    cfg = load_trust_config(path)
    base, base_cfg, _ = load_model(cfg.base)
    assert base_cfg.backbone in MOVENET_VARIANTS
    stages = {load_trust_config(other).out_dir for other in TRUST if other != path}
    if cfg.init and any(cfg.init.startswith(out + "/") for out in stages):
        return   # a later stage of a run: it starts from what another config's run writes (their out_dir)
    if cfg.init:
        assert trust_weights(cfg.init)
    else:
        assert "state_dict" in read_torch_file(model_file(cfg.init_pose))


COCO_PAIRS = ("train_annotations", "train_images", "val_annotations", "val_images")


@pytest.mark.parametrize("path", TRAIN + TRUST, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_names_its_data(path):
    """The package's DataConfig has no default paths (a wheel has no ../shared), so each config says where its
    data is: the COCO files, or a pack for the training persons with the val files beside it."""
    cfg = (load_trust_config if path.parent.name == "trust" else load_train_config)(path)
    assert all(getattr(cfg.data, name) for name in COCO_PAIRS), path


def test_the_package_defaults_point_at_no_data():
    not_paths = ("lspet_holdout", "pseudo_labels")    # a count and a switch
    paths = {k: v for k, v in vars(DataConfig()).items() if k not in not_paths}
    assert all(value is None for value in paths.values()) and DataConfig().lspet_holdout == 600
    assert DataConfig().pseudo_labels is True
    assert TrainConfig().data == DataConfig()


def test_training_without_its_data_says_which_field_is_missing(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"out_dir: {tmp_path / 'run'}\nepochs: 1\nnum_workers: 0\n"
                   f"model: {{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false}}\n")
    assert cli_error(capsys, "train", cfg, "--no-progress") == \
        "data.train_annotations: required (a COCO keypoint JSON)"
    cfg.write_text(cfg.read_text() + "data: {train_annotations: a.json, train_images: imgs}\n")
    assert cli_error(capsys, "train", cfg, "--no-progress") == \
        "data.val_annotations: required (a COCO keypoint JSON)"
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_trust_job_without_its_data_says_which_field_is_missing_before_any_work(tmp_path):
    from posecal.errors import PosecalInputError
    from posecal.training.config import TrustJobConfig
    from posecal.training.trust_job import run_trust_job

    cfg = TrustJobConfig(out_dir=str(tmp_path / "run"), output=str(tmp_path / "model.pt"))
    with pytest.raises(PosecalInputError, match=r"^data\.train_annotations: required \(a COCO keypoint JSON\)$"):
        run_trust_job(cfg, progress=False)
    assert not (tmp_path / "run" / "samples").exists()
