"""Calibration end to end on a tiny model and a tiny COCO set written by the test: `posecal pack
--calibrate-on` stores the maps in the model file; Predictor, `posecal eval`, `posecal predict` and the ONNX
backend apply them identically; `posecal eval --results` reports the metrics contract for any results file."""
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.calibration.quality import QualityCalibration
from posecal.models.checkpoint import load_model, save_model
from posecal.cli.main import main
from posecal.models.config import ModelConfig
from posecal.data.coco import load_coco_persons
from posecal.inference.estimator import predict_records
from posecal.models.estimator import build_estimator

from posecal.errors import PosecalInputError

from conftest import make_coco

BOXES = [[10, 10, 60, 100], [0, 0, 120, 160]]


def write_raw_model(path):
    """A tiny untrained model with quality heads, written as a posecal model file (seeded)."""
    torch.manual_seed(0)
    cfg = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False, quality_heads=True, head_hidden=16)
    save_model(build_estimator(cfg.head_widths, imagenet=False, quality_heads=True, head_hidden=16), cfg, path)
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """(calibrated model file, raw model file, COCO json, image folder, pack's stdout)."""
    folder = tmp_path_factory.mktemp("cal")
    raw = write_raw_model(folder / "raw.pt")
    ann, img_dir = make_coco(folder / "data", n_images=12)
    out = folder / "cal.pt"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["pack", str(raw), str(out), "--calibrate-on", str(ann), "--images", str(img_dir), "--threads", "1",
                   "--no-progress"])
    assert rc == 0
    return out, raw, ann, img_dir, buf.getvalue()


def test_pack_stores_the_calibration_and_reports_cross_fitted_numbers(calibrated):
    out, raw, *_ , printed = calibrated
    _, _, meta = load_model(out)
    cal = QualityCalibration.from_dict(meta["calibration"])
    assert cal.fit_info["persons"] == 12 and len(cal.keypoint_maps) == 17
    assert cal.fit_info["cross_fitted"]["folds"] == 5
    assert "5-fold cross-fitted" in printed and "keypoint_ece" in printed and "wrote" in printed
    assert "calibration" not in load_model(raw)[2]


@pytest.mark.slow
def test_pack_is_a_job_callable_without_the_cli(calibrated, tmp_path):
    """run_pack(PackConfig) packs as the command does: the same maps from the same settings, fp16 weights, the
    source named; a settings mistake is one line before any work (no file written)."""
    from posecal.evaluation.pack_job import PackConfig, run_pack

    out, raw, ann, img_dir, _ = calibrated
    lines = []
    path = run_pack(PackConfig(str(raw), str(tmp_path / "api.pt"), calibrate_on=str(ann), images=str(img_dir),
                               threads=1, progress=False), log=lines.append)
    _, _, meta = load_model(path)
    assert meta["packed_from"] == str(raw) and len(lines) == 1 and "5-fold cross-fitted" in lines[0]
    assert meta["calibration"] == load_model(out)[2]["calibration"]
    weights = torch.load(path, weights_only=True)["state_dict"].values()
    assert {w.dtype for w in weights if w.is_floating_point()} == {torch.float16}
    for bad, message in ((PackConfig(str(raw), str(tmp_path / "x.pt"), calibrate_on=str(ann)), "go together"),
                         (PackConfig(str(raw), str(tmp_path / "y.pt"), conditions=True), "--conditions")):
        with pytest.raises(PosecalInputError, match=message):
            run_pack(bad)
        assert not any(tmp_path.glob(bad.out.rsplit("/", 1)[-1]))


