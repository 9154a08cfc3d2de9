"""`posecal audit`: label errors found where the calibrated estimate contradicts the labels, and `audit apply`.

Scoring on hand-made estimates with known answers; the CLI end to end on a tiny drawn COCO file with the
fast shipped model."""
import json

import numpy as np
import pytest

from conftest import make_coco
from posecal.audit import scores
from posecal.audit.estimates import Estimates
from posecal.audit.findings import KINDS, AuditThresholds, find_label_errors
from posecal.audit.fixes import apply_findings, read_accepted
from posecal.cli.main import main
from posecal.errors import PosecalInputError
from posecal.skeleton import FLIP_PAIRS

K = 17
# A person seen from the front: its left side on the image's right, as COCO labels people facing the camera.
POSE = np.array([[100, 40], [105, 35], [95, 35], [110, 38], [90, 38], [120, 70], [80, 70], [130, 100], [70, 100],
                 [135, 130], [65, 130], [115, 140], [85, 140], [117, 190], [83, 190], [118, 240], [82, 240]], float)


def _estimates(n=3, radius=8.0, p_visible=0.96) -> Estimates:
    probs = np.tile([0.02, 1 - 0.02 - p_visible, p_visible], (n, K, 1))
    return Estimates(np.arange(n) + 10, np.array([""] * n), np.tile([60.0, 20, 80, 240], (n, 1)),
                     np.tile(POSE, (n, 1, 1)), probs, np.full((n, K), radius), np.full(n, 0.8), 0.9)


def _labels(est: Estimates) -> np.ndarray:
    """Labels that agree with the estimates: every keypoint visible where the model put it."""
    return np.concatenate([est.keypoints, np.full(est.keypoints.shape[:2] + (1,), 2.0)], -1)


def _area(est):
    return np.full(len(est.annotation_ids), 80 * 240 * 0.5)


def test_tail_probability_is_the_radius_coverage_at_the_radius():
    assert scores.log10_tail(10.0, 10.0, 0.9) == pytest.approx(-1.0)        # outside the radius: 1 - coverage
    assert scores.log10_tail(20.0, 10.0, 0.9) == pytest.approx(-4.0)
    assert scores.log10_tail(np.sqrt(2) * 10, 10.0, 0.9) == pytest.approx(-2.0)   # the 0.99 radius
    assert scores.log10_tail(0.0, 10.0, 0.9) == 0.0


def test_labels_equal_to_the_estimate_give_no_findings():
    est = _estimates()
    assert find_label_errors(_labels(est), _area(est), est) == []


def test_each_planted_kind_is_found_in_order_of_strength():
    est = _estimates(n=4)
    labels = _labels(est)
    labels[0, 9, :2] += [40, 0]          # a wrist 5 radii off
    labels[1, 15, :2] += [20, 0]         # an ankle 2.5 radii off: found, behind the wrist
    labels[1, 13, :2] += [8, 0]          # one radius off: p = 0.1, not a finding
    labels[2, [5, 6]] = labels[2, [6, 5]]   # shoulders swapped
    labels[3, 7, 2] = 1                  # elbow labelled occluded; the model: p(visible) = 0.96
    labels[3, 4] = 0                     # an ear left unlabelled that the model sees
    est.visibility_probs[0, 2] = [0.93, 0.05, 0.02]   # labelled visible, the model 93 % sure it is absent:
    # not a visibility finding (annotators label hidden joints too), and its position agrees
    found = find_label_errors(labels, _area(est), est)
    ids = [f["id"] for f in found]
    assert ids.index("10:position:9") < ids.index("11:position:15")
    assert "11:position:13" not in ids
    assert "12:swap:5" in ids and not any(i.startswith("12:position") for i in ids)   # the swap explains both
    swap = found[ids.index("12:swap:5")]
    assert swap["pair"] == [5, 6] and swap["score"] > 0.999
    vis = found[ids.index("13:visibility:7")]
    assert vis["score"] == pytest.approx(0.96) and vis["label"][2] == 1 and vis["estimate"][2] == 2
    assert not [i for i in ids if i.startswith("10:") and i.endswith(":2")]
    missing = found[ids.index("13:missing:4")]
    assert missing["score"] == pytest.approx(0.98) and missing["estimate"] == [90.0, 38.0, 2]
    assert {f["kind"] for f in found} == {"position", "swap", "visibility", "missing"}
    assert [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)
    pos = found[ids.index("10:position:9")]
    assert pos["p_label_correct"] == pytest.approx(10.0 ** -25, rel=1e-2)   # (40 / 8)^2 * log10(0.1)


