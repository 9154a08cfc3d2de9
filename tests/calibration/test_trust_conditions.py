"""Issue 38: persons cut by the frame, detector-like boxes, video-like degradation, in_frame, and trust models that
name the network they judge."""
import datetime
from dataclasses import replace

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.calibration.in_frame import InFrameMap, fit_in_frame, in_frame_features
from posecal.data.coco import PersonRecord
from posecal.data.conditions import cut_by_frame, cut_person, jittered_boxes
from posecal.data.transforms import degrade, jitter_box
from posecal.errors import PosecalInputError
from posecal.evaluation.conditions import ConditionRun, condition_figures, subset
from posecal.metrics.calibration import auroc
from posecal.skeleton import COCO_KEYPOINTS as KEYPOINT_NAMES

from conftest import offset_pairs

# an upright person drawn in a 200 x 300 picture: face at the top, ankles at y = 280
Y = {"nose": 30, "left_eye": 26, "right_eye": 26, "left_ear": 30, "right_ear": 30, "left_shoulder": 80,
     "right_shoulder": 80, "left_elbow": 120, "right_elbow": 120, "left_wrist": 150, "right_wrist": 150,
     "left_hip": 170, "right_hip": 170, "left_knee": 230, "right_knee": 230, "left_ankle": 280, "right_ankle": 280}


def person(tmp_path=None) -> PersonRecord:
    kp = np.zeros((17, 3))
    for i, name in enumerate(KEYPOINT_NAMES):
        kp[i] = (80 if name.startswith("left") else 120 if name.startswith("right") else 100, Y[name], 2)
    path = ""
    if tmp_path is not None:
        path = str(tmp_path / "person.png")
        cv2.imwrite(path, np.full((300, 200, 3), 90, np.uint8))
    return PersonRecord(path, 1, np.array([60.0, 15.0, 80.0, 275.0]), kp, 12000.0, ann_id=7)


def test_a_person_cut_at_the_waist_keeps_the_shoulders_and_loses_the_hips_and_below():
    rec = person()
    image = np.zeros((300, 200, 3), np.uint8)
    # keep the top half of the keypoints' extent (eyes at 26 .. ankles at 280): the picture ends at y = 153,
    # below the wrists (150) and above the hips (170)
    cut, kp, box, cut_off = cut_person(image, rec, "top", 0.5)
    assert cut.shape == (153, 200, 3)
    gone = [KEYPOINT_NAMES.index(n) for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                                              "right_ankle")]
    kept = [i for i in range(17) if i not in gone]
    assert cut_off[gone].all() and not cut_off[kept].any()
    assert (kp[gone, 2] == 0).all() and (kp[gone, :2] == 0).all()
    assert (kp[kept, 2] == 2).all() and np.allclose(kp[kept, :2], rec.keypoints[kept, :2])
    assert np.allclose(box, [60, 15, 80, 138])                   # clipped at the picture's new edge


def test_a_cut_keeping_the_right_side_moves_the_keypoints_with_the_picture():
    rec = person()
    cut, kp, box, cut_off = cut_person(np.zeros((300, 200, 3), np.uint8), rec, "right", 0.35)
    x0 = int(round(120 - 0.35 * 40))                             # keypoints span x 80 .. 120
    assert cut.shape == (300, 200 - x0, 3)
    left = np.array([n.startswith("left") or n == "nose" for n in KEYPOINT_NAMES])   # x < 106: cut off
    assert cut_off[left].all() and not cut_off[~left].any()
    assert np.allclose(kp[~left, 0], rec.keypoints[~left, 0] - x0)
    assert np.isclose(box[0], 0.0) and np.isclose(box[0] + box[2], 140 - x0)