@pytest.mark.slow   # an ONNX export of the calibrated model: 35 s of the fast subset's 3.7 min
def test_predictor_eval_predict_and_onnx_apply_the_same_maps(calibrated, tmp_path):
    from posecal import Predictor

    out, raw, ann, img_dir, _ = calibrated
    cal = QualityCalibration.from_dict(load_model(out)[2]["calibration"])
    image = cv2.imread(str(img_dir / "img0.jpg"))
    # PyTorch here, the reference the ONNX file is held to below (and one ONNX export fewer: ~30 s each)
    people = Predictor(out, backend="torch")(image, boxes=BOXES)
    plain = Predictor(out, calibrated=False, backend="torch")(image, boxes=BOXES)
    by_hand = cal.apply(np.array([p.pose_quality for p in plain]), np.stack([p.keypoint_quality for p in plain]),
                        np.stack([p.visibility_probs for p in plain]), np.array(BOXES, float))
    np.testing.assert_allclose(np.stack([p.keypoint_quality for p in people]), by_hand["opks"], atol=1e-9)
    np.testing.assert_allclose([p.pose_quality for p in people], by_hand["oks"], atol=1e-9)
    np.testing.assert_allclose(np.stack([p.keypoint_radius for p in people]), by_hand["keypoint_radius"], atol=1e-9)
    np.testing.assert_allclose(np.stack([p.visibility_probs for p in people]), by_hand["visibility_probs"], atol=1e-9)
    assert plain[0].keypoint_radius is None and people[0].keypoint_radius.shape == (17,)

    # ONNX: the calibration travels in the metadata and the ONNX backend applies it
    onnx_file = tmp_path / "cal.onnx"
    assert main(["export", "--model", str(out), "--out", str(onnx_file)]) == 0
    onnx_people = Predictor(onnx_file, backend="onnx")(image, boxes=BOXES)
    for a, b in zip(people, onnx_people):
        np.testing.assert_allclose(a.keypoint_quality, b.keypoint_quality, atol=1e-4)
        np.testing.assert_allclose(a.pose_quality, b.pose_quality, atol=1e-4)
        np.testing.assert_allclose(a.keypoint_radius, b.keypoint_radius, rtol=1e-3, atol=1e-3)

    # posecal predict: the same numbers in the results file, and circles with --radius
    res_file, render = tmp_path / "pred.json", tmp_path / "render"
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({"img0.jpg": BOXES}))
    assert main(["predict", str(img_dir / "img0.jpg"), "--model", str(out), "--boxes", str(boxes_file),
                 "--out", str(res_file), "--render", str(render), "--radius", "--no-progress", "--backend", "torch"]) == 0
    entries = json.loads(res_file.read_text())
    np.testing.assert_allclose([e["keypoint_radius"] for e in entries], by_hand["keypoint_radius"], atol=0.01)
    np.testing.assert_allclose([e["keypoint_quality"] for e in entries], by_hand["opks"], atol=1e-4)
    with_r = cv2.imread(str(render / "img0.png"))
    main(["predict", str(img_dir / "img0.jpg"), "--model", str(out), "--boxes", str(boxes_file),
          "--out", str(res_file), "--render", str(render), "--no-progress", "--backend", "torch"])
    assert np.abs(with_r.astype(int) - cv2.imread(str(render / "img0.png")).astype(int)).sum() > 0

    # posecal eval: its results.json carries the same maps applied to the same raw outputs
    eval_dir = tmp_path / "eval"
    assert main(["eval", "--model", str(out), "--annotations", str(ann), "--images", str(img_dir), "--out",
                 str(eval_dir), "--no-progress", "--threads", "1", "--backend", "torch"]) == 0
    model, mcfg, _ = load_model(out)
    pred = predict_records(model, load_coco_persons(ann, img_dir), mcfg.input_wh, progress=False, threads=1)
    boxes = np.stack([r.bbox for r in pred.records])
    expect = cal.apply(pred.oks, pred.opks, pred.visibility_probs, boxes)
    results = json.loads((eval_dir / "results.json").read_text())
    # eval poses picture by picture through the runner, this call all 12 persons in one batch: PyTorch's convolution
    # sums differ in their last bits between batch shapes, and a map's step can lift that past 1e-4 (seen on an
    # AVX-512 Xeon: 1.8e-4 on one keypoint of 204, at 1502d35 too); a map applied wrongly moves values by far more
    np.testing.assert_allclose([r["keypoint_quality"] for r in results], expect["opks"], atol=1e-3)
    np.testing.assert_allclose([r["keypoint_radius"] for r in results], expect["keypoint_radius"], atol=0.01)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["calibrated"] is True
    for key in ("ap", "ap50", "ap75", "ar", "pose_score_pearson", "pose_score_spearman", "pose_score_ece"):
        assert {"score", "pose_quality", "oks", "heatmap"} <= set(metrics[key]), key
    assert {"confidence", "keypoint_quality", "heatmap", "opks"} <= set(metrics["keypoint_ece"])
    assert set(metrics["keypoint_radius"]) == {"target", "coverage", "coverage_per_keypoint", "median_radius_rel"}
    assert set(metrics["risk_coverage"]["pose"]) >= {"coverage", "mean_oks", "aurc", "oracle_aurc"}
    assert (eval_dir / "risk_coverage.png").is_file()


def _gt(ann):
    data = json.loads(ann.read_text())
    return data["annotations"]