def test_swap_probability_prefers_the_mirrored_fit():
    est = _estimates(n=2)
    labels = _labels(est)
    labels[1, [7, 8]] = labels[1, [8, 7]]
    lo = scores.swap_log_odds(labels, est.keypoints, est.keypoint_radius, 0.9)
    j = FLIP_PAIRS.index((7, 8))
    assert lo[0, j] < -20 and lo[1, j] > 20
    labels[0, 8, 2] = 0
    assert np.isnan(scores.swap_log_odds(labels, est.keypoints, est.keypoint_radius, 0.9)[0, j])


def test_person_finding_when_the_labels_are_another_pose():
    est = _estimates(n=2)
    labels = _labels(est)
    labels[1, :, :2] += [60, 0]          # the whole pose shifted by most of the box's width
    found = find_label_errors(labels, _area(est), est, AuditThresholds(position_tail=0.0))
    person = [f for f in found if f["kind"] == "person"]
    assert [f["annotation_id"] for f in person] == [11]
    assert person[0]["keypoint"] is None and person[0]["score"] == pytest.approx(0.8 - person[0]["oks"], abs=1e-3)
    # with the default thresholds the person finding explains its keypoints' positions: one finding, not 17
    found = find_label_errors(labels, _area(est), est)
    assert [f["id"] for f in found if f["annotation_id"] == 11] == ["11:person:-"]


def test_a_label_far_off_is_no_swap_when_the_mirrored_pair_fits_no_better():
    est = _estimates(n=1)
    labels = _labels(est)
    labels[0, 1, :2] = [40, 35]      # left eye moved far to the image left: nearer the right eye's estimate
    found = find_label_errors(labels, _area(est), est)
    assert [f["id"] for f in found] == ["10:position:1"]
    assert scores.swap_log_odds(labels, est.keypoints, est.keypoint_radius, 0.9)[0, 0] > 5   # "better" mirrored


def _coco(est: Estimates, labels) -> dict:
    anns = [{"id": int(a), "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [60, 20, 80, 240],
             "area": 9600.0, "num_keypoints": int((lab[:, 2] > 0).sum()),
             "keypoints": [int(v) for v in lab.reshape(-1)]} for a, lab in zip(est.annotation_ids, labels)]
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 300}], "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}


def test_apply_changes_exactly_the_accepted_findings():
    est = _estimates(n=4)
    labels = _labels(est)
    labels[0, 9, :2] += [40, 0]
    labels[0, 10, :2] += [0, 40]
    labels[2, [5, 6]] = labels[2, [6, 5]]
    labels[3, 7, 2] = 1
    labels[3, 4] = 0
    data = _coco(est, labels)
    found = find_label_errors(labels, _area(est), est)
    accepted = ["10:position:9", "12:swap:5", "13:visibility:7", "13:missing:4"]
    assert set(accepted) <= {f["id"] for f in found} and "10:position:10" in {f["id"] for f in found}
    fixed, counts = apply_findings(data, found, accepted)
    assert counts == {"swap": 1, "position": 1, "visibility": 1, "missing": 1, "person": 0}
    before = [np.array(a["keypoints"], float).reshape(K, 3) for a in data["annotations"]]
    after = [np.array(a["keypoints"], float).reshape(K, 3) for a in fixed["annotations"]]
    changed = {(int(data["annotations"][i]["id"]), k) for i in range(4) for k in range(K)
               if not np.array_equal(before[i][k], after[i][k])}
    assert changed == {(10, 9), (12, 5), (12, 6), (13, 7), (13, 4)}   # 10:position:10 was not accepted
    assert np.allclose(after[0][9], [*POSE[9], 2]) and np.allclose(after[2][[5, 6]], before[2][[6, 5]])
    assert after[3][7, 2] == 2 and np.allclose(after[3][4], [*POSE[4], 2])
    assert fixed["annotations"][3]["num_keypoints"] == 17 and data["annotations"][3]["num_keypoints"] == 16
    for a, b in zip(data["annotations"], fixed["annotations"]):
        assert {k: v for k, v in a.items() if k not in ("keypoints", "num_keypoints")} == \
            {k: v for k, v in b.items() if k not in ("keypoints", "num_keypoints")}
    assert {k: v for k, v in data.items() if k != "annotations"} == {k: v for k, v in fixed.items()
                                                                      if k != "annotations"}
    with pytest.raises(PosecalInputError, match="no finding with id 99:position:1"):
        apply_findings(data, found, ["99:position:1"])
    with pytest.raises(PosecalInputError, match="another version"):
        apply_findings(fixed, found, ["10:position:9"])