def test_cut_by_frame_writes_each_cut_picture_and_keeps_the_area(tmp_path):
    rec = person(tmp_path)
    (cut,) = cut_by_frame([rec], tmp_path / "cut")
    image = cv2.imread(cut.record.image_path)
    assert image is not None and image.shape[:2] != (300, 200)
    assert cut.record.area == rec.area and cut.cut_off.any() and cut.keep in ("top", "bottom", "left", "right")
    assert 0.35 <= cut.fraction <= 0.70
    again = cut_by_frame([rec], tmp_path / "cut")[0]                # seeded per person: the same cut every time
    assert again.keep == cut.keep and again.fraction == cut.fraction
    # another way of drawing (the held-out cut): the side and share come from the given odds and range
    (other,) = cut_by_frame([rec], tmp_path / "cut2", seed=1, keeps=(("left", 1.0),), keep_range=(0.2, 0.2))
    assert other.keep == "left" and other.fraction == 0.2 and other.record.image_path != cut.record.image_path


def test_detector_like_boxes_move_but_stay_near_the_person():
    rec = person()
    moved = jittered_boxes([rec] * 1)[0].bbox
    assert not np.allclose(moved, rec.bbox)
    rng = np.random.default_rng(0)
    boxes = np.array([jitter_box(rec.bbox, 0.1, rng) for _ in range(2000)])
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    assert np.allclose(centre.mean(0), [100, 152.5], atol=2.0)     # unbiased around the true centre
    assert np.isclose(np.std(np.log(boxes[:, 2] / 80)), 0.1, atol=0.01)


def test_degrade_blurs_and_recompresses_and_leaves_the_crop_alone_when_off():
    rng = np.random.default_rng(1)
    crop = np.random.default_rng(2).integers(0, 256, (64, 64, 3)).astype(np.uint8)   # noise: any blur smooths it
    assert degrade(crop, 0.0, 0.0, rng) is crop
    for _ in range(4):                                           # Gaussian or motion blur, any direction
        out = degrade(crop, 1.0, 0.0, rng)
        assert out.shape == crop.shape and out.std() < 0.8 * crop.std()
    jpg = degrade(crop, 0.0, 1.0, rng)
    assert jpg.shape == crop.shape and not np.array_equal(jpg, crop)


def test_video_degradations_shrink_the_person_add_noise_and_are_the_same_for_a_seed():
    from posecal.data.transforms import AugmentConfig, shrink
    crop = np.random.default_rng(2).integers(0, 256, (128, 96, 3)).astype(np.uint8)
    small = shrink(crop, 0.25)              # a quarter of the resolution: 4 x 4 blocks of fine detail are gone
    assert small.shape == crop.shape and small.std() < 0.6 * crop.std()
    cfg = AugmentConfig(small_prob=1.0, small_height=(40.0, 40.0), noise_prob=0.0)
    out = degrade(crop, 0.0, 0.0, np.random.default_rng(0), cfg, person_height=160.0)   # shrunk to 40/160
    np.testing.assert_array_equal(out, shrink(crop, 0.25))
    # a person already smaller than asked is left as is
    assert degrade(crop, 0.0, 0.0, np.random.default_rng(0), cfg, person_height=30.0) is crop
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = degrade(flat, 0.0, 0.0, np.random.default_rng(0), AugmentConfig(noise_prob=1.0))
    assert 1.5 < noisy.astype(float).std() < 9 and abs(noisy.mean() - 128) < 1
    video = AugmentConfig(small_prob=0.7, blur_prob=0.5, jpeg_prob=0.7, noise_prob=0.5)
    runs = [[degrade(crop, 0.5, 0.7, np.random.default_rng((7, i)), video, 150.0) for i in range(6)] for _ in range(2)]
    for a, b in zip(*runs):                 # deterministic by seed (the trust samples are reproducible)
        np.testing.assert_array_equal(a, b)


def test_auroc_by_hand():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([1, 1], [0, 1]) == 0.5 and np.isnan(auroc([1, 2], [1, 1]))


