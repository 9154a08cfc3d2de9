"""Outputs are checked before any work starts, write errors are one line, and no output replaces another."""
import cv2
import numpy as np
import pytest

from posecal.cli.main import main
from posecal.errors import PosecalInputError
from posecal.io import check_output_dir, check_output_file, write_atomic, write_bytes_atomic

from conftest import predict


@pytest.fixture
def no_work(monkeypatch):
    """Model loaders and the trainer's data loading that fail the test if any job gets that far."""
    def forbidden(*args, **kwargs):
        pytest.fail("work started before the outputs were checked")
    for target in ("posecal.predict.job.Predictor", "posecal.inference.record_posing.Predictor",
                   "posecal.models.checkpoint.load_model",
                   "posecal.training.train._load_data", "posecal.predict.demo.demo_photo"):
        monkeypatch.setattr(target, forbidden)


@pytest.fixture
def blocker(tmp_path):
    """An existing file, so that 'blocker/x' has a file as its parent."""
    path = tmp_path / "blocker"
    path.write_text("a file, not a folder")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posecal: error: "), err
    return err[0]


def test_predict_out_and_render_are_checked_first(tiny_model, coco, tmp_path, blocker, no_work, capsys):
    _, img_dir = coco
    assert predict(tiny_model, img_dir, "--out", blocker / "poses.json") == 2
    assert f"--out {blocker / 'poses.json'}: {blocker} is a file, not a folder" in one_error_line(capsys)
    assert predict(tiny_model, img_dir, "--out", tmp_path) == 2
    assert f"--out {tmp_path}: is a folder; a file name is needed" in one_error_line(capsys)
    assert predict(tiny_model, img_dir, "--out", tmp_path / "p.json", "--render", blocker) == 2
    assert f"--render {blocker}: is a file; a folder is needed" in one_error_line(capsys)
    assert predict(tiny_model, img_dir, "--out", tmp_path / "p.json", "--render", blocker / "ov") == 2
    assert f"--render {blocker / 'ov'}: {blocker} is a file, not a folder" in one_error_line(capsys)
    assert not (tmp_path / "p.json").exists()


def test_unwritable_folder_is_one_line(tiny_model, coco, tmp_path, no_work, monkeypatch, capsys):
    """Tests run as root, which ignores mode bits: the write probe itself is made to fail."""
    monkeypatch.setattr("posecal.io.can_write_in", lambda folder: False)
    _, img_dir = coco
    (tmp_path / "ro").mkdir()
    out = tmp_path / "ro" / "poses.json"
    assert predict(tiny_model, img_dir, "--out", out) == 2
    assert one_error_line(capsys) == f"posecal: error: --out {out}: folder {out.parent} is not writable"


def test_eval_export_pack_train_demo_outputs_are_checked_first(coco, tmp_path, blocker, no_work, capsys):
    ann, img_dir = coco
    assert main(["eval", "--annotations", str(ann), "--images", str(img_dir), "--out", str(blocker)]) == 2
    assert f"--out {blocker}: is a file; a folder is needed" in one_error_line(capsys)
    assert main(["export", "--out", str(blocker / "m.onnx")]) == 2
    assert f"--out {blocker / 'm.onnx'}: {blocker} is a file" in one_error_line(capsys)
    assert main(["export", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder" in one_error_line(capsys)
    assert main(["pack", "model.pt", str(tmp_path)]) == 2
    assert f"OUT {tmp_path}: is a folder" in one_error_line(capsys)
    assert main(["demo", "--out", str(blocker)]) == 2
    assert f"--out {blocker}: is a file" in one_error_line(capsys)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"out_dir: {blocker / 'run'}\n")
    assert main(["train", str(config), "--no-progress"]) == 2
    assert f"out_dir {blocker / 'run'}: {blocker} is a file" in one_error_line(capsys)


def test_jobs_check_without_the_cli(tmp_path, blocker, no_work):
    from posecal.training.config import TrainConfig
    from posecal.evaluation.evaluate import EvalConfig, evaluate
    from posecal.predict.job import PredictConfig
    from posecal.predict.units import run_predict
    from posecal.training.train import train

    with pytest.raises(PosecalInputError, match="--out"):
        run_predict(PredictConfig(inputs=["x.jpg"], out=str(tmp_path)))
    with pytest.raises(PosecalInputError, match="--out"):
        evaluate(EvalConfig(annotations="a.json", images="imgs", out=str(blocker)))
    with pytest.raises(PosecalInputError, match="out_dir"):
        train(TrainConfig(out_dir=str(blocker)))


def test_missing_output_folders_are_created_and_an_output_files_folder_is_not(tmp_path):
    assert check_output_dir(tmp_path / "c" / "d", "--render").is_dir()
    with pytest.raises(PosecalInputError, match=f"folder {tmp_path / 'a' / 'b'} does not exist"):
        check_output_file(tmp_path / "a" / "b" / "p.json", "--out")
    assert not (tmp_path / "a").exists()
    assert check_output_file(tmp_path / "c" / "d" / "p.json", "--out").parent.is_dir()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # the write probe leaves nothing


def test_render_names_never_collide(tiny_model, tmp_path, capsys):
    img = np.full((64, 48, 3), 90, np.uint8)
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for path in ("a/photo.jpg", "a/photo.png", "a/sub/photo.jpg", "a/sub/photo.png", "b/photo.jpg"):
        cv2.imwrite(str(tmp_path / path), img)
    render = tmp_path / "ov"
    assert predict(tiny_model, tmp_path / "a", tmp_path / "b" / "photo.jpg", "--out", tmp_path / "p.json",
                   "--render", render) == 0
    written = sorted(p.relative_to(render).as_posix() for p in render.rglob("*.png"))
    assert written == ["a/photo.png", "b/photo.png", "photo.png", "sub/photo-2.png", "sub/photo.png"]
    err = capsys.readouterr().err
    assert "2 inputs are named photo.jpg: told apart by their folders as a/photo.jpg, b/photo.jpg" in err
    assert f"sub/photo.png: overlay written as {render / 'sub' / 'photo-2.png'}" in err


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "poses.json"
    target.write_text("old")

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["poses.json"]


def test_write_error_is_one_line_naming_the_path(tmp_path, blocker):
    def disk_full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(PosecalInputError, match=r"poses.json: cannot write \(No space left on device\)"):
        write_atomic(tmp_path / "poses.json", disk_full)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]
    with pytest.raises(PosecalInputError, match=f"{blocker / 'x.png'}: cannot write"):
        write_bytes_atomic(blocker / "x.png", b"")  # its folder became a file mid-run
