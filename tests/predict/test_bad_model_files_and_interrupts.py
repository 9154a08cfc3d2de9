"""Bad model files, missing folders and interrupts, each end to end on tiny files the test writes: a model file that is
empty or cut short, a training run's own last.pt as --model, a missing image folder in training, Ctrl-C in eval and
audit, `calibrate apply` on standard COCO results, and the names and permissions of rendered overlays. Each user
mistake is one line (`posecal: error: ...`, exit 2), never a traceback. (EXIF-turned photos: test_exif_photos.py;
numbers in help texts: test_cli_help.py.)"""
import contextlib
import json
import os
import re
import stat
from typing import ClassVar

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.errors import PosecalInputError

from conftest import cli_error as error_line, make_coco, run_cli as run, train_one_step, write_tiny_model, \
    write_train_config, write_walking_video


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- a model file that is empty or cut short: one line naming the file, from the CLI and the API

@pytest.mark.parametrize("data, reason", [(b"", "empty file, 0 bytes"), (b"abc", "pop from empty list")])
def test_empty_or_cut_model_file_is_one_line(tmp_path, capsys, data, reason):
    """torch raises errors without a message (an IndexError) for such files: the line still names the file and
    says what it is, instead of a traceback."""
    from posecal.inference.predictor import Predictor

    model = tmp_path / "m.pt"
    model.write_bytes(data)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((64, 48, 3), 90, np.uint8))
    expected = f"{model}: not a posecal model file ({reason})"
    assert error_line(capsys, "predict", img, "--model", model, "--no-progress", "--out", tmp_path / "p.json") \
        == expected
    with pytest.raises(PosecalInputError) as e:
        Predictor(str(model), detector=None)
    assert str(e.value) == expected


def test_numpy_numbers_load_other_python_objects_stay_refused(tmp_path):
    """numpy scalars (a metric in a checkpoint's metadata) are numbers and load; any other Python object in a .pt
    file is still refused, since unpickling it could run code."""
    import argparse

    from posecal.models.checkpoint import read_torch_file

    numbers = tmp_path / "numbers.pt"
    torch.save({"best": np.float64(0.5), "n": np.int64(3), "ok": np.bool_(True)}, numbers)
    assert read_torch_file(numbers) == {"best": 0.5, "n": 3, "ok": True}
    other = tmp_path / "other.pt"
    torch.save({"args": argparse.Namespace(lr=1)}, other)
    with pytest.raises(PosecalInputError, match=r"other\.pt: refused: it holds Python objects beyond weights"):
        read_torch_file(other)