def _in_frame_data(n=400, seed=0):
    """Keypoints at random places around a 100 x 100 picture; p(absent) high outside, low inside (noisy)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-60, 160, (n, 17, 2))
    inside = ((xy >= -0.5) & (xy < 99.5)).all(-1)
    p_abs = np.clip(np.where(inside, 0.2, 0.7) + rng.normal(0, 0.2, inside.shape), 0.01, 0.99)
    probs = np.stack([p_abs, (1 - p_abs) / 2, (1 - p_abs) / 2], -1)
    gt = np.concatenate([xy, np.where(inside, 2, 0)[..., None]], -1)
    boxes = np.tile([0.0, 0.0, 100.0, 100.0], (n, 1))
    return probs, xy, boxes, np.full((n, 2), 100.0), gt, ~inside


def test_in_frame_is_low_for_a_keypoint_placed_outside_the_picture():
    probs, xy, boxes, wh, gt, cut_off = _in_frame_data()
    m = fit_in_frame(probs, xy, boxes, wh, gt, cut_off)
    assert m is not None and m.score.weights[0] <= 0 <= m.score.weights[1]
    # the same p(absent), one keypoint 30 px left of the picture, one in its middle
    one = np.full((1, 17, 3), [0.45, 0.3, 0.25])
    pts = np.full((1, 17, 2), 50.0)
    pts[0, 0] = (-30.0, 50.0)
    p = m(one, pts, boxes[:1], wh[:1])[0]
    assert p[0] < 0.2 < 0.8 < p[1]
    # features by hand: logit p(absent), signed distance to the nearest edge / sqrt(box area), clipped to 0.5
    f = in_frame_features(one, pts, boxes[:1], wh[:1])[0]
    assert np.isclose(f[0, 0], np.log(0.45 / 0.55)) and np.isclose(f[0, 1], -29.5 / 100)
    assert np.isclose(f[1, 1], 49.5 / 100)                       # 50 px in: 49.5 px from the pixel edge
    far = in_frame_features(one, np.full((1, 17, 2), 50.0), boxes[:1] * 0.5, wh[:1])[0]
    assert np.isclose(far[0, 1], 0.5)                            # clipped at half the person's size
    held = InFrameMap.from_dict(m.to_dict())
    assert np.allclose(held(one, pts, boxes[:1], wh[:1]), p[None])
    sure = (gt[..., 2] > 0) | cut_off
    assert auroc(m(probs, xy, boxes, wh)[sure], (gt[..., 2] > 0)[sure]) > 0.9


def test_calibration_round_trip_keeps_in_frame():
    from posecal.calibration.quality import QualityCalibration, fit_quality_calibration
    probs, xy, boxes, wh, gt, cut_off = _in_frame_data(60)
    opks = np.full((60, 17), 0.6)
    cal = fit_quality_calibration(np.full(60, 0.5), opks, probs, xy, boxes, gt, np.full(60, 5000.0))
    cal.in_frame = fit_in_frame(probs, xy, boxes, wh, gt, cut_off)
    back = QualityCalibration.from_dict(cal.to_dict())
    assert back.in_frame is not None and np.allclose(back.in_frame.score.weights, cal.in_frame.score.weights)
    cal.in_frame = None
    assert "in_frame" not in cal.to_dict() and QualityCalibration.from_dict(cal.to_dict()).in_frame is None


def _run(n=4):
    """Four persons of 17 keypoints: keypoint 0 cut off (not labelled), keypoint 1 occluded, the rest visible."""
    gt = np.zeros((n, 17, 3))
    gt[..., :2] = np.arange(17)[None, :, None] * 10.0
    gt[..., 2] = 2
    gt[:, 0] = 0
    gt[:, 1, 2] = 1
    cut = np.zeros((n, 17), bool)
    cut[:, 0] = True
    return ConditionRun(name="t", flip=True, keypoints=gt[..., :2].copy(), boxes=np.tile([0, 0, 100, 100.0], (n, 1)),
                        gt=gt, area=np.full(n, 10000.0), groups=np.arange(n), visibility_known=np.ones(n, bool),
                        cut_off=cut, raw={}, image_wh=np.full((n, 2), 200.0))


def test_condition_figures_by_hand():
    run = _run()
    probs = np.zeros((4, 17, 3))
    probs[..., 2] = 1.0                                          # everything called visible ...
    probs[0, 0] = probs[1, 0] = [1.0, 0, 0]                      # ... but two persons' cut-off nose absent
    probs[0, 5] = [1.0, 0, 0]                                    # and one labelled shoulder absent
    probs[:, 1] = [0, 1.0, 0]                                    # the occluded eye called occluded
    # every keypoint placed right (quality 1), so those called absent are so only where the model also says they
    # lie outside the picture (calibration.quality.occluded_rule): the cut-off noses, and the one shoulder
    in_frame = np.full((4, 17), 0.9)
    in_frame[:, 0] = in_frame[0, 5] = 0.2
    out = {"oks": np.ones(4), "opks": np.ones((4, 17)), "visibility_probs": probs,
           "keypoint_radius": np.full((4, 17), 1.0), "in_frame": in_frame}
    f = condition_figures(run, out, 2.0)
    assert f["keypoint_ece"] == 0 and f["pose_ece"] == 0 and f["radius_coverage"] == 1.0
    assert f["cut_off_called_absent"] == 0.5                     # 2 of the 4 cut-off noses
    assert np.isclose(f["labelled_called_absent"], 1 / 64)       # 1 of 16 labelled x 4
    assert f["occluded_f1"] == 1.0
    assert np.isclose(f["absent_recall"], 0.5) and np.isclose(f["absent_precision"], 2 / 3)
    part = subset(run, np.array([True, False, True, False]))
    assert len(part) == 2 and part.cut_off.shape == (2, 17)


def test_crowded_persons_are_a_subgroup_where_the_run_knows_them():
    from bench.lab.condition_judging import subgroups

    run = _run()
    probs = np.zeros((4, 17, 3))
    probs[..., 2] = 1.0
    out = {"visibility_probs": probs}
    assert "box crowded" not in subgroups(run, out, 2.0)          # unknown: no such subgroup, rather than a guess
    run.crowded = np.array([True, False, False, True])
    groups = subgroups(run, out, 2.0)
    assert groups["box crowded"][:, 0].tolist() == [True, False, False, True]
    assert (groups["box crowded"] ^ groups["box alone"]).all() and groups["box crowded"].shape == (4, 17)
    assert subset(run, np.array([True, True, False, False])).crowded.tolist() == [True, False]


def test_model_files_load_as_weights_only_and_pickled_code_is_refused(tmp_path):
    from posecal.models.checkpoint import SHIPPED_MODELS, load_model
    for path in SHIPPED_MODELS.values():
        if path.is_file():
            torch.load(path, map_location="cpu", weights_only=True)
    bad = tmp_path / "bad.pt"
    torch.save({"model_config": {}, "state_dict": {}, "meta": {"x": datetime.date(2026, 1, 1)}}, bad)
    with pytest.raises(PosecalInputError, match="refused"):
        load_model(bad)


@pytest.mark.slow
def test_the_shipped_trust_models_name_the_network_they_were_trained_for():
    from posecal.models.assemble import pose_fingerprint
    from posecal.models.checkpoint import SHIPPED_MODELS, load_model
    checked = 0
    for name, path in SHIPPED_MODELS.items():
        if not path.is_file():
            continue
        model, cfg, meta = load_model(name)
        if cfg.trust:   # trained for this network, or put on another one (--any-network) and calibrated on it
            trained_for = meta.get("trust_trained_for")
            assert trained_for, name
            assert trained_for == pose_fingerprint(model) or (
                "--any-network" in meta.get("packed_from", "") and meta["calibration"]["fit_info"]), name
            checked += 1
    assert checked >= 1


def test_video_calibration_maps_each_pose_source_to_its_measured_truth():
    import dataclasses

    from posecal.calibration.video import VideoCalibration, fit_source_maps
    from posecal.inference.predictor import PersonPose
    from posecal.metrics.oks import opks
    pairs = offset_pairs(80, 6.0, 0.95, "carried", noise=0)   # 6 px off the truth, claiming 0.95
    cal = VideoCalibration({"carried": fit_source_maps(pairs, shrink=0)}, {})
    off = np.zeros((1, 17, 2))
    off[..., 0] = 6.0
    truth = opks(off, np.zeros((1, 17, 2)), np.array([4000.0]))[0]   # a 6 px error, by the OKS formula
    pose = PersonPose(np.array([100, 100, 100, 100.0]), np.zeros((17, 2)), np.full(17, 0.95), np.ones(17), 0.95,
                      keypoint_radius=np.full(17, 3.0), pose_source="carried")
    mapped = VideoCalibration.from_dict(cal.to_dict()).apply(pose)
    assert np.allclose(mapped.keypoint_quality, truth) and np.isclose(mapped.pose_quality, truth.mean())
    assert np.allclose(mapped.keypoint_radius, 3.0 * 2.0)       # every error is 6 px: twice the radius
    detected = dataclasses.replace(pose, pose_source="detected")
    assert cal.apply(detected) is detected                      # a source without maps keeps its values


def _edge_case_data(n=600, seed=0):
    """n persons of 17 keypoints in 400 x 400 pictures, boxes 100 x 200 in the middle; the second half's pictures
    end at the box's bottom (a person cut at the waist, box clipped) and their true keypoint quality is higher
    than the raw head says (as the isotonic maps, fitted on both halves alike, leave it)."""
    rng = np.random.default_rng(seed)
    boxes = np.tile([150.0, 100.0, 100.0, 200.0], (n, 1))
    wh = np.full((n, 2), 400.0)
    cut = np.arange(n) >= n // 2
    wh[cut, 1] = 300.0                                           # the picture ends at the box's bottom (y = 300)
    xy = np.stack([rng.uniform(160, 240, (n, 17)), rng.uniform(110, 290, (n, 17))], -1)
    raw = rng.uniform(0.2, 0.95, (n, 17))
    logit = np.log(raw / (1 - raw)) + np.where(cut, 0.8, -0.2)[:, None]
    ks = 1 / (1 + np.exp(-logit))
    area = np.full(n, 20000.0)
    # true keypoints placed so that each keypoint's true OPKS is ks: exp(-d^2 / (2 s^2 k^2)) with s^2 = area
    from posecal.skeleton import COCO_SIGMAS
    k2 = (2 * np.asarray(COCO_SIGMAS)) ** 2
    d = np.sqrt(-np.log(ks) * 2 * area[:, None] * k2)
    gt = np.concatenate([xy + np.stack([d, np.zeros_like(d)], -1), np.full((n, 17, 1), 2.0)], -1)
    probs = np.tile([0.05, 0.15, 0.8], (n, 17, 1))
    return raw, probs, xy, boxes, wh, gt, area, cut, ks


def test_conditional_quality_raises_the_quality_of_a_person_at_the_edge_where_the_truth_is_higher():
    from posecal.calibration.conditional import edges_touched, fit_conditional_quality
    from posecal.calibration.quality import QualityCalibration, fit_quality_calibration, truth_of

    raw, probs, xy, boxes, wh, gt, area, cut, ks = _edge_case_data()
    assert (edges_touched(boxes, wh)[:, 3] == cut).all() and not edges_touched(boxes, wh)[:, :3].any()
    oks = raw.mean(1)
    cal = fit_quality_calibration(oks, raw, probs, xy, boxes, gt, area)
    iso = cal.apply(oks, raw, probs, boxes)
    true_ks, labelled, true_oks = truth_of(xy, gt, area)
    assert np.allclose(true_ks, ks, atol=1e-6)
    # the isotonic maps see one mixture: under-confident on the cut half, over-confident on the whole half
    assert iso["opks"][cut].mean() < ks[cut].mean() - 0.03 and iso["opks"][~cut].mean() > ks[~cut].mean() + 0.03
    cal.conditional = fit_conditional_quality(iso["oks"], iso["opks"], iso["visibility_probs"], xy, boxes, wh,
                                              true_ks, labelled, true_oks)
    out = cal.apply(oks, raw, probs, boxes, image_wh=wh, keypoints=xy)
    for part in (cut, ~cut):
        assert abs(out["opks"][part].mean() - ks[part].mean()) < 0.01
    # pose quality is only corrected where the box touches the edge: a whole person keeps the isotonic value
    assert np.array_equal(out["oks"][~cut], iso["oks"][~cut]) and not np.allclose(out["oks"][cut], iso["oks"][cut])
    # one person, the same outputs, in a picture that ends at its box's bottom and in one that does not
    one = (oks[:1], raw[:1], probs[:1], boxes[:1])
    at_edge = cal.apply(*one, image_wh=[[400.0, 300.0]], keypoints=xy[:1])
    inside = cal.apply(*one, image_wh=[[400.0, 400.0]], keypoints=xy[:1])
    assert (at_edge["opks"] > inside["opks"]).all()
    assert np.array_equal(at_edge["keypoint_radius"], inside["keypoint_radius"])   # radii: isotonic quality
    # without the picture's size the map cannot tell the two apart: an error, not a guess
    with pytest.raises(TypeError, match="image_wh"):
        cal.apply(*one)
    with pytest.raises(ValueError, match="image sizes"):
        cal.apply(*one, image_wh=wh[:2], keypoints=xy[:1])
    # through JSON and back: the same outputs
    import json
    back = QualityCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    again = back.apply(oks, raw, probs, boxes, image_wh=wh, keypoints=xy)
    for key in ("oks", "opks"):
        assert np.allclose(again[key], out[key], rtol=0, atol=1e-12)
    # the radii are stored to 5 places of the person's scale (141 px here): 0.5e-5 x 141 px apart at most
    assert np.allclose(again["keypoint_radius"], out["keypoint_radius"], rtol=0, atol=1e-3)


def test_a_calibration_without_the_conditional_map_loads_and_applies_as_before():
    from posecal.calibration.conditional import ConditionalQuality
    from posecal.calibration.quality import QualityCalibration, fit_quality_calibration

    raw, probs, xy, boxes, wh, gt, area, cut, ks = _edge_case_data(60)
    old = fit_quality_calibration(raw.mean(1), raw, probs, xy, boxes, gt, area).to_dict()
    assert "conditional" not in old
    cal = QualityCalibration.from_dict(old)
    assert cal.conditional is None and cal.to_dict() == old
    plain = cal.apply(raw.mean(1), raw, probs, boxes)
    expect = np.stack([m(raw[:, k]) for k, m in enumerate(cal.keypoint_maps)], 1)
    assert np.array_equal(plain["opks"], expect) and np.array_equal(plain["oks"], cal.pose_map(raw.mean(1)))
    given = cal.apply(raw.mean(1), raw, probs, boxes, image_wh=wh, keypoints=xy)   # sizes change nothing
    assert all(np.array_equal(plain[k], given[k]) for k in plain)
    # a conditional map of other covariates than this code computes is refused, not misread
    d = dict(old, conditional={"format": "posecal-conditional-quality/1", "keypoint_covariates": ["logit"],
                               "pose_covariates": [], "keypoint": {}, "pose": {}})
    with pytest.raises(ValueError, match="covariates"):
        QualityCalibration.from_dict(d)
    with pytest.raises(ValueError):
        ConditionalQuality.from_dict({"format": "something else"})


def test_a_judged_condition_gets_the_maps_of_the_fold_that_did_not_see_its_photograph():
    from bench.lab.condition_judging import calibration_against_floors
    from posecal.evaluation.conditions import cross_fit_over_conditions

    raw, probs, xy, boxes, wh, gt, area, cut, ks = _edge_case_data(400)

    def run(name, part):
        n = int(part.sum())
        return ConditionRun(name=name, flip=True, keypoints=xy[part], boxes=boxes[part], gt=gt[part],
                            area=area[part], groups=np.arange(n), visibility_known=np.ones(n, bool),
                            cut_off=np.zeros((n, 17), bool), image_wh=wh[part],
                            raw={"oks": raw[part].mean(1), "opks": raw[part], "visibility_probs": probs[part]})
    whole, cut_run = run("whole", ~cut), run("cut", cut)       # photo i holds whole person i and cut person i
    again = run("cut_again", cut)                               # never fitted on, the same persons as "cut"
    outputs, ratios = cross_fit_over_conditions([whole, cut_run], conditional=True, judged=[again])
    assert len(outputs) == len(ratios) == 3
    for key in ("oks", "opks", "keypoint_radius"):
        assert np.array_equal(outputs[1][key], outputs[2][key])    # the fold maps that did not see the photo
    stranger = run("stranger", cut)
    stranger.groups = stranger.groups + 10_000
    with pytest.raises(ValueError, match="photographs"):
        cross_fit_over_conditions([whole, cut_run], judged=[stranger])
    f = calibration_against_floors(cut_run, outputs[1], 2.0, draws=20)
    k = f["keypoint"]
    assert k["n"] == 200 * 17 and k["interval"][0] <= k["ece"] <= k["interval"][1] and 0 < k["floor"] <= k["floor_p90"]
    assert f["subgroups"]["box at edge"]["keypoint"]["n"] == 200 * 17 and "box inside" not in f["subgroups"]
    assert f["subgroups"]["type=nose"]["keypoint"]["n"] == 200 and "pose" in f["subgroups"]["box at edge"]
    c = f["subgroup_counts"]
    assert c["subgroups"] == sum(s["keypoint"]["n"] >= 300 for s in f["subgroups"].values())
    assert 0 <= c["above_2x_p90"] <= c["above_p90"] <= c["subgroups"]


def test_persons_at_the_picture_edge_get_radii_of_their_own():
    """Persons whose box touches the picture's edge (cut by the frame) miss by twice as much, relative to their
    box, as persons inside it: one table covers them far less often than the 0.9 promised; a table each covers
    both; the tables survive the file round trip; without picture sizes `apply` gives the inside table."""
    from posecal.calibration.quality import QualityCalibration
    from posecal.evaluation.conditions import add_edge_radii, fit_over_conditions

    rng = np.random.default_rng(3)

    def run(name, n, spread, wh_y):
        boxes = np.tile([150.0, 100.0, 100.0, 200.0], (n, 1))
        xy = np.stack([rng.uniform(160, 240, (n, 17)), rng.uniform(110, 290, (n, 17))], -1)
        gt = np.concatenate([xy + rng.normal(0, spread, (n, 17, 2)), np.full((n, 17, 1), 2.0)], -1)
        raw = rng.uniform(0.2, 0.95, (n, 17))
        return ConditionRun(name=name, flip=True, keypoints=xy, boxes=boxes, gt=gt, area=np.full(n, 20000.0),
                            groups=np.arange(n) + (0 if wh_y > 300 else 10_000), visibility_known=np.ones(n, bool),
                            cut_off=np.zeros((n, 17), bool), image_wh=np.tile([400.0, wh_y], (n, 1)),
                            raw={"oks": raw.mean(1), "opks": raw, "visibility_probs": np.tile([0.05, 0.15, 0.8],
                                                                                              (n, 17, 1))})
    inside, edge = run("whole", 600, 4.0, 400.0), run("cut", 600, 8.0, 300.0)   # the cut pictures end at y = 300

    def coverage(cal, r, image_wh):
        radius = cal.apply(r.raw["oks"], r.raw["opks"], r.raw["visibility_probs"], r.boxes,
                           image_wh=image_wh)["keypoint_radius"]
        return float((np.linalg.norm(r.keypoints - r.gt[..., :2], axis=-1) <= radius).mean())

    one = fit_over_conditions([inside, edge])
    assert one.edge_radii is not None and one.fit_info["edge_radii"] == {"persons_at_edge": 600,
                                                                         "persons_inside": 600}
    back = QualityCalibration.from_dict(one.to_dict())
    assert np.allclose(back.edge_radii.radii, one.edge_radii.radii, atol=1e-5)   # stored to 5 decimals
    for cal in (one, back):
        assert 0.87 <= coverage(cal, inside, inside.image_wh) <= 0.93
        assert 0.87 <= coverage(cal, edge, edge.image_wh) <= 0.93
        assert coverage(cal, edge, None) < 0.7                  # no picture sizes: the inside table
    shared = replace(one, edge_radii=None)
    shared.radii = fit_over_conditions([inside]).radii           # one table, inside persons' (as whole val gives)
    assert coverage(shared, edge, edge.image_wh) < 0.7
    few = run("few", 50, 8.0, 300.0)                             # too few persons at the edge: no table of their own
    assert add_edge_radii(fit_over_conditions([inside, few]), [inside, few]).edge_radii is None
