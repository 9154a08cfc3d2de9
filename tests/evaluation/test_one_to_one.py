"""End-to-end scoring of reported poses (posecal/evaluation/one_to_one.py, `posecal eval --detector`): a drawn
scene with a duplicate, a pose on nobody and a person nobody posed, scored by hand; the CLI end to end."""
import json

import numpy as np
import pytest

from posecal.evaluation.one_to_one import one_to_one

from conftest import STANDING, make_coco, run_cli


def entry(image_id: int, xy: np.ndarray, q: float) -> dict:
    lo, hi = xy.min(0), xy.max(0)
    return {"image_id": image_id, "keypoints": np.c_[xy, np.ones(17)].ravel().tolist(), "score": q,
            "pose_quality": q, "bbox": [*lo, *(hi - lo)]}


def person(image_id: int, xy: np.ndarray) -> dict:
    lo, hi = xy.min(0), xy.max(0)
    return {"id": len(xy) + image_id * 10 + int(xy[0, 0]), "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": np.c_[xy, np.full(17, 2)].ravel().tolist(), "bbox": [*lo, *(hi - lo)],
            "area": float((hi - lo).prod())}


def test_a_drawn_scene_scored_one_to_one_by_hand():
    """Picture 1: people A and B; poses: A exactly (Q 0.9), A again (Q 0.6: the duplicate, scored 0), one on
    nobody (Q 0.5: not scored). Picture 2: person C, posed by nobody. Scored: (0.9, 1) and (0.6, 0): ECE (15 bins)
    = (0.1 + 0.6) / 2; found with a right pose: A of A, B, C; one confident pose, right."""
    a, b, c = STANDING, STANDING + [150, 0], STANDING
    nobody = STANDING + [0, 400]
    truth = {"images": [{"id": 1, "width": 400, "height": 600}, {"id": 2, "width": 200, "height": 200}],
             "annotations": [person(1, a), person(1, b), person(2, c)]}
    entries = [entry(1, a, 0.9), entry(1, a + 0.5, 0.6), entry(1, nobody, 0.5)]
    got = one_to_one(entries, np.array([0.9, 0.6, 0.5]), truth)
    assert (got["poses"], got["matched"], got["duplicates"], got["uncovered"]) == (3, 1, 1, 1)
    assert got["people_labelled"] == 3 and got["found_right"] == pytest.approx(1 / 3, abs=1e-4)
    assert got["scored"] == 2 and got["ece"] == pytest.approx(0.35, abs=1e-4)
    assert got["mean_quality"] == 0.75 and got["mean_oks"] == 0.5
    assert got["confident"] == 1 and got["confident_wrong_share"] == 0.0
    assert len(got["ece_floor"]) == 2


def test_entries_without_boxes_are_not_scored_one_to_one():
    assert one_to_one([{"image_id": 1, "keypoints": [0] * 51, "score": 1}], np.ones(1), {"images": []}) == {}


def test_eval_detector_scores_what_predict_reports(tmp_path, capsys, tiny_model):
    """`eval --detector none` (each image one person, as predict gives it) writes predict's results and the
    scores of that file: the same as `eval --results` on it, the one-to-one figures included."""
    ann, images = make_coco(tmp_path / "data", n_images=3)
    rc, out, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--out", tmp_path / "e",
                           "--detector", "none", "--model", tiny_model, "--backend", "torch", "--no-progress",
                           "--threads", "1")
    assert rc == 0, err
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert len(results) == 3 and {r["image_id"] for r in results} == {1, 2, 3}
    assert m["boxes"] == "detector none" and m["one_to_one"]["poses"] == 3 and m["one_to_one"]["matched"] == 3
    assert "one to one" in out
    rc, _, err = run_cli(capsys, "eval", "--annotations", ann, "--results", tmp_path / "e" / "results.json",
                         "--out", tmp_path / "r")
    assert rc == 0, err
    again = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert again["ap"] == m["ap"] and again["one_to_one"] == m["one_to_one"]


def test_eval_detector_refuses_boxes_or_results_in_one_line(tmp_path, capsys):
    from conftest import cli_error

    ann, images = make_coco(tmp_path / "data", n_images=1)
    line = cli_error(capsys, "eval", "--annotations", ann, "--images", images, "--out", tmp_path / "e",
                     "--detector", "default", "--boxes", ann)
    assert line.startswith("--detector poses what a detector finds; --boxes gives")


def test_eval_detector_records_the_precision_its_run_decided(tmp_path, capsys, monkeypatch):
    """metrics.json says which graphs the predict run used: the run's own decision, not one made again."""
    from posecal.predict import scored

    seen = {}

    def run(cfg, log=None):
        from posecal.predict.job import PredictSummary

        seen["inputs"] = cfg.inputs
        (tmp_path / "e").mkdir(exist_ok=True)
        (tmp_path / "e" / "results.json").write_text("[]")
        return PredictSummary(0, 0, 0, 0.0, precision="float")

    ann, images = make_coco(tmp_path / "data", n_images=2)
    monkeypatch.setattr(scored, "evaluate_results", lambda *a, about=None, **k: about)
    from posecal.predict.job import PredictConfig

    about = scored.evaluate_predicted(PredictConfig(inputs=[], precision="auto"), ann, images, tmp_path / "e",
                                      run=run)
    assert about["precision"] == "float" and len(seen["inputs"]) == 2


def test_eval_boxes_scores_what_predict_reports_for_the_same_boxes(tiny_model, tmp_path, capsys):
    """`eval --boxes DETS` and `predict --boxes DETS` on the same pictures: the same people, keypoints, qualities
    and score (each pose ranked by its own score, not times the box's), to predict's rounding; so eval's AP is
    the AP of what predict reports."""
    ann, images = make_coco(tmp_path / "data", n_images=3)
    truth = json.loads(ann.read_text())
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": s}
                                for a, s in zip(truth["annotations"], (0.9, 0.4, 0.7))]))
    common = ("--model", tiny_model, "--backend", "torch", "--threads", "1", "--no-progress")
    rc, _, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--boxes", dets, "--out",
                         tmp_path / "e", *common)
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "predict", images, "--annotations", ann, "--boxes", dets, "--out",
                         tmp_path / "p.json", *common)
    assert rc == 0, err
    evaluated = sorted(json.loads((tmp_path / "e" / "results.json").read_text()), key=lambda e: e["image_id"])
    predicted = sorted(json.loads((tmp_path / "p.json").read_text()), key=lambda e: e["image_id"])
    assert [e["image_id"] for e in evaluated] == [e["image_id"] for e in predicted] == [1, 2, 3]
    for e, p in zip(evaluated, predicted):
        np.testing.assert_allclose(e["keypoints"], p["keypoints"], atol=1e-3)
        assert e["score"] == pytest.approx(p["score"], abs=1e-4) and e["score"] == pytest.approx(e["pose_quality"],
                                                                                               abs=1e-4)
        assert (e["pose_quality"], e["keypoint_quality"], e["box_score"]) == \
            (p["pose_quality"], p["keypoint_quality"], p["box_score"])