# --- a training run's own last.pt is a model every command opens

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished 1-step run of `posecal train` (run/last.pt and run/best_model.pt), trained once for the module."""
    return train_one_step(tmp_path_factory.mktemp("trained"))


@pytest.mark.slow
def test_last_pt_holds_only_weights_and_plain_values(trained_run):
    """What `posecal train` writes loads with torch.load(weights_only=True), the only way posecal opens a file."""
    run_dir, _ = trained_run
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert {"model", "optim", "state", "config"} <= set(ckpt)
    assert type(ckpt["state"]["best_ap"]) is float


@pytest.mark.slow
def test_last_pt_as_model_gives_the_runs_poses(trained_run, tmp_path, capsys):
    """After one step last.pt and best_model.pt hold the same weights (no weight average): predict gives the same
    poses with either, and no refusal about code."""
    run_dir, img_dir = trained_run
    outs = {}
    for name in ("last.pt", "best_model.pt"):
        out = tmp_path / f"{name}.json"
        rc, _, err = run(capsys, "predict", img_dir / "img0.jpg", "--model", run_dir / name, "--backend", "torch",
                         "--detector", "none", "--min-pose-quality", "0", "--no-progress", "--out", out)
        assert rc == 0, err
        outs[name] = json.loads(out.read_text())
    assert outs["last.pt"] == outs["best_model.pt"] and len(outs["last.pt"]) == 1


@pytest.mark.slow
def test_a_training_checkpoint_serves_its_weight_average_and_older_files_load(trained_run, tmp_path):
    """A run with a weight average (ema_decay) serves the average, as its best_model.pt does; a last.pt written
    before its state was kept plain (a numpy float in it) still loads."""
    from posecal.models.checkpoint import load_model

    run_dir, _ = trained_run
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    average = {f"module.{k}": (v + 1 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    ckpt["ema"] = average | {"n_averaged": torch.tensor(3)}
    ckpt["state"]["best_ap"] = np.float64(0.5)
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    model, cfg, meta = load_model(path)
    assert cfg.input_wh == (48, 64) and meta["step"] == 1 and meta["training_checkpoint"] == str(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, average[f"module.{k}"].float()), k


# --- a missing image folder in training is named, not the annotations' folder

@pytest.mark.parametrize("field", ["train_images", "val_images", "lspet_images"])
def test_train_names_the_missing_image_folder(tmp_path, capsys, field):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    cfg = write_train_config(tmp_path, ann, img_dir, batch_size=2, max_steps=1)
    missing = tmp_path / "nowhere" / "pictures"
    text = cfg.read_text()
    if field == "lspet_images":
        text = text.replace("val_annotations:", f"lspet_annotations: {ann}, lspet_images: {missing}, "
                                                "val_annotations:")
    else:
        text = re.sub(rf"{field}: [^,}}]+", f"{field}: {missing}", text)
    cfg.write_text(text)
    assert error_line(capsys, "train", cfg, "--no-progress") == (
        f"{missing}: image folder not found (images of {ann})")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_names_a_missing_pack_folder(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    cfg = write_train_config(tmp_path, ann, img_dir, batch_size=2, max_steps=1)
    missing = tmp_path / "nowhere" / "pack"
    assert error_line(capsys, "train", cfg, "--no-progress", "--packed", missing) == (
        f"{missing}: pack folder not found (data.packed / --packed)")


# --- Ctrl-C in eval and audit: said, and no finished-looking outputs left

def test_ctrl_c_without_a_message_says_interrupted(monkeypatch, capsys):
    from posecal.cli import commands

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(commands, "cmd_models", interrupted)
    rc, _, err = run(capsys, "models")
    assert rc == 130 and err == "posecal: interrupted (Ctrl-C)\n"


@pytest.fixture
def eval_args(tiny_model, tmp_path):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    out = tmp_path / "ev"
    return out, ["eval", "--annotations", ann, "--images", img_dir, "--out", out, "--model", tiny_model,
                 "--backend", "torch", "--threads", "1", "--no-progress"]


def test_ctrl_c_while_eval_draws_its_report_leaves_no_metrics(eval_args, monkeypatch, capsys):
    """Ctrl-C after metrics.json was written, while report.html is drawn: a folder with this run's metrics.json
    but no report would look finished, so this run's outputs (and an earlier run's report.html beside them,
    which describes other numbers) are removed, and the line says so."""
    from posecal.viz import report

    out, args = eval_args
    out.mkdir()
    (out / "report.html").write_text("an earlier run's report")

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "write_report", interrupted)
    rc, stdout, err = run(capsys, *args)
    assert rc == 130 and stdout == ""
    written = ["results.json", "metrics.json", "report.html", "reliability.png", "pose_score_vs_oks.png",
               "risk_coverage.png", "visibility_confusion.png"]
    assert err == (f"posecal: interrupted (Ctrl-C): eval did not finish; removed its unfinished outputs "
                   f"({', '.join(written)}) from {out}\n")
    assert sorted(p.name for p in out.iterdir()) == []


def test_ctrl_c_before_eval_writes_leaves_an_earlier_run_as_it_was(eval_args, monkeypatch, capsys):
    """Ctrl-C while the model runs: nothing of this run was written, so an earlier complete run in the folder
    stays as it was, and the line says nothing was written."""
    from posecal.evaluation import evaluate

    out, args = eval_args
    out.mkdir()
    earlier = {"metrics.json": '{"ap": {}}', "results.json": "[]", "report.html": "<html>"}
    for name, text in earlier.items():
        (out / name).write_text(text)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluate, "write_json_atomic", interrupted)
    rc, _, err = run(capsys, *args)
    assert rc == 130 and err == f"posecal: interrupted (Ctrl-C): eval did not finish; nothing written to {out}\n"
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier


def test_ctrl_c_while_audit_draws_its_report_leaves_no_findings(tmp_path, monkeypatch, capsys):
    from posecal.audit import gallery

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    out = tmp_path / "audit"

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(gallery, "write_gallery", interrupted)
    rc, _, err = run(capsys, "audit", "--annotations", ann, "--images", img_dir, "--out", out, "--model", "fast",
                     "--threads", "1", "--no-progress")
    assert rc == 130
    assert err == (f"posecal: interrupted (Ctrl-C): audit did not finish; removed its unfinished outputs "
                   f"(findings.json) from {out}\n")
    assert not (out / "findings.json").exists()


# --- calibrate apply finds the images of standard COCO results (no file_name) as fit does

class FakeEvidence:
    """posecal's image evidence, answered without a network: what is asked for is recorded (which image files)."""
    asked: ClassVar[list] = []

    def __init__(self, *a, **k):
        from posecal.evaluation.evidence import PosecalEvidence

        self.description = {"model": "fake", "sha256_16": "0123456789abcdef", "trust": True}
        assert PosecalEvidence   # the real class exists where calibrate_results looks for it

    def __call__(self, image_paths, boxes, points):
        from posecal.evaluation.evidence import Evidence

        FakeEvidence.asked.append(list(image_paths))
        n, k = np.asarray(points).shape[:2]
        rng = np.random.default_rng(len(FakeEvidence.asked))
        probs = rng.dirichlet([1, 1, 1], (n, k))
        return Evidence(rng.uniform(0.2, 0.9, (n, k)), probs, rng.uniform(0.2, 0.9, n))


