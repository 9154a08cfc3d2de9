"""posecal in scripts and pipelines (issue 32): a metric on exactly the file given or not at all, nobody found is an
empty result, Ctrl-C keeps what was done, and eval in onnxruntime gives PyTorch's numbers. End to end through the
CLI on tiny files each test writes."""
import json
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from posecal.parallel.parts import part_folder, part_path, unit_key

from posecal.errors import PosecalInputError

from conftest import (ROOT, cli_error as error_line, eval_args as evaluate, interrupt_second_estimate, make_coco,
                      run_cli as run)

FIX = "fix it, or give --skip-invalid to score the rest (the skipped entries are recorded in metrics.json)"


def gt_results(ann) -> list[dict]:
    """The GT poses of a COCO file as an estimator's results (eval --results needs no model: fast)."""
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
            for a in json.loads(ann.read_text())["annotations"]]


@pytest.fixture
def gt_set(tmp_path):
    """(annotations file, its data, a results file of its GT poses) for 4 persons."""
    ann, _ = make_coco(tmp_path / "data", n_images=4)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(gt_results(ann)))
    return ann, json.loads(ann.read_text()), res


def _kp_length(d):
    d["annotations"][1]["keypoints"] = d["annotations"][1]["keypoints"][:-3]


def _kp_nan(d):
    d["annotations"][1]["keypoints"][0] = float("nan")


def _kp_string(d):
    d["annotations"][1]["keypoints"][4] = "30"


def _negative_box(d):
    d["annotations"][1]["bbox"] = [10, 10, -40, 80]


def _unknown_image(d):
    d["annotations"][1]["image_id"] = 77


def _no_keypoints(d):
    del d["annotations"][1]["keypoints"]


def _duplicate_annotation(d):
    d["annotations"][1]["id"] = d["annotations"][0]["id"]


def _duplicate_image(d):
    d["images"][1]["id"] = d["images"][0]["id"]


@pytest.mark.parametrize("edit, line", [
    (_kp_length, "annotations[1] (id 101): keypoints: expected 17 x 3 numbers, got a list of 48"),
    (_kp_nan, "annotations[1] (id 101): keypoints[0]: expected a finite number, got nan"),
    (_kp_string, "annotations[1] (id 101): keypoints[4]: expected a number, got the string '30'"),
    (_negative_box, "annotations[1] (id 101): bbox: width and height must be > 0, got [10.0, 10.0, -40.0, 80.0]"),
    (_unknown_image, "annotations[1] (id 101): image_id: no image with id 77 in its images"),
    (_no_keypoints, "annotations[1] (id 101): keypoints: missing (not a keypoint file?)"),
    (_duplicate_annotation, "annotations[1] (id 100): id: the same id as annotations[0]; ids must be unique "
                            "(renumber one of them)"),
    (_duplicate_image, "images[1] (id 1): id: the same id as images[0]; ids must be unique (renumber one of them)"),
])
def test_malformed_ground_truth_is_refused_or_skipped_only_when_told(gt_set, tmp_path, capsys, edit, line):
    ann, data, res = gt_set
    edit(data)
    ann.write_text(json.dumps(data))
    out = tmp_path / "ev"
    args = ["eval", "--results", res, "--annotations", ann, "--out", out]
    # the results of image 2 may then be refused too (their image is gone or ambiguous): one line per bad entry
    rc, _, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2 and f"{ann}: {line}" in lines[0] and lines[-1].startswith("posecal: error: ")
    assert "--skip-invalid" in lines[-1] and not (out / "metrics.json").exists()
    with pytest.warns(UserWarning, match="; skipped"):
        rc, _, _ = run(capsys, *args, "--skip-invalid")
    metrics = json.loads((out / "metrics.json").read_text())
    assert rc == 0 and metrics["invalid_entries"]["rule"] == "skip"
    assert f"{ann}: {line}" in metrics["invalid_entries"]["entries"]
    assert metrics["num_matched"] == 3     # the other three persons, scored