def test_eval_results_of_any_estimator_by_hand(tmp_path, capsys):
    ann, _ = make_coco(tmp_path / "data", n_images=4)
    entries = []
    for a in _gt(ann):
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        kp[:, 2] = 0.5                                       # exact keypoints, confidence 0.5
        entries.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": 0.3, "pose_quality": 1.0, "keypoint_quality": [1.0] * 17,
                        "keypoint_radius": [1.0] * 17, "visibility": [2] * 17,
                        "visibility_probs": [[0.0, 0.0, 1.0]] * 17})
    res = tmp_path / "r.json"
    res.write_text(json.dumps(entries))
    out = tmp_path / "out"
    assert main(["eval", "--results", str(res), "--annotations", str(ann), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_matched"] == 4
    assert m["ap"]["score"] == 100.0 and m["ap"]["pose_quality"] == 100.0
    assert m["pose_score_ece"] == {"score": 0.7, "pose_quality": 0.0}       # true OKS is 1 for everyone
    # c = 0.5 everywhere, judged over every keypoint against its OPKS (1: exact) where labelled and 0 where not:
    # one bin, |0.5 - the labelled share|
    labelled = np.mean([np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] > 0 for a in _gt(ann)])
    assert m["keypoint_ece"] == {"confidence": round(abs(0.5 - labelled), 4), "keypoint_quality": 0.0}
    assert m["keypoint_radius"]["coverage"] == 1.0 and m["keypoint_radius"]["target"] == 0.9
    areas = [a["area"] for a in _gt(ann)]
    assert m["keypoint_radius"]["median_radius_rel"] == pytest.approx(np.median(1 / np.sqrt(areas)), abs=1e-4)
    assert m["risk_coverage"]["pose"]["mean_oks"] == [1.0] * 10 and m["risk_coverage"]["keypoint"]["aurc"] == 1.0
    # make_coco labels keypoint 3 occluded and keypoint 4 absent on odd images; everything predicted visible
    assert m["visibility"]["binary"]["recall"] == 1.0 and m["visibility"]["ternary"]["support"] == [2, 4, 62]
    assert (out / "risk_coverage.png").is_file() and (out / "reliability.png").is_file()
    assert "4 results, 4 matched" in capsys.readouterr().out


def test_eval_results_bad_input_is_one_line(tmp_path, capsys):
    ann, _ = make_coco(tmp_path / "data", n_images=2)
    res = tmp_path / "r.json"
    res.write_text(json.dumps([{"image_id": 1, "keypoints": [1, 2], "score": 1}]))
    assert main(["eval", "--results", str(res), "--annotations", str(ann), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"posecal: error: {res}: entry 0 (image_id 1): keypoints: expected 17 x 3 numbers, got a list of 2"
    assert main(["eval", "--annotations", str(ann), "--out", str(tmp_path / "o")]) == 2
    assert "--images is needed" in capsys.readouterr().err


def _noisy_results(ann, rng, n_rep=1):
    """An 'estimator' whose keypoints err by a random amount and whose raw score over-states its accuracy."""
    entries = []
    for a in _gt(ann):
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        err = rng.uniform(0, 12, 17)
        ang = rng.uniform(0, 2 * np.pi, 17)
        xy = kp[:, :2] + np.stack([np.cos(ang), np.sin(ang)], 1) * err[:, None]
        conf = np.clip(1.0 - err / 40 + np.where(kp[:, 2] > 0, 0.0, -0.5), 0, 1)
        flat = np.concatenate([xy, conf[:, None]], 1).reshape(-1)
        entries.append({"image_id": a["image_id"], "category_id": 1, "keypoints": flat.tolist(),
                        "score": float(conf.mean()), "bbox": a["bbox"], "extra": "kept"})
    return entries


def test_calibrate_fit_apply_then_eval_results_end_to_end(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=40, seed=5)
    rng = np.random.default_rng(0)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_noisy_results(ann, rng)))
    cal_file, out = tmp_path / "cal.json", tmp_path / "r_cal.json"
    assert main(["calibrate", "fit", "--results", str(res), "--annotations", str(ann), "--out", str(cal_file)]) == 0
    cal = json.loads(cal_file.read_text())
    assert cal["meta"]["fit_persons"] == 40 and cal["meta"]["keypoints"][0] == "nose"
    assert cal["meta"]["inputs"] == ["raw keypoint score", "keypoint type", "person size"]
    assert cal_file.stat().st_size < 100_000
    assert main(["calibrate", "apply", "--calibrator", str(cal_file), "--results", str(res), "--out", str(out)]) == 0
    entries = json.loads(out.read_text())
    assert entries[0]["extra"] == "kept" and entries[0]["score"] == entries[0]["pose_quality"]
    assert {"keypoint_quality", "visibility", "visibility_probs", "keypoint_radius"} <= set(entries[0])
    np.testing.assert_allclose(np.sum(entries[0]["visibility_probs"], 1), 1.0, atol=1e-3)
    # labelled keypoints were scored higher than absent ones, so the labelled chance separates them
    assert entries[1]["visibility"][4] == 0 and entries[1]["visibility"][0] == 2
    # each keypoint's c is the calibrated number (keypoint quality where `visibility` calls it there, else 0), the
    # estimator's own kept beside
    raw_entries = json.loads(res.read_text())
    for e, r in zip(entries[:5], raw_entries):
        c = np.reshape(e["keypoints"], (17, 3))[:, 2]
        np.testing.assert_allclose(c, np.multiply(e["keypoint_quality"], np.array(e["visibility"]) > 0), atol=2e-4)
        np.testing.assert_allclose(e["raw_keypoint_scores"], np.reshape(r["keypoints"], (17, 3))[:, 2], atol=1e-4)
        np.testing.assert_allclose(np.reshape(e["keypoints"], (17, 3))[:, :2], np.reshape(r["keypoints"], (17, 3))[:, :2],
                                   atol=1e-4)
    # pycocotools reads the calibrated file back as results (loadRes) and scores it
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann))
    dt = gt.loadRes(str(out))
    assert len(dt.anns) == len(entries)
    first = dt.anns[min(dt.anns)]
    np.testing.assert_allclose(first["keypoints"], entries[0]["keypoints"])
    ev = COCOeval(gt, dt, "keypoints")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert 0.3 < ev.stats[0] <= 1.0
    raw_dir, cal_dir = tmp_path / "raw_eval", tmp_path / "cal_eval"
    assert main(["eval", "--results", str(res), "--annotations", str(ann), "--out", str(raw_dir)]) == 0
    assert main(["eval", "--results", str(out), "--annotations", str(ann), "--out", str(cal_dir),
                 "--images", str(img_dir)]) == 0
    raw_m, cal_m = (json.loads((d / "metrics.json").read_text()) for d in (raw_dir, cal_dir))
    assert cal_m["keypoint_ece"]["keypoint_quality"] < raw_m["keypoint_ece"]["confidence"]
    assert cal_m["keypoint_radius"]["coverage"] >= 0.85
    page = (cal_dir / "report.html").read_text()
    assert "Most over-confident" in page and page.count("data:image/png;base64,") >= 4
    assert "src=\"http" not in page                       # self-contained