@pytest.mark.slow
def test_calibrate_apply_finds_images_by_image_id_with_annotations(tmp_path, monkeypatch, capsys):
    from posecal.evaluation import calibrate_results

    monkeypatch.setattr(calibrate_results, "PosecalEvidence", FakeEvidence)
    FakeEvidence.asked = []
    ann, img_dir = make_coco(tmp_path / "data", n_images=12, seed=3)
    data = json.loads(ann.read_text())
    rng = np.random.default_rng(1)
    results = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.7,
                "keypoints": np.c_[np.asarray(a["keypoints"]).reshape(17, 3)[:, :2] + rng.normal(0, 3, (17, 2)),
                                   rng.uniform(0.3, 0.9, 17)].reshape(-1).tolist()}
               for a in data["annotations"]]   # standard COCO results: no file_name
    res = tmp_path / "r.json"
    res.write_text(json.dumps(results))
    cal, out = tmp_path / "cal.json", tmp_path / "r_cal.json"
    rc, _, err = run(capsys, "calibrate", "fit", "--results", res, "--annotations", ann, "--images", img_dir,
                     "--out", cal)
    assert rc == 0, err
    assert error_line(capsys, "calibrate", "apply", "--calibrator", cal, "--results", res, "--out", out,
                      "--images", img_dir) == (
        f"{res}: entry 0: no 'file_name' to find its image in {img_dir}; give --annotations (the COCO file of "
        f"its images) to find it by its image_id")
    assert not out.exists()
    rc, _, err = run(capsys, "calibrate", "apply", "--calibrator", cal, "--results", res, "--out", out,
                     "--images", img_dir, "--annotations", ann)
    assert rc == 0, err
    fitted_on, applied_on = FakeEvidence.asked
    assert fitted_on == applied_on == [str(img_dir / f"img{a['image_id'] - 1}.jpg") for a in data["annotations"]]
    assert len(json.loads(out.read_text())) == len(results)


# --- rendered overlays: names that say what they are, and the permissions of every other output