def test_accept_reads_lists_files_and_json(tmp_path):
    assert read_accepted("1:position:3, 2:swap:5") == ["1:position:3", "2:swap:5"]
    (tmp_path / "ids.txt").write_text("# accepted\n1:position:3\n\n2:person:-\n")
    assert read_accepted(str(tmp_path / "ids.txt")) == ["1:position:3", "2:person:-"]
    (tmp_path / "ids.json").write_text('["1:missing:4"]')
    assert read_accepted(str(tmp_path / "ids.json")) == ["1:missing:4"]
    with pytest.raises(PosecalInputError, match="neither a file nor finding ids"):
        read_accepted(str(tmp_path / "nothing.txt"))


def _check_contract(findings):
    assert isinstance(findings, list)
    for f in findings:
        assert isinstance(f["id"], str) and isinstance(f["annotation_id"], int)
        assert f["kind"] in KINDS and isinstance(f["score"], float)
        if f["kind"] == "person":
            assert f["keypoint"] is None
        else:
            assert isinstance(f["keypoint"], int) and 0 <= f["keypoint"] <= 16
            for key in ("label", "estimate"):
                assert len(f[key]) == 3 and all(isinstance(v, (int, float)) for v in f[key])
                assert f[key][2] in (0, 1, 2)
    assert [f["score"] for f in findings] == sorted((f["score"] for f in findings), reverse=True)
    assert len({f["id"] for f in findings}) == len(findings)


def test_cli_end_to_end_with_the_fast_model(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=3)
    out = tmp_path / "audit"
    assert main(["audit", "--annotations", str(ann), "--images", str(img_dir), "--out", str(out), "--model", "fast",
                 "--no-progress"]) == 0
    findings = json.loads((out / "findings.json").read_text())
    _check_contract(findings)
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "posecal audit" in page
    assert page.count("data:image/jpeg;base64,") == min(len(findings), 60)
    keyed = [f for f in findings if f["kind"] != "person"][:2]
    fixed = tmp_path / "fixed.json"
    assert main(["audit", "apply", "--annotations", str(ann), "--findings", str(out / "findings.json"),
                 "--accept", ",".join(f["id"] for f in keyed), "--out", str(fixed)]) == 0
    before, after = json.loads(ann.read_text()), json.loads(fixed.read_text())
    assert before["images"] == after["images"] and len(before["annotations"]) == len(after["annotations"])
    assert sum(a != b for a, b in zip(before["annotations"], after["annotations"])) <= len(keyed)
    assert "applied" in capsys.readouterr().out


def test_model_estimates_as_labels_give_no_position_findings(tmp_path):
    from posecal.audit.job import AuditConfig, annotation_labels, estimate_with_model, read_annotations

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    est = estimate_with_model(AuditConfig(annotations=str(ann), out=str(tmp_path / "o"), images=str(img_dir),
                                          model="fast", progress=False))
    _, area = annotation_labels(read_annotations(ann), est.annotation_ids, ann)
    found = find_label_errors(_labels(est), area, est)
    assert not [f for f in found if f["kind"] in ("position", "swap")]
    path = tmp_path / "est.npz"
    est.save(path)
    again = Estimates.load(path)
    assert np.array_equal(again.keypoints, est.keypoints) and again.radius_coverage == est.radius_coverage


def test_audit_of_a_calibrated_results_file(tmp_path):
    est = _estimates(n=2)
    labels = _labels(est)
    labels[1, 9, :2] += [40, 0]
    data = _coco(est, labels)
    data["images"] = [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 300}]
    (tmp_path / "gt.json").write_text(json.dumps(data))
    res = [{"image_id": 1, "category_id": 1, "bbox": [60, 20, 80, 240], "score": 0.8, "pose_quality": 0.8,
            "keypoints": np.concatenate([POSE + [0, i * 0.5], np.ones((K, 1))], 1).reshape(-1).tolist(),
            "visibility_probs": est.visibility_probs[0].tolist(), "keypoint_radius": [8.0] * K} for i in range(2)]
    (tmp_path / "r.json").write_text(json.dumps(res))
    assert main(["audit", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "out")]) == 0
    findings = json.loads((tmp_path / "out" / "findings.json").read_text())
    _check_contract(findings)
    assert [f["id"] for f in findings] == ["11:position:9"]


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["audit", "--annotations", str(tmp_path / "nope.json"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--model", "fast"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.json: file not found" in err and "Traceback" not in err
    assert main(["audit", "--out", str(tmp_path / "out")]) == 2
    assert "needs --annotations" in capsys.readouterr().err
    res = [{"image_id": 1, "keypoints": [0] * 51, "score": 1.0}]
    (tmp_path / "r.json").write_text(json.dumps(res))
    (tmp_path / "gt.json").write_text(json.dumps(_coco(_estimates(1), _labels(_estimates(1)))))
    assert main(["audit", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calibrate apply" in err
