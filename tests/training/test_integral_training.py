"""Training with the integral (soft-argmax L1) loss beside the heatmap loss, end to end through the CLI."""
import json

import pytest

from posecal.cli.main import main

from conftest import make_coco


def config(tmp_path, extra: str, model: str = "input_wh: [32, 48], head_widths: [8, 8, 8], imagenet: false") -> str:
    ann, img_dir = make_coco(tmp_path / "data", n_images=4)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'run'}
data: {{train_annotations: {ann}, train_images: {img_dir}, val_annotations: {ann}, val_images: {img_dir}}}
model: {{{model}}}
epochs: 1
batch_size: 2
max_steps: 2
num_workers: 0
threads: 1
{extra}
""")
    return str(cfg)


@pytest.mark.slow
def test_integral_loss_is_logged_and_added_with_its_weight(tmp_path):
    assert main(["train", config(tmp_path, "lambda_integral: 0.01"), "--no-progress"]) == 0
    entry = json.loads((tmp_path / "run" / "log.json").read_text())[-1]
    assert entry["loss_integral"] > 0
    # Epoch means are linear in the terms: total = heatmap + lambda * integral.
    assert entry["loss"] == pytest.approx(entry["loss_heatmap"] + 0.01 * entry["loss_integral"], rel=1e-5)
    out = tmp_path / "eval"
    assert main(["eval", "--annotations", str(tmp_path / "data" / "ann.json"), "--images",
                 str(tmp_path / "data" / "images"), "--out", str(out), "--model", str(tmp_path / "run" / "best_model.pt"),
                 "--decode", "soft_argmax", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["decode"] == "soft_argmax"


def test_without_the_option_no_integral_term(tmp_path):
    assert main(["train", config(tmp_path, ""), "--no-progress"]) == 0
    entry = json.loads((tmp_path / "run" / "log.json").read_text())[-1]
    assert "loss_integral" not in entry and entry["loss"] == pytest.approx(entry["loss_heatmap"])


def test_integral_loss_with_a_frozen_pose_network_is_one_line(tmp_path, capsys):
    cfg = config(tmp_path, "lambda_integral: 0.01\nstrategy: s3\ninit_from: x.pt", model="quality_heads: true")
    assert main(["train", cfg, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "posecal: error: lambda_integral trains the pose network, which strategy s3 freezes; set it to 0"