@pytest.mark.slow
def test_predict_renders_a_videos_frames_in_a_folder_named_as_an_image_would_be(tiny_model, tmp_path, capsys):
    video = write_walking_video(tmp_path / "clip.avi", frames=3)
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.full((64, 48, 3), 90, np.uint8))
    render = tmp_path / "ov"
    rc, _, err = run(capsys, "predict", video, tmp_path / "photo.jpg", "--model", tiny_model, "--backend", "torch",
                     "--detector", "none", "--min-pose-quality", "0", "--no-progress", "--out", tmp_path / "p.json",
                     "--render", render)
    assert rc == 0, err
    assert sorted(p.relative_to(render).as_posix() for p in render.rglob("*") if p.is_file()) == [
        "clip/frame_000000.png", "clip/frame_000001.png", "clip/frame_000002.png", "photo.png"]


def _track(tiny_model, *args):
    return ["track", *args, "--detector", "none", "--model", tiny_model, "--backend", "torch", "--no-progress",
            "--min-birth-quality", "0", "--min-pose-quality", "0", "--threads", "1"]


@pytest.mark.parametrize("name", ["r.avi", "r.mp4"])
def test_track_writes_the_video_file_it_names_with_the_usual_permissions(tiny_model, tmp_path, capsys, name):
    """--render r.avi is a video at r.avi (not a folder r.avi/ holding an .mp4), the summary names it, and it gets
    the permissions the JSON beside it gets (0666 less the umask), not a temporary file's 0600."""
    video = write_walking_video(tmp_path / "walk.mp4", frames=4)
    render, out = tmp_path / name, tmp_path / "t.json"
    with umask(0o022):
        rc, stdout, err = run(capsys, *_track(tiny_model, video, "--out", out, "--render", render))
    assert rc == 0, err
    assert re.search(rf"-> {re.escape(str(out))}, overlay video {re.escape(str(render))} \(settings fingerprint [0-9a-f]{{16}}\)$",
                     stdout.strip())
    assert render.is_file()
    cap = cv2.VideoCapture(str(render))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    assert stat.S_IMODE(render.stat().st_mode) == stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp*"))


def test_track_renders_several_sources_into_a_folder(tiny_model, tmp_path, capsys):
    videos = [write_walking_video(tmp_path / f"{n}.avi", frames=3) for n in ("a", "b")]
    render = tmp_path / "overlays"
    with umask(0o022):
        rc, stdout, err = run(capsys, *_track(tiny_model, *videos, "--out", tmp_path / "t.json", "--render", render))
    assert rc == 0, err
    assert re.search(rf"overlay videos in {re.escape(str(render))}/ \(settings fingerprint [0-9a-f]{{16}}\)$", stdout.strip())
    assert sorted(p.name for p in render.iterdir()) == ["a.mp4", "b.mp4"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in render.iterdir()} == {0o644}


def test_track_refuses_a_render_name_it_cannot_write_before_any_work(tiny_model, tmp_path, capsys, monkeypatch):
    from posecal.tracking import job

    def no_model(*a, **k):
        raise AssertionError("a model was loaded for a refused --render")
    monkeypatch.setattr(job, "tracking_predictor", no_model)
    videos = [write_walking_video(tmp_path / f"{n}.avi", frames=2) for n in ("a", "b")]
    assert error_line(capsys, *_track(tiny_model, videos[0], "--out", tmp_path / "t.json", "--render",
                                      tmp_path / "r.mkv")) == (
        f"--render {tmp_path / 'r.mkv'}: posecal writes overlay videos as .mp4 or .avi, not .mkv; give OUT.mp4, "
        f"OUT.avi or a folder")
    assert error_line(capsys, *_track(tiny_model, *videos, "--out", tmp_path / "t.json", "--render",
                                      tmp_path / "r.mp4")) == (
        f"--render {tmp_path / 'r.mp4'}: one video file for 2 sources; give a folder (each source's overlay goes "
        f"in it as NAME.mp4)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi", "b.avi"]
