"""`posecal eval --engine ray` and `posecal audit --engine ray`: their posing (the model on the labelled persons'
boxes) on Ray actors (posecal/inference/record_posing.py), the metrics and findings computed once in the driver.

The map_batches class and the refusals run without Ray; the runs through Ray share one local Ray started with 2 CPUs
(tests/parallel/test_ray_engine.py's fixture) and are slow (Ray starts in 5-20 s): the same metrics.json and findings.json
as one process. They skip without Ray."""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

from conftest import cli_error, make_coco
from posecal.cli.main import main
from posecal.data.coco import load_coco_persons
from posecal.inference.record_posing import POSES, RecordBatches, from_json, to_json
from test_ray_engine import local_ray  # noqa: F401  (the one local Ray of the Ray tests, 2 CPUs)



def same_numbers(a, b, path="") -> None:
    """The same JSON, numbers within float tolerance (metrics are rounded to 3 places)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, (int, float)) and not isinstance(a, bool) and a is not None:
        assert b is not None and abs(a - b) <= 1e-3 + 1e-6 * abs(a), f"{path}: {a} != {b}"
    else:
        assert a == b, path


# ---- no Ray ----

def test_arrays_in_plain_json_keep_dtype_shape_and_bytes():
    values = (np.arange(6, dtype=np.float32).reshape(2, 3) / 7, np.float32(0.1), np.int64(3), np.zeros((0, 17)),
              np.array([np.nan, 1e-30, -0.0], np.float32), np.float64(1 / 3))
    for value in values:
        text = json.dumps(to_json(value))
        assert "__array__" not in text and json.loads(text)["dtype"] == np.asarray(value).dtype.str
        back = from_json(json.loads(text))
        assert np.asarray(back).dtype == np.asarray(value).dtype and np.asarray(back).shape == np.shape(value)
        assert np.asarray(back).tobytes() == np.asarray(value).tobytes()
    assert from_json(to_json({"a": 1.5, "b": "x"})) == {"a": 1.5, "b": "x"}


def test_record_batches_give_what_one_process_gives_and_say_an_unreadable_picture(tmp_path):
    """RecordBatches on rows of pictures (one of them unreadable): per row the persons predict_records gives."""
    from posecal.inference.estimator import predict_records
    from posecal.inference.opener import open_model
    from posecal.calibration.quality import calibration_from_meta

    ann, img_dir = make_coco(tmp_path / "data", n_images=3)
    (img_dir / "img1.jpg").write_text("not a picture")
    records = load_coco_persons(str(ann), str(img_dir))
    opened = open_model("fast", "onnx", True, 1)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        want = predict_records(opened.runner, records, opened.config.input_wh, progress=False,
                               calibration=calibration_from_meta(opened.meta, "fast"), threads=1)
    poser = RecordBatches(model="fast", threads=1)
    batch = {"path": np.array([r.image_path for r in records], dtype=object),
             "records": np.array([json.dumps([{"bbox": [float(v) for v in r.bbox], "score": r.score}])
                                  for r in records], dtype=object)}
    rows = [json.loads(t) for t in poser(batch)[POSES]]
    assert [len(row["people"]) for row in rows] == [1, 0, 1]
    assert rows[1]["messages"] and "img1.jpg" in rows[1]["messages"][0] and not rows[0]["messages"]
    got = [from_json(p) for row in rows for p in row["people"]]
    assert len(got) == len(want.people) == 2
    for g, w in zip(got, want.people):
        np.testing.assert_allclose(g["keypoints"], w.keypoints, atol=1e-3)
        np.testing.assert_allclose(g["visibility_probs"], w.visibility_probs, atol=1e-5)
        np.testing.assert_allclose(g["keypoint_radius"], w.keypoint_radius, atol=1e-3)
        assert abs(g["pose_quality"] - w.pose_quality) < 1e-5
    np.testing.assert_allclose([g["pose_quality"] for g in got], np.clip(want.oks, 0, 1), atol=1e-5)


def test_engine_ray_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError, as where it is not installed
    ann, img_dir = make_coco(tmp_path / "data", n_images=1)
    want = "needs Ray Data (ray is not installed): pip install 'posecal[ray]'"
    for command in ("eval", "audit"):
        line = cli_error(capsys, command, "--annotations", ann, "--images", img_dir, "--out", tmp_path / command,
                         "--model", "fast", "--engine", "ray", "--no-progress")
        assert line == f"posecal {command} --engine ray {want}"
        assert not list((tmp_path / command).glob("*.json"))


def test_ray_options_belong_to_the_ray_engine_and_results_are_read_here(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=1)
    line = cli_error(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", tmp_path / "e",
                     "--workers", "2")
    assert line == "--address and --workers are --engine ray's options"
    line = cli_error(capsys, "audit", "--annotations", ann, "--results", tmp_path / "r.json", "--out", tmp_path / "a",
                     "--engine", "ray")
    assert line.startswith("--engine ray poses persons with a model; posecal audit --results reads a results file")


# ---- through Ray ----

def one_and_ray(tmp_path, command: str, pictures: int, written: tuple[str, ...]) -> None:
    """`command` on a drawn labelled set in one process and through Ray with 2 workers: the same files written
    (seconds aside), and the parts gathered, then removed."""
    ann, img_dir = make_coco(tmp_path / "data", n_images=pictures)
    args = ["--annotations", str(ann), "--images", str(img_dir), "--model", "fast", "--threads", "1", "--no-progress"]
    assert main([command, *args, "--out", str(tmp_path / "one")]) == 0
    assert main([command, *args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    for name in written:
        one, got = (json.loads((tmp_path / d / name).read_text()) for d in ("one", "ray"))
        assert one
        if isinstance(one, dict):
            assert one.pop("seconds") >= 0 and got.pop("seconds") >= 0
        same_numbers(got, one, name)
    assert not list((tmp_path / "ray").glob(".*.parts"))


@pytest.mark.slow
def test_eval_through_ray_gives_the_metrics_of_one_process(tmp_path, local_ray):  # noqa: F811
    one_and_ray(tmp_path, "eval", 6, ("metrics.json", "results.json"))
    assert json.loads((tmp_path / "ray" / "metrics.json").read_text())["num_instances"] == 6


@pytest.mark.slow
def test_audit_through_ray_gives_the_findings_of_one_process(tmp_path, local_ray):  # noqa: F811
    one_and_ray(tmp_path, "audit", 5, ("findings.json",))
