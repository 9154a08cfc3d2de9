"""eval's and audit's posing (posecal/inference/record_posing.py): one settings form, the model opened once per
process, each picture's records posed through the PosePipeline predict runs (boxes given), in this process or
through the runner, each picture's part holding its persons exactly and compactly. Here, without Ray."""
import dataclasses
import json
import sys

import numpy as np
import pytest

from conftest import COCO_CROPS, make_coco, run_cli, val_subset
from posecal.inference.record_posing import (POSES, RecordBatches, RecordPosing, from_json, opened_posing,
                                             pose_records, record_predictor)


def with_two_people_in_one_picture(ann) -> None:
    """The drawn set's first picture given a second labelled person (its box cut to its upper 60 %), so that a
    picture's boxes are posed together."""
    data = json.loads(ann.read_text())
    first = data["annotations"][0]
    x, y, w, h = first["bbox"]
    data["annotations"].insert(1, dict(first, id=999, bbox=[x, y, w, 0.6 * h], area=0.3 * w * h))
    ann.write_text(json.dumps(data))


def counted_opens(monkeypatch) -> list:
    """Every call of the one model opener (inference/opener.open_model), wherever a posecal module imported it."""
    from posecal.inference import opener

    real, calls = opener.open_model, []

    def counting(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("model"))
        return real(*args, **kwargs)
    for name, module in list(sys.modules.items()):
        if name.startswith("posecal") and getattr(module, "open_model", None) is real:
            monkeypatch.setattr(module, "open_model", counting)
    return calls


def pipeline_origins(monkeypatch) -> list:
    """The box origins of every picture PosePipeline.people is handed, call by call."""
    from posecal.inference.pipeline import PosePipeline

    real, calls = PosePipeline.people, []

    def people(self, items, *args, **kwargs):
        calls.append([list(np.broadcast_to(np.asarray(o, object), (len(b),))) for _, b, _, o in items])
        return real(self, items, *args, **kwargs)
    monkeypatch.setattr(PosePipeline, "people", people)
    return calls


def direct_figures(ann, img_dir, model: str) -> tuple[float, dict]:
    """eval's AP (pose quality) and trust figures computed from the estimator called directly on the records
    (Estimator.estimate_records: no pipeline, no runner, no parts)."""
    from posecal.calibration.quality import calibration_from_meta
    from posecal.data.coco import load_coco_persons, read_coco
    from posecal.evaluation.evaluate import trust_report
    from posecal.inference.estimator import predict_records
    from posecal.inference.opener import open_model
    from posecal.inference.scoring import keypoint_confidence, pose_scores
    from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt

    opened = open_model(model, "onnx", True, 1, precision="float")
    pred = predict_records(opened.runner, load_coco_persons(ann, img_dir), opened.config.input_wh, progress=False,
                           calibration=calibration_from_meta(opened.meta, model), threads=1)
    scores = pose_scores(pred)
    ap = coco_keypoint_ap(load_coco_gt(read_coco(ann)), coco_keypoint_results(
        [r.image_id for r in pred.records], pred.keypoints, keypoint_confidence(pred), scores["oks"]))
    return round(ap["ap"], 3), json.loads(json.dumps(trust_report(pred, scores), default=float))


TRUST = ("pose_score_ece", "pose_score_pearson", "keypoint_ece", "visibility", "mapk", "errors")


def assert_same_figures(metrics: dict, report: dict) -> None:
    """metrics.json's trust figures are the report's (metrics.json adds figures of its results file beside them)."""
    for key in TRUST:
        got = metrics[key]
        if isinstance(report[key], dict):
            got = {k: v for k, v in got.items() if k in report[key]}
        assert got == report[key], key


def posed_by(command: str, pictures: int, tmp_path, capsys, monkeypatch) -> tuple[tuple, list, list]:
    """`posecal COMMAND` (eval or audit, one process) with `fast` on a drawn set of `pictures` (the first with two
    people): (the set, the models opened, the box origins PosePipeline.people was handed per call)."""
    ann, img_dir = make_coco(tmp_path / "data", n_images=pictures)
    with_two_people_in_one_picture(ann)
    opens, origins = counted_opens(monkeypatch), pipeline_origins(monkeypatch)
    rc, _, _ = run_cli(capsys, command, "--annotations", ann, "--images", img_dir, "--out", tmp_path / command,
                       "--model", "fast", "--precision", "float", "--threads", "1", "--no-progress")
    assert rc == 0
    return (ann, img_dir), opens, origins


def test_eval_poses_given_boxes_through_the_pipeline_opening_the_model_once(tmp_path, capsys, monkeypatch):
    (ann, img_dir), opens, origins = posed_by("eval", 3, tmp_path, capsys, monkeypatch)
    assert opens == ["fast"]                                   # the driver and its worker: one model
    assert origins == [[["given", "given"], ["given"], ["given"]]]   # 3 pictures, one batch, every box given
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_instances"] == 4
    ap, report = direct_figures(ann, img_dir, "fast")
    assert metrics["ap"]["oks"] == ap
    assert_same_figures(metrics, report)
    assert record_predictor.cache_info().currsize == 0         # let go when the run is done


def test_audit_poses_given_boxes_through_the_pipeline_opening_the_model_once(tmp_path, capsys, monkeypatch):
    _, opens, origins = posed_by("audit", 2, tmp_path, capsys, monkeypatch)
    assert (tmp_path / "audit" / "findings.json").is_file()
    assert opens == ["fast"] and origins == [[["given", "given"], ["given"]]]