def test_a_refusal_lists_twenty_entries_then_a_count(gt_set, capsys):
    ann, data, res = gt_set
    data["annotations"] += [dict(data["annotations"][0], id=1000 + i, bbox=None) for i in range(25)]
    ann.write_text(json.dumps(data))
    rc, _, err = run(capsys, "eval", "--results", res, "--annotations", ann, "--out", ann.parent / "ev")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 22
    assert lines[0] == (f"posecal: {ann}: annotations[4] (id 1000): bbox: expected 4 numbers [x, y, w, h], "
                        "got nothing (null)")
    assert lines[20] == "posecal: ... and 5 more"
    assert lines[21] == (f"posecal: error: 25 invalid entries in {ann} (listed above); fix them, or give "
                         "--skip-invalid to score the rest (the skipped entries are recorded in metrics.json)")


def test_a_valid_file_is_scored_as_before_with_nothing_skipped(gt_set, tmp_path, capsys):
    ann, _, res = gt_set
    assert run(capsys, "eval", "--results", res, "--annotations", ann, "--out", tmp_path / "ev")[0] == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["invalid_entries"] == {"rule": "refuse", "skipped": 0, "entries": []}
    assert metrics["ap"]["score"] == 100.0


def test_a_box_far_outside_an_image_of_unknown_size_is_named(tiny_model, coco, tmp_path, capsys):
    """The annotations give no image size: the box is judged against the image's header, before any model runs."""
    ann, img_dir = coco
    data = json.loads(ann.read_text())
    for im in data["images"]:
        del im["width"], im["height"]
    ann.write_text(json.dumps(data))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9},
                                {"image_id": 2, "bbox": [5000, 5000, 60, 100], "score": 0.9}]))
    assert error_line(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets)) == (
        f"{dets}: entry 1 (image_id 2): bbox: [5000.0, 5000.0, 60.0, 100.0] lies outside the 120x160 image; {FIX}")


# --- empty is valid

def test_eval_with_an_empty_detections_file_is_an_empty_result_and_ap_0(tiny_model, coco, tmp_path, capsys):
    ann, img_dir = coco
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    with pytest.warns(UserWarning, match="no detections .* every GT person counts as missed"):
        rc, out, _ = run(capsys, *evaluate(tiny_model, ann, img_dir, tmp_path / "ev", "--boxes", dets))
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert rc == 0 and json.loads((tmp_path / "ev" / "results.json").read_text()) == []
    assert metrics["ap"]["oks"] == 0 and metrics["num_gt_persons"] == 3 and "0 persons" in out


@pytest.mark.parametrize("content, reason", [("[]", "an empty list"), ("{}", "an empty object"),
                                             ('[{"image_id": 1, "category_id": 3, "bbox": [1, 1, 9, 9]}]',
                                              "no person detections (category_id 1)")])
def test_predict_with_a_boxes_file_of_nobody_writes_an_empty_result(tiny_model, coco, tmp_path, capsys, content,
                                                                    reason):
    ann, img_dir = coco
    boxes = tmp_path / "b.json"
    boxes.write_text(content)
    out = tmp_path / "p.json"
    rc, _, err = run(capsys, "predict", img_dir, "--boxes", boxes, "--annotations", ann, "--model", tiny_model,
                     "--out", out, "--no-progress")
    assert rc == 0 and json.loads(out.read_text()) == []
    assert err.strip().splitlines() == [f"posecal: {boxes}: {reason}: nobody in any image; the results will be empty"]


