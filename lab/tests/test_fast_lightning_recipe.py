"""The fast-model study's recipe (lab/configs/trust_fast_lightning.yaml): its config loads as a trust config, and
the tool that writes its base gives MoveNet Lightning as ported, loadable as a base, with no heads of its own."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from posecal.models.checkpoint import load_model
from posecal.models.config import MOVENET_VARIANTS
from posecal.training.config import load_trust_config

REPO = Path(__file__).resolve().parents[2]


def test_the_config_trains_a_128_px_trust_model_on_the_base_the_tool_writes(tmp_path):
    cfg = load_trust_config(REPO / "lab" / "configs" / "trust_fast_lightning.yaml")
    assert cfg.train.input_size == 128 and cfg.init == "accurate"
    out = tmp_path / "lightning.pt"
    done = subprocess.run([sys.executable, str(REPO / "lab" / "tools" / "movenet_model_file.py"), "lightning",
                           str(out)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    model, model_cfg, meta = load_model(out)
    assert MOVENET_VARIANTS[model_cfg.backbone] == "lightning" and model_cfg.input_wh == (192, 192)
    assert not model_cfg.quality_heads and meta["pose_network"] == "movenet_lightning"