def test_calibrate_apply_refuses_a_file_that_is_not_a_calibrator(tmp_path, capsys):
    bad, res = tmp_path / "bad.json", tmp_path / "r.json"
    bad.write_text(json.dumps({"format": "x"}))
    res.write_text("[]")
    assert main(["calibrate", "apply", "--calibrator", str(bad), "--results", str(res), "--out",
                 str(tmp_path / "o.json")]) == 2
    assert "not a posecal calibrator" in capsys.readouterr().err


def test_movenet_adapter_needs_its_extra_or_runs(tmp_path, capsys):
    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    from conftest import SHARED

    tflite = SHARED / "models" / "movenet_singlepose_lightning_int8.tflite"
    args = ["run-peer", "movenet", "--model", str(tflite), "--annotations", str(ann), "--images", str(img_dir),
            "--out", str(tmp_path / "mn.json"), "--no-progress"]
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        assert main(args) == 2
        assert "pip install 'posecal[movenet]'" in capsys.readouterr().err
        pytest.skip("ai-edge-litert (the movenet extra) is not installed")
    if not tflite.is_file():
        pytest.skip("../shared MoveNet model not available")
    assert main(args) == 0
    entries = json.loads((tmp_path / "mn.json").read_text())
    assert len(entries) == 2 and len(entries[0]["keypoints"]) == 51


@pytest.mark.slow
def test_pack_conditions_fits_over_cut_and_jittered_persons_and_the_predictor_writes_in_frame(tmp_path, capsys):
    from posecal import Predictor

    raw = write_raw_model(tmp_path / "raw.pt")
    ann, img_dir = make_coco(tmp_path / "data", n_images=16)
    out = tmp_path / "cond.pt"
    assert main(["pack", str(raw), str(out), "--calibrate-on", str(ann), "--images", str(img_dir), "--conditions",
                 "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("val:", "val_noflip:", "val_cut:", "val_jitter:"):
        assert name in printed
    cal = QualityCalibration.from_dict(load_model(out)[2]["calibration"])
    assert set(cal.fit_info["conditions"]) == {"val", "val_noflip", "val_cut", "val_jitter"}
    assert cal.in_frame is not None and cal.in_frame.score.weights[1] >= 0
    people = Predictor(str(out), detector=None, backend="torch")(cv2.imread(str(img_dir / "img0.jpg")),
                                               boxes=np.array([BOXES[0]], float))
    assert people and people[0].in_frame.shape == (17,) and ((people[0].in_frame >= 0) & (people[0].in_frame <= 1)).all()
    assert main(["pack", str(raw), str(tmp_path / "x.pt"), "--conditions"]) == 2
    assert "--conditions" in capsys.readouterr().err