def test_predict_and_track_without_people_write_empty_results(tmp_path, capsys):
    """The shipped detector on a plain grey picture and a plain grey video: nobody, and an empty file."""
    cv2.imwrite(str(tmp_path / "blank.jpg"), np.full((240, 320, 3), 90, np.uint8))
    rc, _, err = run(capsys, "predict", tmp_path / "blank.jpg", "--out", tmp_path / "p.json", "--model", "fast",
                     "--no-progress", "--backend", "torch")
    assert rc == 0 and json.loads((tmp_path / "p.json").read_text()) == []
    assert "found nobody" in err or "none kept as a person" in err   # no box, or boxes the person rule dropped
    video = cv2.VideoWriter(str(tmp_path / "blank.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(6):
        video.write(np.full((240, 320, 3), 90, np.uint8))
    video.release()
    rc, out, _ = run(capsys, "track", tmp_path / "blank.avi", "--out", tmp_path / "t.json", "--no-progress",
                     "--backend", "torch")
    assert rc == 0 and json.loads((tmp_path / "t.json").read_text()) == [] and "0 track(s)" in out


# --- Ctrl-C in predict

@pytest.mark.slow
def test_interrupted_predict_says_so_and_keeps_the_inputs_done(tiny_model, coco, tmp_path, capsys, monkeypatch):
    _, img_dir = coco
    interrupt_second_estimate(monkeypatch)
    out = tmp_path / "p.json"
    rc, _, err = run(capsys, "predict", img_dir, "--model", tiny_model, "--out", out, "--no-progress",
                     "--detector", "none", "--min-pose-quality", "0", "--batch-size", "1", "--backend", "torch")
    assert rc == 130 and not out.exists()   # the finished input's part is kept; the results file when whole
    assert err.strip().splitlines()[-1] == (
        f"posecal: interrupted: the results of 1 of 3 input(s) are kept in {part_folder(out)}; the same command "
        f"again goes on from there ({out} is written when every input is done)")
    kept = json.loads(part_path(part_folder(out), unit_key(img_dir / "img0.jpg", "img0.jpg")).read_text())
    assert [(r["name"], len(r["entries"])) for r in kept] == [("img0.jpg", 1)]


def test_predict_interrupted_before_anything_was_done_writes_nothing(tiny_model, coco, tmp_path, capsys,
                                                                     monkeypatch):
    from posecal.inference.predictor import Predictor

    def interrupted(self, items, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(Predictor, "estimate", interrupted)
    out = tmp_path / "p.json"
    rc, _, err = run(capsys, "predict", coco[1], "--model", tiny_model, "--out", out, "--no-progress",
                     "--detector", "none", "--backend", "torch")
    assert rc == 130 and not out.exists()
    assert err.strip() == f"posecal: interrupted: none of the 3 input(s) was done; nothing written to {out}"


@pytest.mark.slow
def test_a_real_sigint_in_predict_exits_130_with_one_line(tiny_model, tmp_path):
    """SIGINT in a real process, as a terminal's Ctrl-C, sent once the first record is out: no traceback, exit
    130, one line, and the records written before it parse. The run's inputs never end (its three pictures come
    round again and again), so only the signal ends it: however fast the machine, the signal lands mid-run."""
    img_dir = tmp_path / "few"
    img_dir.mkdir()
    for i in range(3):
        cv2.imwrite(str(img_dir / f"p{i}.png"), np.full((120, 160, 3), 60 * i, np.uint8))
    code = ("import itertools, sys, posecal.predict.batches as batches; from posecal.cli.main import main\n"
            "real = batches.iter_frames\n"
            "def endless(files, every=1):\n"
            "    frames = list(real(files, every))\n"
            "    for k in itertools.count():\n"
            "        yield frames[k % len(frames)]\n"
            "batches.iter_frames = endless\n"
            "print('ready', flush=True)\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "predict", str(img_dir), "--model", str(tiny_model),
                             "--out", "-", "--detector", "none", "--min-pose-quality", "0",
                             "--batch-size", "1", "--backend", "torch", "--threads", "1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        first = proc.stdout.readline()          # the first picture's record: the run is under way, and has no end
        assert json.loads(first)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 130 and last.startswith("posecal: interrupted"), err
    records = [json.loads(line) for line in (first + rest).splitlines() if line.strip()]
    assert len(records) >= 1             # what was written before the signal is whole, line by line


# --- small ones

def test_training_refuses_an_unused_loss_and_unbounded_workers(tmp_path, capsys):
    from conftest import write_train_config

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    cfg = write_train_config(tmp_path, ann, img_dir, batch_size=2, max_steps=1)
    base = cfg.read_text()
    model = next(line for line in base.splitlines() if line.startswith("model:"))
    cfg.write_text(base.replace(model, "model: {backbone: movenet_lightning, input_wh: [192, 192], imagenet: false}")
                   + "lambda_integral: 0.1\n")
    assert "lambda_integral is an integral loss on heatmaps, which a MoveNet model (movenet_lightning) does " \
           "not train" in error_line(capsys, "train", cfg, "--no-progress")
    cfg.write_text(base + "num_workers: 100000\n")
    assert error_line(capsys, "train", cfg, "--no-progress").endswith("num_workers: must be in [0, 64], got 100000")


def test_a_cut_calibrator_is_refused_in_one_line(tmp_path, capsys):
    from posecal.calibration.quality import QualityCalibration
    from posecal.calibration.conformal import ConformalRadii
    from posecal.calibration.maps import IsotonicMap

    ann, _ = make_coco(tmp_path / "data", n_images=12)   # a fit needs 10 persons
    res = tmp_path / "r.json"
    res.write_text(json.dumps(gt_results(ann)))
    cal_file = tmp_path / "cal.json"
    assert run(capsys, "calibrate", "fit", "--results", res, "--annotations", ann, "--out", cal_file)[0] == 0
    cal = json.loads(cal_file.read_text())
    for part, cut in (("keypoint_maps", "labelled_maps has 17 entries, keypoint_maps 16"),
                      ("occluded_share", "occluded_share has 16 entries, keypoint_maps 17")):
        bad = dict(cal, **{part: cal[part][:-1]})
        cal_file.write_text(json.dumps(bad))
        line = error_line(capsys, "calibrate", "apply", "--calibrator", cal_file, "--results", res,
                          "--out", tmp_path / "c.json")
        assert line.startswith(f"{cal_file}: calibrator is damaged") and cut in line
    # the calibration stored in a model file: one temperature and one radius row per keypoint map
    maps = [IsotonicMap(np.array([0.0, 1.0]), np.array([0.0, 1.0]))] * 17
    good = QualityCalibration(maps, maps[0], np.ones(17), ConformalRadii(0.9, np.zeros((17, 1)), np.ones((17, 2))),
                              {}).to_dict()
    assert len(QualityCalibration.from_dict(good).keypoint_maps) == 17
    with pytest.raises(ValueError, match="visibility_temperature has 16 entries, keypoint_maps 17"):
        QualityCalibration.from_dict(dict(good, visibility_temperature=[1.0] * 16))


# --- eval in onnxruntime

@pytest.mark.slow
def test_eval_in_onnxruntime_gives_pytorchs_numbers(tiny_model, coco, tmp_path, capsys):
    ann, img_dir = coco
    runs = {}
    for backend in ("onnx", "torch"):
        out = tmp_path / backend
        assert run(capsys, *evaluate(tiny_model, ann, img_dir, out, "--backend", backend))[0] == 0
        runs[backend] = (json.loads((out / "results.json").read_text()), json.loads((out / "metrics.json").read_text()))
    (onnx_res, onnx_m), (torch_res, torch_m) = runs["onnx"], runs["torch"]
    assert onnx_m["backend"] == "onnx" and torch_m["backend"] == "torch"
    assert [r["image_id"] for r in onnx_res] == [r["image_id"] for r in torch_res]
    for a, b in zip(onnx_res, torch_res):
        assert np.allclose(a["keypoints"], b["keypoints"], atol=0.02)
        assert abs(a["pose_quality"] - b["pose_quality"]) < 1e-3
        assert np.allclose(a["visibility_probs"], b["visibility_probs"], atol=1e-3)
    for key in ("ap", "ar"):
        assert onnx_m[key] == pytest.approx(torch_m[key], abs=0.5)


def test_eval_refuses_a_bad_file_before_exporting_or_loading_a_model(gt_set, tmp_path, capsys, monkeypatch):
    """The inputs are read first: a refused file costs no export (20-30 s for a real model)."""
    import posecal.export.cache as cache

    def no_export(*a, **k):
        raise AssertionError("the model was exported")
    monkeypatch.setattr(cache, "cached_onnx", no_export)
    ann, data, _ = gt_set
    data["annotations"][0]["bbox"] = None
    ann.write_text(json.dumps(data))
    line = error_line(capsys, "eval", "--annotations", ann, "--images", ann.parent / "images", "--out",
                      tmp_path / "ev", "--model", "fast")
    assert line.startswith(f"{ann}: annotations[0] (id 100): bbox:") and line.endswith(FIX)


def test_api_refuses_what_is_not_a_picture_in_one_line(tiny_model):
    from posecal.inference.predictor import Predictor

    p = Predictor(tiny_model, detector=None)
    with pytest.raises(PosecalInputError, match="got bytes"):
        p(b"\x89PNG not decoded")
