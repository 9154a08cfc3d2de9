"""posecal's own evidence as calibrator inputs (`posecal calibrate fit|apply --images`): the trust model's
ratings of an estimator's keypoints, the combining logistic score,
and fit -> file -> apply end to end on a tiny set."""
import json

import numpy as np
import pytest

from posecal.evaluation.calibrate_results import ResultsCalibrator
from posecal.evaluation.evidence import EVIDENCE_INPUTS, PosecalEvidence
from posecal.calibration.maps import LogisticScore, fit_logistic
from posecal.cli.main import main

from conftest import make_coco

def test_trust_evidence_rates_true_keypoints_above_displaced_ones(real_person):
    """The shipped trust model, on a real labelled person: the labels' own keypoints get a higher keypoint
    and pose quality than the same keypoints moved by a third of the person's size, and the answers are cached
    per (image, box, keypoints)."""
    path, box, kp = real_person
    source = PosecalEvidence()
    labelled = kp[:, 2] > 0
    moved = kp[:, :2] + np.where(labelled[:, None], [0.33 * np.sqrt(box[2] * box[3]), 0.0], 0.0)
    ev = source([path, path], np.stack([box, box]), np.stack([kp[:, :2], moved]))
    assert ev.keypoint_quality.shape == (2, 17) and ev.visibility_probs.shape == (2, 17, 3)
    np.testing.assert_allclose(ev.visibility_probs.sum(-1), 1.0, atol=1e-5)
    assert ev.keypoint_quality[0, labelled].mean() > ev.keypoint_quality[1, labelled].mean() + 0.2
    assert ev.pose_quality[0] > ev.pose_quality[1]
    again = source([path], box[None], kp[None, :, :2])
    np.testing.assert_allclose(again.keypoint_quality[0], ev.keypoint_quality[0])
    assert len(source._cache) == 2


def test_logistic_score_recovers_weights_and_holds_their_signs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    truth = (rng.random(4000) < 1 / (1 + np.exp(-(2 * x[:, 0] - 1 * x[:, 1] + 0.5)))).astype(float)
    s = fit_logistic(x, truth, signs=[0, 0], l2=0.0)
    np.testing.assert_allclose(s.weights * [1, 1] / s.std, [2, -1], atol=0.2)
    held = fit_logistic(x, truth, signs=[1, 1])                       # the 2nd weight may not go negative
    assert held.weights[1] == pytest.approx(0.0, abs=1e-6) and held.weights[0] > 0
    again = LogisticScore.from_dict(json.loads(json.dumps(held.to_dict())))
    np.testing.assert_allclose(again(x[:5]), held(x[:5]))


def _results_with_file_names(ann, rng):
    """An 'estimator' whose keypoints err by a random amount and whose raw score over-states its accuracy."""
    data = json.loads(ann.read_text())
    names = {im["id"]: im["file_name"] for im in data["images"]}
    entries = []
    for a in data["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        err = rng.uniform(0, 12, 17)
        ang = rng.uniform(0, 2 * np.pi, 17)
        xy = kp[:, :2] + np.stack([np.cos(ang), np.sin(ang)], 1) * err[:, None]
        conf = np.clip(1.0 - err / 40 + np.where(kp[:, 2] > 0, 0.0, -0.5), 0, 1)
        entries.append({"image_id": a["image_id"], "category_id": 1, "file_name": names[a["image_id"]],
                        "keypoints": np.concatenate([xy, conf[:, None]], 1).reshape(-1).tolist(),
                        "score": float(conf.mean()), "bbox": a["bbox"]})
    return entries


@pytest.mark.slow
def test_calibrate_with_images_round_trips_and_apply_refuses_without_them(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=16, seed=3)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results_with_file_names(ann, np.random.default_rng(1))))
    cal_file, out = tmp_path / "cal.json", tmp_path / "r_cal.json"
    assert main(["calibrate", "fit", "--results", str(res), "--annotations", str(ann), "--images", str(img_dir),
                 "--out", str(cal_file)]) == 0
    assert ("inputs: raw keypoint score, keypoint type, person size, trust keypoint quality, trust visibility probs"
            in capsys.readouterr().out)
    d = json.loads(cal_file.read_text())
    meta = d["meta"]
    assert meta["inputs"] == ["raw keypoint score", "keypoint type", "person size", *EVIDENCE_INPUTS]
    assert meta["fit_persons"] == 16 and meta["keypoints"][16] == "right_ankle"
    assert meta["evidence_model"]["model"] == "posecal_accurate.pt" and len(meta["evidence_model"]["sha256_16"]) == 16
    # per keypoint type: raw score, the trust model's keypoint quality and 3 visibility log-probabilities
    assert len(d["keypoint_scores"]) == 17 and len(d["keypoint_scores"][0]["weights"]) == 5
    assert d["keypoint_scores"][0]["weights"][0] >= 0 and d["keypoint_scores"][0]["weights"][1] >= 0
    assert cal_file.stat().st_size < 100_000

    # without the images: one line naming the calibrator, before any work
    assert main(["calibrate", "apply", "--calibrator", str(cal_file), "--results", str(res), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"posecal: error: {cal_file}: this calibrator uses posecal's image evidence (trust keypoint "
                   f"quality, trust visibility probs); give the images with --images DIR")
    assert not out.exists()

    assert main(["calibrate", "apply", "--calibrator", str(cal_file), "--results", str(res), "--out", str(out),
                 "--images", str(img_dir)]) == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 16 and entries[0]["score"] == entries[0]["pose_quality"]
    # the file's calibrator on the same evidence gives the same numbers as the fitted one did
    from posecal.evaluation.calibrate_results import results_evidence
    from posecal.evaluation.results import load_results

    r = load_results(res)
    evidence, _ = results_evidence(r, res, img_dir)
    again = ResultsCalibrator.from_dict(d).apply(r, evidence)
    np.testing.assert_allclose([e["keypoint_quality"] for e in entries], [e["keypoint_quality"] for e in again])
    np.testing.assert_allclose([e["pose_quality"] for e in entries], [e["pose_quality"] for e in again])
    assert all(0 <= q <= 1 for e in entries for q in e["keypoint_quality"])

    # an entry whose image is missing is one line naming the file
    (img_dir / "img3.jpg").unlink()
    assert main(["calibrate", "apply", "--calibrator", str(cal_file), "--results", str(res), "--out", str(out),
                 "--images", str(img_dir)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"img3.jpg: file not found (image of entry 3 of {res})")


def test_calibrator_fitted_with_the_former_evidence_is_refused_in_one_line(tmp_path, capsys):
    d = {"format": "posecal-results-calibrator/1", "meta": {"inputs": ["raw keypoint score", "heatmap value"]}}
    cal = tmp_path / "old.json"
    cal.write_text(json.dumps(d))
    res = tmp_path / "r.json"
    res.write_text("[]")
    assert main(["calibrate", "apply", "--calibrator", str(cal), "--results", str(res), "--out",
                 str(tmp_path / "o.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"posecal: error: {cal}: fitted with the evidence of an earlier posecal (heavy); fit it again with "
        f"`posecal calibrate fit --images`").replace("heavy", "heatmap value")
