"""Every config in configs/ loads with posecal's own typed loaders and builds the model it trains, from what
it starts from (init_from: a shipped model's name or a file posecal ships), without ../shared: training configs
(`posecal train`) through training.train.training_model, trust configs (configs/trust/, `posecal train-trust`)
down to their base network and the trust model they start from."""
from pathlib import Path

import pytest

from posecal.models.assemble import trust_weights
from posecal.models.checkpoint import WEIGHTS_DIR, load_model, model_file, read_torch_file
from posecal.models.config import MOVENET_VARIANTS
from posecal.training.config import load_train_config, load_trust_config
from posecal.training.train import training_model

CONFIGS = Path(__file__).parent.parent / "configs"
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
    if cfg.init:
        assert trust_weights(cfg.init)
    else:
        assert "state_dict" in read_torch_file(model_file(cfg.init_pose))
