"""Fuzzing what posecal reads from users (issue 22): COCO annotation, detection, results and boxes files,
training configs and the Predictor's numbers, generated malformed and extreme by hypothesis (the one profile in
conftest.py: fixed examples, fast on 2 cores). Each input either works or is refused with posecal's one-line
PosecalInputError, never another exception; a bad entry next to good ones costs only itself (one warning line
naming the file), the good ones are still used. Two CLI runs check the exact lines a user sees."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

from posecal.cli.main import main  # noqa: E402
from posecal.data.coco import load_coco_persons, read_coco  # noqa: E402
from posecal.data.box_files import BoxFile  # noqa: E402
from posecal.errors import PosecalInputError  # noqa: E402
from posecal.evaluation.results import evaluate_results, load_results  # noqa: E402
from posecal.training.config import load_train_config  # noqa: E402

from conftest import make_coco, write_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Any JSON/YAML value, with the mistakes seen in real files (numbers as text, null) and extreme numbers.
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6)
           | st.sampled_from(["12.5", "1e-3", "0.9", "", "nan", "Infinity", -1, 0, 1, 2, 3, 1e308, -1e-308]))
JUNK = st.recursive(SCALARS, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=8)
NUMBERS = st.floats() | st.integers(-2**70, 2**70)


def near(n: int):
    """Lists of about the right length: extreme numbers, or numbers with one junk element among them."""
    lengths = st.sampled_from(sorted({max(n - 1, 0), n, n + 1, 3 * n}))
    exact = st.lists(NUMBERS, min_size=n, max_size=n)
    one_bad = st.tuples(st.lists(st.integers(0, 200), min_size=n, max_size=n), st.integers(0, max(n - 1, 0)),
                        SCALARS).map(lambda t: t[0][:t[1]] + [t[2]] + t[0][t[1] + 1:])
    return exact | one_bad | lengths.flatmap(lambda k: st.lists(NUMBERS, min_size=k, max_size=k))


LISTS = {"bbox": near(4), "keypoints": near(51), "keypoint_quality": near(17), "visibility": near(17),
         "keypoint_radius": near(17), "visibility_probs": st.lists(near(3), min_size=16, max_size=18)}


def value_for(field: str):
    return JUNK | LISTS[field] if field in LISTS else JUNK


def outcome(fn):
    """(result or None when refused, warning lines). A refusal must be a PosecalInputError of one line; any
    other exception fails the test as it is."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except PosecalInputError as e:
            assert str(e) and "\n" not in str(e)
            result = None
    lines = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert all("\n" not in ln for ln in lines)
    return result, lines