def test_eval_on_real_pictures_gives_the_estimators_figures_staged(tmp_path, capsys):
    """accurate poses in two stages (a look, then its refinement) in the pipeline; on upright people eval's figures
    are those of the estimator's single flip pass on the same crops (an upside-down person's visibility is judged
    from the look in the pipeline, as predict reports it)."""
    if not COCO_CROPS.is_dir():
        pytest.skip("../shared data not available")
    ann, _ = val_subset(tmp_path, 4)
    img_dir = COCO_CROPS / "images"
    rc, _, _ = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", tmp_path / "e",
                       "--model", "accurate", "--precision", "float", "--threads", "1", "--no-progress")
    assert rc == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    ap, report = direct_figures(ann, img_dir, "accurate")
    assert metrics["ap"]["oks"] == ap
    assert_same_figures(metrics, report)


def test_a_picture_part_holds_its_people_exactly_in_base64(tmp_path):
    """A part holds each person's PersonPose fields that are not defaults, float arrays as base64 of their bytes:
    read back bit for bit, at under 2.5 KB a person (their decimal JSON took 3.9 KB)."""
    from posecal.data.images import read_image
    from posecal.inference.pipeline import GIVEN

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    with_two_people_in_one_picture(ann)
    data = json.loads(ann.read_text())
    boxes = [[a["bbox"] for a in data["annotations"] if a["image_id"] == im["id"]] for im in data["images"]]
    paths = [str(img_dir / im["file_name"]) for im in data["images"]] + [str(img_dir / "missing.jpg")]
    boxes.append([[1.0, 1.0, 20.0, 40.0]])
    batch = {"path": np.array(paths, dtype=object),
             "records": np.array([json.dumps([{"bbox": b, "score": 1.0} for b in bs]) for bs in boxes],
                                 dtype=object)}
    posing = RecordPosing("fast", threads=1, precision="float")
    with opened_posing(posing) as predictor:
        texts = RecordBatches(**dataclasses.asdict(posing))(batch)[POSES]
        want = predictor.pipeline.people([(read_image(p), np.array(b, float), np.ones(len(b)), GIVEN)
                                          for p, b in zip(paths[:2], boxes[:2])])
    rows = [json.loads(t) for t in texts]
    assert [len(r["people"]) for r in rows] == [2, 1, 0]
    assert not rows[0]["messages"] and "missing.jpg" in rows[2]["messages"][0]
    assert sum(map(len, texts)) / 3 < 2500
    for row, people in zip(rows, want):
        for got, person in zip(row["people"], people):
            assert set(got) == {"box", "keypoints", "keypoint_quality", "heatmap_scores", "pose_quality", "visibility",
                                "visibility_probs", "scores", "keypoint_radius", "in_frame"}
            assert all("b64" in got[k] for k in ("keypoints", "visibility_probs", "keypoint_radius"))
            back = from_json(got)
            for name, value in back.items():
                expected = getattr(person, name)
                if isinstance(value, np.ndarray):
                    assert value.dtype == expected.dtype, name
                    assert value.tobytes() == expected.tobytes(), name
                else:
                    assert value == expected, name


def test_one_settings_form_one_posing_object_per_process():
    posing = RecordPosing(model="fast", threads=1, calibrated=False, decode="argmax", orientations=4, batch_size=5,
                          precision="float")
    with opened_posing(posing) as predictor:
        worker = RecordPosing(**dataclasses.asdict(posing))   # the settings a worker is handed
        assert record_predictor(worker) is predictor
        est = predictor.estimator
        assert (est.batch_size, est.orientations, est.decode_method, est.flip, est.calibration) == (5, 4, "argmax",
                                                                                                    True, None)
        assert predictor.detector is None and predictor.verifier is None
    assert record_predictor.cache_info().currsize == 0


def test_a_model_file_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert RecordPosing("m.onnx").model == str(tmp_path / "m.onnx")
    assert RecordPosing("fast").model == "fast" and RecordPosing().model is None


def test_in_this_process_and_through_the_runner_the_same_predictions(tmp_path):
    from posecal.data.coco import load_coco_persons
    from posecal.parallel.runner import OneProcess

    ann, img_dir = make_coco(tmp_path / "data", n_images=5)
    with_two_people_in_one_picture(ann)
    records = load_coco_persons(ann, img_dir)
    posing = RecordPosing("fast", threads=1, precision="float")
    with opened_posing(posing):
        here = pose_records(records, posing, None, tmp_path / "a.json", progress=False)
        runner = pose_records(records, posing, OneProcess(), tmp_path / "b.json", progress=False)
    assert here.calibrated and runner.calibrated and len(here.records) == len(runner.records) == 6
    assert [r.ann_id for r in here.records] == [r.ann_id for r in runner.records]
    for name in ("keypoints", "heatmap_scores", "oks", "opks", "visibility_probs", "keypoint_radius", "in_frame"):
        np.testing.assert_array_equal(getattr(here, name), getattr(runner, name), err_msg=name)
    np.testing.assert_array_equal(here.oks, [p.pose_quality for p in here.people])


def test_uncalibrated_eval_keeps_the_pose_quality_score_mode(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    rc, _, _ = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", tmp_path / "e",
                       "--model", "fast", "--threads", "1", "--no-progress", "--no-calibration")
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert rc == 0 and not metrics["calibrated"] and {"oks", "opks", "heatmap"} <= set(metrics["ap"])
