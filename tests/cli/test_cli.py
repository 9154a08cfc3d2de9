"""End to end: train 2 steps on a tiny synthetic set, then `posecal eval` writes valid files."""
import json
import shutil

import numpy as np

import pytest

from posecal.cli.main import main

from conftest import make_coco, write_train_config


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A finished 2-step run on the tiny set, trained once for the module's tests."""
    base = tmp_path_factory.mktemp("trained")
    ann, img_dir = make_coco(base / "data", n_images=4)
    cfg = write_train_config(base, ann, img_dir, batch_size=2, max_steps=2)
    assert main(["train", str(cfg), "--no-progress"]) == 0
    return base


@pytest.fixture
def trained(trained_once, tmp_path):
    """A copy of that run (data, cfg.yaml, run/) in tmp_path, its config pointing at the copy: each test may change
    its own as if it had trained it."""
    shutil.copytree(trained_once, tmp_path, dirs_exist_ok=True)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(cfg.read_text().replace(str(trained_once), str(tmp_path)))
    return tmp_path, tmp_path / "data" / "ann.json", tmp_path / "data" / "images"


@pytest.mark.slow
def test_train_then_eval_writes_metrics(trained, capsys):
    tmp_path, ann, img_dir = trained
    run = tmp_path / "run"
    log = json.loads((run / "log.json").read_text())
    assert log[-1]["step"] == 2 and log[-1]["loss"] > 0
    assert (run / "last.pt").is_file() and (run / "best_model.pt").is_file()
    out = tmp_path / "eval"
    assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(out),
                 "--model", str(run / "best_model.pt"), "--no-progress", "--backend", "torch"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_instances"] == 4
    for key in ("ap", "ap50", "ap75", "ar"):
        assert 0 <= metrics[key]["heatmap"] <= 100
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 4 and len(results[0]["keypoints"]) == 51 and "file_name" in results[0]
    from pycocotools.coco import COCO
    COCO(str(ann)).loadRes(results)       # pycocotools accepts the results file
    assert "AP" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(trained):
    tmp_path, _, _ = trained
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(cfg.read_text().replace("epochs: 1", "epochs: 2").replace("max_steps: 2", "max_steps: 4"))
    assert main(["train", str(cfg), "--resume", "--no-progress"]) == 0
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2] and log[-1]["step"] == 4


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posecal: error:") and "missing.yaml: config file not found" in err and "\n" not in err
    assert main(["eval", "--annotations", str(tmp_path / "x.json"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--model", str(tmp_path / "m.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_skips_a_corrupt_image_with_a_warning(trained):
    tmp_path, ann, img_dir = trained
    (img_dir / "img2.jpg").write_bytes(b"garbage")
    out = tmp_path / "eval2"
    with pytest.warns(UserWarning, match="img2.jpg: cannot decode image"):
        assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(out),
                     "--model", str(tmp_path / "run" / "best_model.pt"), "--no-progress", "--backend", "torch"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_instances"] == 3 and metrics["num_skipped"] == 1


@pytest.mark.slow
def test_heads_s3_then_eval_writes_every_report_key(trained):
    tmp_path, ann, img_dir = trained
    cfg = tmp_path / "heads.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'heads'}
data: {{train_annotations: {ann}, train_images: {img_dir}, val_annotations: {ann}, val_images: {img_dir}}}
model: {{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false, quality_heads: true, head_hidden: 16}}
strategy: s3
init_from: {tmp_path / 'run' / 'best_model.pt'}
epochs: 1
batch_size: 2
max_steps: 2
num_workers: 0
""")
    assert main(["train", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "eval_heads"
    assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(out),
                 "--model", str(tmp_path / "heads" / "best_model.pt"), "--no-progress", "--drop-unlabelled",
                 "--backend", "torch"]) == 0   # PyTorch: a fresh model's ONNX export costs ~30 s; onnxruntime's
                                               # eval is held to PyTorch's in test_pipelines.py, test_quantize.py
    m = json.loads((out / "metrics.json").read_text())
    modes = {"heatmap", "mmpose", "oks", "opks", "score", "pose_quality"}   # + the results contract's keys
    for key in ("ap", "ap50", "ap75", "ar", "pose_score_pearson", "pose_score_spearman"):
        assert set(m[key]) == modes, key
    assert m["score_mode"] == "oks"
    assert set(m["keypoint_ece"]) == {"heatmap", "opks", "confidence", "keypoint_quality"} and "mean_opks_pearson" in m
    assert m["calibrated"] is False and "keypoint_radius" not in m and "pose" in m["risk_coverage"]
    assert set(m["pose_score_ece"]) == modes
    assert set(m["opks_without_visibility"]) == {"pose_score_pearson", "pose_score_spearman"}
    tern = m["visibility"]["ternary"]
    for key in ("precision", "recall", "f1", "f1_macro", "f1_weighted", "accuracy", "confusion"):
        assert key in tern
    assert len(tern["f1"]) == 3 and len(tern["confusion"]) == 3
    assert set(m["visibility"]["binary"]) >= {"precision", "recall", "f1", "accuracy"}
    assert set(m["mapk"]) >= {"all", "drop_unlabelled"} and len(m["mapk"]["all"]["per_keypoint"]) == 17
    assert set(m["errors"]["nose"]) == {"good", "jitter", "inversion", "swap", "miss"}
    page = (out / "report.html").read_text()
    for floor in (m["pose_score_ece_floor"]["pose_quality"], m["keypoint_ece_floor"]["keypoint_quality"]):
        assert f"<td>{floor[0]:.3f}</td><td>{floor[1]:.3f}</td>" in page   # each ECE beside its floor
    assert page.count("<th>ECE floor</th>") == 2
    for png in ("reliability.png", "pose_score_vs_oks.png", "visibility_confusion.png", "risk_coverage.png"):
        assert (out / png).stat().st_size > 1000
    res = json.loads((out / "results.json").read_text())
    assert len(res[0]["keypoint_quality"]) == 17 and len(res[0]["visibility"]) == 17
    assert res[0]["score"] == pytest.approx(res[0]["pose_quality"], abs=1e-3)


@pytest.mark.slow
def test_resume_from_committed_state_continues_the_schedule(trained, capsys):
    """A new machine has no last.pt: --resume goes on from the committed fp16 weights + schedule position."""
    tmp_path, _, _ = trained
    cfg = tmp_path / "cfg.yaml"
    state_dir = tmp_path / "committed"
    text = cfg.read_text() + f"resume_state: {state_dir}\nresume_warmup_steps: 2\n"
    cfg.write_text(text)
    (tmp_path / "run" / "last.pt").unlink()
    assert main(["train", str(cfg), "--resume", "--no-progress"]) == 2     # nothing to resume from yet
    assert "nothing to resume from" in capsys.readouterr().err
    cfg.write_text(text.replace("epochs: 1", "epochs: 1\nlr: 0.01"))
    assert main(["train", str(cfg), "--no-progress"]) == 0                  # writes the committed state
    assert (state_dir / "weights.pt").is_file()
    assert json.loads((state_dir / "state.json").read_text())["step"] == 2
    (tmp_path / "run" / "last.pt").unlink()
    cfg.write_text(text.replace("epochs: 1", "epochs: 2\nlr: 0.01").replace("max_steps: 2", "max_steps: 4"))
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "--no-progress"]) == 0
    assert "resumed from committed state" in capsys.readouterr().out
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2] and log[-1]["step"] == 4


def test_lr_rewarms_after_a_resume_without_optimizer_state():
    from posecal.training.config import TrainConfig
    from posecal.training.train import lr_at
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0, resume_warmup_steps=4)
    plain = lr_at(50, 100, cfg)
    assert plain == pytest.approx(0.5 * (1 + np.cos(np.pi * 40 / 90)))
    assert lr_at(50, 100, cfg, rewarm_from=50) == pytest.approx(plain / 4)
    assert lr_at(53, 100, cfg, rewarm_from=50) == pytest.approx(lr_at(53, 100, cfg))


@pytest.mark.slow
def test_resume_refuses_a_corrupt_checkpoint(trained, capsys):
    tmp_path, _, _ = trained
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(["train", str(tmp_path / "cfg.yaml"), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt: cannot resume from it" in err and "\n" not in err


@pytest.mark.slow
def test_train_leaves_out_unreadable_images_and_goes_on(tmp_path, capsys):
    """A truncated file is found before the first step and left out with a count; a file that only fails when
    decoded mid-run is reported once and the next person takes its place; the run finishes."""
    ann, img_dir = make_coco(tmp_path / "data", n_images=4)
    good = (img_dir / "img1.jpg").read_bytes()
    (img_dir / "img1.jpg").write_bytes(good[: len(good) // 2])                 # truncated: caught up front
    (img_dir / "img2.jpg").write_bytes(b"\xff\xd8" + bytes(200) + b"\xff\xd9")  # decodes to nothing: caught mid-run
    cfg = write_train_config(tmp_path, ann, img_dir, batch_size=3, max_steps=1)
    with pytest.warns(UserWarning, match="img2.jpg: cannot decode image"):  # validation skips it too
        assert main(["train", str(cfg), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "img1.jpg: truncated JPEG" in err and "training: left out 1 of 4 persons" in err
    assert err.count("img2.jpg: cannot decode image") == 1
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert log[-1]["step"] == 1


def test_cli_shows_posecal_warnings_in_one_line():
    import posecal.inference.topdown
    from posecal.cli.main import one_line_warning

    msg = "skipping: photos/a.jpg: empty file (0 bytes)"
    assert one_line_warning(msg, UserWarning, posecal.inference.topdown.__file__, 47) == f"posecal: {msg}\n"
    other = one_line_warning("x is deprecated", DeprecationWarning, posecal.inference.topdown.__file__, 47)
    assert other.startswith(f"{posecal.inference.topdown.__file__}:47: DeprecationWarning: x is deprecated")
    foreign = one_line_warning("odd", UserWarning, "/elsewhere/lib.py", 3)
    assert foreign.startswith("/elsewhere/lib.py:3: UserWarning: odd")