def mutate(entry: dict, data) -> None:
    """One field of `entry` set to a drawn value, dropped, or a new field added."""
    field = data.draw(st.sampled_from(sorted(entry) + ["extra"]), label="field")
    if data.draw(st.booleans(), label="drop") and field in entry:
        del entry[field]
    else:
        entry[field] = data.draw(value_for(field), label="value")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 4-image COCO set (one person each), results for images 1-3 and a fuzz folder."""
    d = tmp_path_factory.mktemp("fuzz")
    ann, img_dir = make_coco(d / "coco", n_images=4)
    coco = json.loads(ann.read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9,
                "pose_quality": 0.8, "keypoint_quality": [0.5] * 17, "visibility": [2] * 17,
                "visibility_probs": [[0.1, 0.2, 0.7]] * 17, "keypoint_radius": [3.0] * 17, "bbox": a["bbox"]}
               for a in coco["annotations"]]
    return {"dir": d, "ann": ann, "images": img_dir, "coco": coco, "results": results}


def write(base, name: str, value) -> str:
    path = base["dir"] / name
    path.write_text(json.dumps(value))
    return str(path)


GOOD_ANNS = {100, 101, 102}   # the persons of images 1-3; fuzzing touches image 4 and its person only


@given(data=st.data())
def test_fuzzed_coco_annotation_file(base, data):
    coco = copy.deepcopy(base["coco"])
    part = data.draw(st.sampled_from(["annotations", "images", "categories"]), label="part")
    mutate(coco[part][-1], data)
    path = write(base, "ann.json", coco)
    records, lines = outcome(lambda: load_coco_persons(path, base["images"]))
    assert records is not None, "the three good persons were refused with the bad one"
    assert GOOD_ANNS <= {r.ann_id for r in records}
    assert all(ln.startswith(path + ": ") and ln.endswith("; skipped") for ln in lines)
    # what eval and calibrate hand pycocotools: with --skip-invalid the good persons are evaluated, nothing else
    # fails; a strict eval (the default) refuses the file exactly when an entry was skipped
    res = write(base, "res.json", base["results"][:3])
    ev, _ = outcome(lambda: evaluate_results(res, path, base["dir"] / "ev", skip_invalid=True))
    assert ev is not None and ev.metrics["num_matched"] >= 2
    assert ev.metrics["invalid_entries"]["skipped"] == len(lines)
    strict, _ = outcome(lambda: evaluate_results(res, path, base["dir"] / "ev"))
    assert (strict is None) == bool(lines)


@given(value=JUNK)
def test_any_json_value_as_a_coco_file(base, value):
    path = write(base, "any.json", value)
    outcome(lambda: load_coco_persons(path, base["images"]))
    outcome(lambda: read_coco(path))


@given(data=st.data())
def test_fuzzed_detections_file(base, data):
    dets = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9} for i in (1, 2, 3, 4)]
    mutate(dets[-1], data)
    path = write(base, "dets.json", dets)
    records, lines = outcome(lambda: load_coco_persons(base["ann"], base["images"], boxes_file=path))
    assert records is not None and {1, 2, 3} <= {r.image_id for r in records}
    # each line names the bad entry: a field check's own line, or the box check's summary naming it
    assert all(ln.startswith(path + ": ") and "entry 3" in ln for ln in lines)
    boxes, lines = outcome(lambda: BoxFile(path, {1: "img0.jpg", 2: "img1.jpg", 3: "img2.jpg", 4: "img3.jpg"}))
    assert boxes is not None and all(boxes.get(f"img{i}.jpg") is not None for i in range(3))


@given(data=st.data())
def test_fuzzed_per_image_boxes_file(base, data):
    boxes = {"img0.jpg": [[10, 10, 50, 100]], "img1.jpg": [[10, 10, 50, 100, 0.5], [1, 2, 3, 4]]}
    if data.draw(st.booleans(), label="whole entry"):
        boxes["img3.jpg"] = data.draw(JUNK, label="value")
    else:
        boxes["img1.jpg"][1] = data.draw(JUNK | near(5), label="row")
    path = write(base, "boxes.json", boxes)
    box_file, lines = outcome(lambda: BoxFile(path))
    assert box_file is not None
    assert len(box_file.get("img0.jpg")[0]) == 1 and len(box_file.get("img1.jpg")[0]) >= 1
    assert all(ln.startswith(path + ": entry '") for ln in lines)


@given(data=st.data())
def test_fuzzed_results_file(base, data):
    results = copy.deepcopy(base["results"])
    mutate(results[-1], data)
    path = write(base, "results.json", results)
    res, lines = outcome(lambda: load_results(path))
    assert res is not None and len(res.entries) >= 3
    ev, lines = outcome(lambda: evaluate_results(path, base["ann"], base["dir"] / "ev", skip_invalid=True))
    assert ev is not None and ev.metrics["num_matched"] >= 3
    assert all(ln.startswith(path + ": entry 3") for ln in lines)
    assert ev.metrics["invalid_entries"]["skipped"] == len(lines)
    strict, _ = outcome(lambda: evaluate_results(path, base["ann"], base["dir"] / "ev"))   # the default
    assert (strict is None) == bool(lines)


TRAIN_KEYS = ["epochs", "batch_size", "lr", "weight_decay", "threads", "num_workers", "max_minutes", "strategy",
              "min_lr_ratio", "amp_dtype", "data", "augment", "out_dir", "seed", "max_steps"]
MODEL_KEYS = ["input_wh", "backbone", "head_widths", "sigma", "visibility_classes", "input_std", "num_keypoints"]


@given(data=st.data())
def test_fuzzed_training_config(base, data):
    import yaml

    values = {"epochs": 1, "model": {"input_wh": [48, 64]}}
    if data.draw(st.booleans(), label="model field"):
        values["model"][data.draw(st.sampled_from(MODEL_KEYS + ["inptu_wh"]))] = data.draw(JUNK)
    else:
        values[data.draw(st.sampled_from(TRAIN_KEYS + ["epochz"]))] = data.draw(JUNK)
    path = base["dir"] / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    outcome(lambda: load_train_config(path))


@given(raw=st.binary(max_size=60) | st.text(max_size=60))
def test_any_bytes_as_a_training_config(base, raw):
    path = base["dir"] / "raw.yaml"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
    outcome(lambda: load_train_config(path))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"   # the name and bytes of the session's other tiny models:
    return write_tiny_model(path)                          # their one ONNX export (the cache names it by both)


API_NUMBERS = ["batch_size", "threads", "detector_threshold", "min_pose_quality", "orientations"]


@given(name=st.sampled_from(API_NUMBERS), value=JUNK | st.integers(-2**65, 2**65) | st.floats(-2, 2))
def test_fuzzed_predictor_numbers(tiny_model, name, value):
    from posecal.inference.predictor import Predictor

    threads = torch.get_num_threads()
    try:
        predictor, _ = outcome(lambda: Predictor(tiny_model, detector=None, **{name: value}))
    finally:
        torch.set_num_threads(threads)   # a valid `threads` sets torch's, for the whole test session
    if predictor is None:
        return
    from posecal.inference.picture import Picture

    picture = predictor(np.zeros((64, 48, 3), np.uint8))
    assert isinstance(picture, Picture) and isinstance(picture.people, list)


@pytest.mark.parametrize("name, value, message", [
    ("threads", -1, "threads: must be in [1, 1024], got -1"),
    ("batch_size", 0, "batch_size: must be > 0, got 0"),
    ("batch_size", 2.5, "batch_size: expected an integer, got the number 2.5"),
    ("detector_threshold", 1.5, "detector_threshold: must be in [0, 1], got 1.5"),
    ("min_pose_quality", float("nan"), "min_pose_quality: expected a finite number, got nan"),
    ("orientations", 2, "orientations: must be one of 1, 4, auto, got 2"),
])
def test_predictor_numbers_name_the_argument_and_range(tiny_model, name, value, message):
    from posecal.inference.predictor import Predictor

    with pytest.raises(PosecalInputError) as e:
        Predictor(tiny_model, detector=None, **{name: value})
    assert str(e.value) == message


@pytest.mark.slow
def test_cli_eval_results_refuses_or_skips_bad_entries_by_name(tmp_path):
    """In a process of its own, as a user runs it: warnings reach stderr as the CLI prints them."""
    ann, _ = make_coco(tmp_path / "data", n_images=3)
    coco = json.loads(ann.read_text())
    coco["annotations"][2]["bbox"] = None
    ann.write_text(json.dumps(coco))
    entries = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
               for a in coco["annotations"]]
    entries[1]["score"] = "0.9"
    res = tmp_path / "r.json"
    res.write_text(json.dumps(entries))
    bad = [f"{ann}: annotations[2] (id 102): bbox: expected 4 numbers [x, y, w, h], got nothing (null)",
           f"{res}: entry 1 (image_id 2): score: expected a number, got the string '0.9'"]

    def cli(*extra):
        return subprocess.run([sys.executable, "-m", "posecal", "eval", "--results", str(res), "--annotations",
                               str(ann), "--out", str(tmp_path / "o"), *extra], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)
    # strict by default (issue 32): both bad entries named, then the error line; nothing written
    run = cli()
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [f"posecal: {line}" for line in bad] + [
        f"posecal: error: 2 invalid entries in {ann}, {res} (listed above); fix them, or give --skip-invalid to "
        "score the rest (the skipped entries are recorded in metrics.json)"]
    assert not (tmp_path / "o" / "metrics.json").exists()
    run = cli("--skip-invalid")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [f"posecal: {line}; skipped" for line in bad]
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["num_results"] == 2 and metrics["invalid_entries"]["entries"] == bad


def test_cli_predict_boxes_file_with_nothing_usable_is_one_line(tmp_path, tiny_model, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=1)
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps([{"image_id": 1, "bbox": [10, 10, 50, 100], "score": "0.9"}]))
    rc = main(["predict", str(img_dir), "--boxes", str(boxes), "--annotations", str(ann), "--model", str(tiny_model),
               "--out", str(tmp_path / "p.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == f"posecal: error: {boxes}: entry 0 (image_id 1): score: expected a number, got the string '0.9'"
