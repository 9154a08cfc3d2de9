"""Bad boxes and interrupted training, end to end on tiny files each test writes: implausible boxes, messages that
name the fix, and training that is interrupted or has nobody to train on. Each user mistake is one exact line
(`posecal: error: ...`, exit 2) or one summary line while the run goes on; never a traceback."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


from conftest import ROOT, cli_error as error_line, eval_args as evaluate, make_coco, run_cli as run, \
    train_one_step, write_train_config



# --- implausible boxes: skipped or clipped, one line per image / per boxes file naming the entries

@pytest.mark.slow
def test_predict_boxes_skips_and_clips_with_one_line_per_image(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    boxes = tmp_path / "boxes.json"
    # Python's json writes NaN and Infinity literals, which json.loads reads back: a real way such boxes arrive
    boxes.write_text(json.dumps({"img0.jpg": [[10, 10, 60, 100], [10, 10, 0.001, 90], [500, 500, 20, 20],
                                              [10, 10, float("nan"), 90], [10, 10, -40, 90],
                                              [10, 10, float("inf"), 90], [-30, 100, 80, 100]]}))
    out = tmp_path / "res.json"
    rc, _, err = run(capsys, "predict", img_dir / "img0.jpg", "--boxes", boxes, "--model", tiny_model, "--out", out,
                     "--no-progress", "--backend", "torch")   # about the boxes: no ONNX export
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("posecal: ")]
    # the non-finite boxes 3 and 5 are refused by the file's field check (data/schema.py), each in its own line
    # (a warning, which pytest records); the plausibility check judges the other five
    assert lines == [
        "posecal: img0.jpg: boxes.json: skipped 3 of 5 box(es): box 1 [10.0, 10.0, 0.0, 90.0] is under 1 px "
        "(0.001 x 90), box 2 [500.0, 500.0, 20.0, 20.0] lies outside the 120x160 image, box 4 [10.0, 10.0, -40.0, "
        "90.0] has zero or negative size; clipped 1 to the 120x160 image: box 6 [-30.0, 100.0, 80.0, 100.0] -> "
        "[0.0, 100.0, 50.0, 60.0]"]
    results = json.loads(out.read_text())
    assert [r["bbox"] for r in results] == [[10, 10, 60, 100], [0, 100, 50, 60]]


def test_eval_detections_skips_and_clips_with_one_line_per_file(tiny_model, coco, tmp_path, capsys):
    ann, img_dir = coco
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 0.001, 0.001], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [300, 10, 60, 100], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, float("nan"), 100], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [90, 100, 60, 100], "score": 0.9}]))
    # by default eval is strict (issue 32): the three bad boxes refuse the file, each named, before any model runs
    rc, _, err = run(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets))
    bad = [f"{dets}: entry 3 (image_id 2): bbox[2]: expected a finite number, got nan",
           f"{dets}: entry 1 (image_id 1): bbox: [10.0, 10.0, 0.001, 0.001] is under 1 px (0.001 x 0.001)",
           f"{dets}: entry 2 (image_id 2): bbox: [300.0, 10.0, 60.0, 100.0] lies outside the 120x160 image"]
    assert rc == 2 and err.strip().splitlines() == [f"posecal: {line}" for line in bad] + [
        f"posecal: error: 3 invalid entries in {dets} (listed above); fix them, or give --skip-invalid to score "
        "the rest (the skipped entries are recorded in metrics.json)"]
    assert not (tmp_path / "ev" / "metrics.json").exists()
    with pytest.warns(UserWarning) as caught:   # the CLI prints posecal's warnings as `posecal: MESSAGE`
        rc, out, err = run(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets,
                                             "--skip-invalid"))
    assert rc == 0
    # the NaN box is refused by the file's field check (data/schema.py) in its own line; the rest are judged as boxes
    assert [str(w.message) for w in caught] == [
        f"{dets}: entry 3 (image_id 2): bbox[2]: expected a finite number, got nan; skipped",
        f"{dets}: skipped 2 of 4 person boxes: entry 1 (image_id 1) is under 1 px (0.001 x 0.001), "
        "entry 2 (image_id 2) lies outside the 120x160 image; clipped 1 to their image: entry 4 (image_id 3)"]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["num_instances"] == 2
    assert metrics["invalid_entries"] == {"rule": "skip", "skipped": 3, "entries": bad}
    assert "Skipped entries" in (tmp_path / "ev" / "report.html").read_text()
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [1, 3]


# --- messages that name the fix

def test_unknown_image_id_names_the_annotations_file(tiny_model, coco, tmp_path, capsys):
    ann, img_dir = coco
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9},
                                {"image_id": 99, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9}]))
    line = (f"{dets}: entry 1 (image_id 99): image_id(s) 99 not in {ann}; give the annotations file these "
            f"detections were made on")
    # beside usable detections: refused by a strict eval, skipped with that line by --skip-invalid and predict;
    # when none is usable: refused with it (the CLI prints posecal's warnings as `posecal: MESSAGE`; pytest
    # records them instead)
    assert error_line(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets)) == (
        f"{dets}: entry 1 (image_id 99): image_id: not an image of {ann} (detections made for another annotations "
        "file?); fix it, or give --skip-invalid to score the rest (the skipped entries are recorded in metrics.json)")
    with pytest.warns(UserWarning) as caught:
        rc, _, _ = run(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets, "--skip-invalid"))
    assert rc == 0 and f"{line}; skipped" in [str(w.message) for w in caught]
    with pytest.warns(UserWarning) as caught:
        rc, _, _ = run(capsys, "predict", img_dir, "--boxes", dets, "--annotations", ann, "--model", tiny_model,
                       "--out", tmp_path / "p.json", "--no-progress")
    assert rc == 0 and f"{line}; skipped" in [str(w.message) for w in caught]
    dets.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9}]))
    line = line.replace("entry 1", "entry 0")
    assert error_line(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets)) == line
    assert error_line(capsys, "predict", img_dir, "--boxes", dets, "--annotations", ann, "--model", tiny_model,
                      "--out", tmp_path / "p.json", "--no-progress") == line


# --- training with nobody to train on, and Ctrl-C

def test_training_set_without_usable_persons_is_one_line(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        a["num_keypoints"] = 0
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(data))
    cfg = write_train_config(tmp_path, empty, img_dir, batch_size=2, max_steps=1)
    cfg.write_text(cfg.read_text().replace(f"val_annotations: {empty}", f"val_annotations: {ann}"))
    assert error_line(capsys, "train", cfg, "--no-progress") == (
        f"{empty}: no usable person to train on (a person needs labelled keypoints and iscrowd 0); check "
        f"data.train_annotations")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.fixture(scope="module")
def trained_base(tmp_path_factory):
    """A finished 1-step run (run/last.pt at step 1), trained once for the module."""
    base = tmp_path_factory.mktemp("trained")
    train_one_step(base)
    return base


@pytest.fixture
def trained_once(trained_base, tmp_path):
    """A copy of that run in tmp_path, and its config set to go on for 5 more steps."""
    shutil.copytree(trained_base, tmp_path, dirs_exist_ok=True)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(cfg.read_text().replace(str(trained_base), str(tmp_path)).replace("epochs: 1", "epochs: 3")
                   .replace("max_steps: 1", "max_steps: 6"))
    return cfg, tmp_path / "run"


def _checkpoint_step(last: Path) -> int:
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    return ckpt["state"]["step"]


@pytest.mark.parametrize("nth_save", [1, 2])
@pytest.mark.slow
def test_ctrl_c_during_a_checkpoint_write_keeps_the_previous_one(trained_once, capsys, monkeypatch, nth_save):
    """Ctrl-C while torch.save is writing last.pt: the write is abandoned (its temp file removed), the previous
    last.pt still loads, and the CLI says which checkpoint is the last complete one, in one line."""
    import posecal.models.checkpoint as checkpoint

    cfg, out = trained_once
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == nth_save and "optim" in obj:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        return real(obj, f, *a, **k)
    monkeypatch.setattr(checkpoint.torch, "save", save)
    before = _checkpoint_step(out / "last.pt")
    rc, _, err = run(capsys, "train", cfg, "--resume", "--no-progress")
    assert rc == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posecal: interrupted: last complete checkpoint is "
                                                   f"{out / 'last.pt'}"), err
    assert _checkpoint_step(out / "last.pt") >= before          # the previous complete checkpoint, loadable
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_ctrl_c_at_random_moments_leaves_a_loadable_checkpoint(trained_once):
    """A real SIGINT (Ctrl-C) in a real run, in its own process, at random moments around its checkpoint writes
    (just after the k-th epoch's log line, which comes right before that epoch's save): exit 130 with one line,
    and last.pt loads whatever the moment (a write under way finishes first: interrupts_deferred)."""
    cfg, out = trained_once
    first = (out / "last.pt").read_bytes()
    rng = np.random.default_rng(22)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # the moments are counted from when the imports are done: Ctrl-C during `import torch` is Python's, not posecal's
    code = ("import sys, posecal.training.train; from posecal.cli.main import main; print('ready', flush=True); "
            "sys.exit(main(sys.argv[1:]))")
    for k, delay in zip(rng.integers(1, 3, size=2), rng.uniform(0.0, 0.3, size=2)):
        (out / "last.pt").write_bytes(first)             # each run goes on from step 1
        proc = subprocess.Popen([sys.executable, "-c", code, "train", str(cfg), "--resume", "--no-progress"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout.readline().strip() == "ready"
        epochs = 0
        while epochs < k:
            line = proc.stdout.readline()
            if not line:
                break
            epochs += line.startswith("{")
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        # the run ended and Python was shutting down when the signal came: Python's own message, not posecal's
        at_shutdown = err.startswith("Exception ignored in") and err.strip().endswith("KeyboardInterrupt:") \
            and str(ROOT / "posecal") not in err
        assert at_shutdown or "Traceback" not in err, err
        if at_shutdown or proc.returncode == -signal.SIGINT:
            pass   # the run was ending when the signal came (Python's own handler was back): nothing of posecal's
        elif proc.returncode == 130:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("posecal: interrupted: last complete checkpoint is "
                                                           f"{out / 'last.pt'}"), err
        else:
            assert proc.returncode == 0, err    # the run ended before the signal came
        assert _checkpoint_step(out / "last.pt") >= 1     # loads
        assert not list(out.glob(".*.tmp"))


# --- --resume reads last.pt as weights and plain values only (torch.load weights_only=True)

def test_resume_goes_on_from_last_pt_at_its_step(trained_once, capsys):
    cfg, out = trained_once
    rc, stdout, err = run(capsys, "train", cfg, "--resume", "--no-progress")
    assert rc == 0, err
    assert f"resumed from {out / 'last.pt'} at epoch 1, step 1" in stdout
    assert _checkpoint_step(out / "last.pt") > 1


class _Planted:
    """Pickled as a call of Path.touch on a marker file: loading it with weights_only=False runs that call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_last_pt_holding_code_is_refused_without_running_it(trained_once, capsys, tmp_path):
    cfg, out = trained_once
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    marker = tmp_path / "code-ran"
    ckpt["state"]["planted"] = _Planted(marker)
    torch.save(ckpt, out / "last.pt")
    line = error_line(capsys, "train", cfg, "--resume", "--no-progress")
    assert line.startswith(f"{out / 'last.pt'}: refused: it holds Python objects beyond weights"), line
    assert not marker.exists()
