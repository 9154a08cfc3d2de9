"""The reported-pose quality (posecal/calibration/reported.py): its features by hand, its fit, its file, and the
pipeline that rates found boxes with it and leaves the caller's alone."""
import json

import numpy as np
import pytest

from posecal.calibration.maps import LogisticScore
from posecal.calibration.reported import (FEATURES, ReportedQuality, fit_reported_quality, reported_features)

from conftest import STANDING, pose_of

F = {name: i for i, name in enumerate(FEATURES)}


def box_around(xy, pad=10.0):
    lo, hi = xy.min(0) - pad, xy.max(0) + pad
    return np.r_[lo, hi - lo]


def test_features_by_hand():
    a = STANDING.astype(float)
    twice = a.copy()
    twice[7:] += [0.0, 60.0]                      # 7 keypoints on a's, 10 far off
    far = a + [300.0, 0.0]
    kps = np.stack([a, twice, far])
    boxes = np.stack([box_around(a), box_around(a), box_around(far)])
    boxes[1] = boxes[0] + [0, 0, 0, 0]            # the same box: IoU 1
    q = np.array([0.9, 0.5, 0.73])
    f = reported_features(kps, boxes, q, (640, 480))
    assert (f >= 0).all()
    # the first two share 7 keypoints; the first ranks higher (crop quality 0.9 against 0.5)
    assert f[:, F["shared_with_higher"]] == pytest.approx([0.0, 7 / 17, 0.0])
    assert f[:, F["shared_with_lower"]] == pytest.approx([7 / 17, 0.0, 0.0])
    tied = reported_features(kps[:2], boxes[:2], [0.7, 0.7], (640, 480))   # a tie: the one listed first ranks higher
    assert tied[:, F["shared_with_higher"]] == pytest.approx([0.0, 7 / 17])
    assert f[:, F["box_overlap"]] == pytest.approx([1.0, 1.0, 0.0])
    assert f[:, F["outside_frame"]] == pytest.approx([0.0, 0.0, 0.0])
    # the second pose's moved keypoints lying further below its box than 10 % of its height are outside it
    x, y, w, h = boxes[1]
    below = int((twice[:, 1] > y + h + 0.1 * h).sum())
    assert below >= 3
    assert f[1, F["outside_box"]] == pytest.approx(below / 17)
    assert f[0, F["outside_box"]] == 0.0
    # no verifier, no visibility: their features stay 0
    assert (f[:, F["person_doubt"]] == 0).all() and (f[:, F["absent_share"]] == 0).all()


def test_shared_keypoints_are_those_the_visibility_rule_calls_there():
    """A keypoint the model calls absent (p 0.6) but places well (quality 0.8) inside the picture is there, as the
    visibility rule says (calibration.quality.called_present): it counts among the keypoints two poses share;
    without its quality, or outside the picture, it does not."""
    a = STANDING.astype(float)
    kps, boxes = np.stack([a, a]), np.stack([box_around(a), box_around(a)])
    vis = np.tile([0.1, 0.1, 0.8], (2, 17, 1))
    vis[1, :5] = [0.6, 0.1, 0.3]                  # the second pose's five face keypoints: p(absent) 0.6
    quality, in_frame = np.full((2, 17), 0.8), np.ones((2, 17))

    def shared(*args):
        return reported_features(kps, boxes, [0.9, 0.5], (640, 480), vis, *args)[1, F["shared_with_higher"]]

    assert shared(in_frame, None, None, quality) == pytest.approx(1.0)           # placed: there
    assert shared(in_frame) == pytest.approx(12 / 17)                             # no quality: absent
    outside = in_frame.copy()
    outside[1, :5] = 0.2
    assert shared(outside, None, None, quality) == pytest.approx(12 / 17)        # placed, but outside the picture


def test_outside_frame_reads_in_frame_else_the_picture_edges():
    a = STANDING.astype(float) - [0.0, 60.0]      # the top of the figure above the picture
    above = int((a[:, 1] < -0.5).sum())
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480))
    assert f[0, F["outside_frame"]] == pytest.approx(above / 17)
    in_frame = np.full((1, 17), 0.75)
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480), in_frame=in_frame)
    assert f[0, F["outside_frame"]] == pytest.approx(0.25)
    vis = np.tile([0.2, 0.1, 0.7], (1, 17, 1))
    f = reported_features(a[None], box_around(a)[None], [0.8], (640, 480), vis, None, [0.9], [0.4])
    assert f[0, F["absent_share"]] == pytest.approx(0.2)
    assert f[0, F["person_doubt"]] == pytest.approx(0.1)
    assert f[0, F["detector_doubt"]] == pytest.approx(0.6)


def test_the_fit_lowers_the_second_of_a_pair_and_keeps_the_rest():
    """Drawn truth: of two poses sharing keypoints the lower-ranked is a duplicate (scored 0) half the time, the
    higher-ranked is right as its crop says, a pose alone too. The fit lowers the second and leaves the others."""
    rng = np.random.default_rng(0)
    n = 4000
    f = np.zeros((n, len(FEATURES)))
    q = rng.uniform(0.5, 0.95, n)
    second = rng.random(n) < 0.2
    first = ~second & (rng.random(n) < 0.25)
    f[second, F["shared_with_higher"]] = 7 / 17   # 7 keypoints on the higher pose's
    f[first, F["shared_with_lower"]] = rng.uniform(0.3, 0.6, first.sum())
    target = np.where(second & (rng.random(n) < 0.5), 0.0, q)
    model = fit_reported_quality(f, q, target)
    rated = model(f, q)
    assert rated[second].mean() == pytest.approx(target[second].mean(), abs=0.03)
    assert rated[~second].mean() == pytest.approx(target[~second].mean(), abs=0.02)   # L2 leaves 2 % off
    assert model.score.weights[F["shared_with_higher"]] > 0.5 > model.score.weights[F["shared_with_lower"]] >= 0
    assert (model.score.weights >= 0).all() and model.failure(np.zeros((1, len(FEATURES))))[0] < 0.03
    # a bench's map fitted on one more column of evidence (none here) applies to as many columns, and weighs it 0
    wider = fit_reported_quality(np.c_[f, np.zeros(n)], q, target)
    assert wider.score.weights[-1] == 0 and np.allclose(wider(np.c_[f, np.zeros(n)], q), rated, atol=1e-6)


def test_the_file_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    score = LogisticScore(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.linspace(-0.1, 0.1, len(FEATURES)), 0.2)
    model = ReportedQuality(score, "val")
    model.write(tmp_path / "r.json")
    back = ReportedQuality.read(tmp_path / "r.json")
    f = np.random.default_rng(1).uniform(size=(5, len(FEATURES)))
    q = np.linspace(0.1, 0.9, 5)
    np.testing.assert_allclose(back(f, q), model(f, q))
    d = json.loads((tmp_path / "r.json").read_text())
    d["features"] = d["features"][:-1]
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="bad.json: reported quality is unreadable"):
        ReportedQuality.read(tmp_path / "bad.json")


def test_the_pipeline_rates_found_boxes_and_leaves_given_ones():
    from posecal.inference.person_policy import DETECTED, GIVEN, PersonPolicy
    from posecal.inference.pipeline import PosePipeline

    # a map that takes a share sigmoid(-1) off every pose: q (1 - sigmoid(-1))
    score = LogisticScore(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES)), -1.0)
    people = [pose_of(STANDING, 0.8), pose_of(STANDING + [200, 0], 0.8)]

    def estimate(items):
        for p in people:
            p.scores = {"oks": p.pose_quality}
            p.person_probability = 0.9
        return [people]

    pipeline = PosePipeline(estimate, policy=PersonPolicy(), reported=ReportedQuality(score))
    out = pipeline.people([(np.zeros((480, 640, 3), np.uint8), np.zeros((2, 4)), np.ones(2), [DETECTED, GIVEN])])[0]
    expected = 0.8 * (1 - 1 / (1 + np.exp(1.0)))
    assert out[0].pose_quality == pytest.approx(expected) and out[0].crop_quality == pytest.approx(0.8)
    assert out[0].scores["oks"] == pytest.approx(expected)           # the results' default score
    assert out[0].to_dict()["crop_quality"] == pytest.approx(0.8)
    assert out[1].pose_quality == pytest.approx(0.8) and out[1].crop_quality is None
    assert "crop_quality" not in out[1].to_dict()
    assert [p.to_dict()["quality_from"] for p in out] == ["picture", "crop"]   # each record says which it is
    # rated again (a carried person's next frame), the crop's quality is read, not the rated one
    again = pipeline.rated(out, (640, 480))
    assert again[0].pose_quality == pytest.approx(expected) and again[0].crop_quality == pytest.approx(0.8)


def test_the_map_never_raises_a_pose_whatever_its_weights_and_features():
    """One-sided by construction (a property over random maps and features, NaN and negative values included): no
    pose rated above its crop, more evidence never rates it higher, and a map by hand gives Q (1 - p_failure)."""
    rng = np.random.default_rng(2)
    k = len(FEATURES)
    for _ in range(200):
        score = LogisticScore(rng.normal(size=k), rng.uniform(0.1, 3, k), rng.normal(scale=3, size=k),
                              float(rng.normal(scale=3)))
        model = ReportedQuality(score)
        f = rng.normal(scale=2, size=(50, k))
        f[rng.random(f.shape) < 0.05] = np.nan
        q = np.r_[0.0, 1.0, rng.uniform(size=48)]
        rated = model(f, q)
        assert (rated <= q).all() and (rated >= 0).all()
        more = np.nan_to_num(f) + rng.uniform(0, 1, f.shape)
        assert (model(more, q) <= model(np.nan_to_num(f), q) + 1e-12).all()
    by_hand = ReportedQuality(LogisticScore(np.zeros(k), np.full(k, 0.5), np.ones(k), -2.0))
    q = np.array([0.3, 0.6, 0.9])
    x = np.zeros((3, k))
    x[:, F["box_overlap"]] = 0.5                                   # 0.5 / 0.5 x 1 - 2 = -1
    np.testing.assert_allclose(by_hand(x, q), q * (1 - 1 / (1 + np.exp(1.0))))


def test_the_shipped_map_is_applied_where_it_was_fitted_and_only_there():
    """A detector's boxes posed as `predict` poses still pictures by default get the model's map (accurate's,
    fast's); any other run (no flip test, no detector, uncalibrated, another detector, no verifier, orientations,
    a second look, tracking's preset, with the flip test too) reports the crop's quality and says why. The
    shipped maps never raise a pose; a model with none (published) reports the crop's quality."""
    from posecal.inference.person_policy import VIDEO
    from posecal.inference.predictor import Predictor
    from posecal.models.shipped import is_installed

    for name in ("accurate", "fast"):
        if not is_installed(name):
            pytest.skip(f"shipped model {name} not available")
        shipped = Predictor(name, threads=1).pipeline.reported
        assert shipped is not None and (shipped.score.weights >= 0).all() and shipped.fitted_on == "val"
        for kwargs in ({"flip": False}, {"detector": None}, {"calibrated": False}, {"detector": "nanodet"},
                       {"verifier": "none"}, {"orientations": 4}, {"second_look": True}, {"policy": VIDEO}):
            predictor = Predictor(name, threads=1, **kwargs)
            assert predictor.pipeline.reported is None and predictor.unrated, (name, kwargs)
        f = np.random.default_rng(3).uniform(0, 1, (100, len(FEATURES)))
        q = np.random.default_rng(4).uniform(0, 1, 100)
        assert (shipped(f, q) <= q).all() and (shipped(np.zeros_like(f), q) >= 0.99 * q).all()
    if is_installed("published"):
        assert Predictor("published", threads=1, backend="torch").pipeline.reported is None


def test_track_with_the_flip_test_reports_the_crops_quality():
    """`track --flip` poses detected and carried boxes with the flip test: the map, fitted on still pictures, is
    not applied, and each pose says its quality is its crop's."""
    from posecal.models.shipped import is_installed
    from posecal.tracking.pose_tracker import PoseTracker

    if not is_installed("accurate"):
        pytest.skip("shipped model accurate not available")
    tracker = PoseTracker(flip=True, threads=1)
    assert tracker.predictor.estimator.flip and tracker.predictor.pipeline.reported is None
    assert "pictures" in tracker.predictor.unrated


def test_a_shipped_model_named_by_path_rates_as_by_name():
    """The map travels inside the shipped files: its graphs given by path (float, int8) and its .pt rate poses as
    the name does."""
    from posecal.inference.predictor import Predictor
    from posecal.models.shipped import WEIGHTS_DIR, is_installed

    if not is_installed("accurate"):
        pytest.skip("shipped model accurate not available")
    by_name = Predictor("accurate-float", threads=1).pipeline.reported
    f, q = np.random.default_rng(6).uniform(size=(5, len(FEATURES))), np.linspace(0.2, 0.9, 5)
    paths = [WEIGHTS_DIR / "posecal_accurate.onnx", WEIGHTS_DIR / "posecal_accurate.int8.onnx"]
    for path in paths:
        by_path = Predictor(str(path), threads=1).pipeline.reported
        assert by_path is not None, path
        np.testing.assert_allclose(by_path(f, q), by_name(f, q))
    pt = WEIGHTS_DIR / "posecal_accurate.pt"
    if pt.is_file():
        np.testing.assert_allclose(Predictor(str(pt), backend="torch", threads=1).pipeline.reported(f, q),
                                   by_name(f, q))


def test_a_map_for_other_weights_is_not_applied_and_not_packed(tmp_path, tiny_model, capsys):
    """A map keyed by another network's digest: never applied by a model that carries it, and refused by pack."""
    from posecal.calibration.reported import META_KEY, NETWORK_KEY
    from conftest import cli_error

    k = len(FEATURES)
    other = ReportedQuality(LogisticScore(np.zeros(k), np.ones(k), np.ones(k), -3.0), "test", weights="0" * 16)
    found, why = ReportedQuality.of_model({META_KEY: other.to_dict(), NETWORK_KEY: "1" * 16}, "m",
                                          dict(other.conditions))
    assert found is None and "other weights" in why
    found, why = ReportedQuality.of_model({META_KEY: other.to_dict(), NETWORK_KEY: "0" * 16}, "m",
                                          dict(other.conditions))
    assert found is not None and why == ""
    other.write(tmp_path / "other.json")
    line = cli_error(capsys, "pack", tiny_model, tmp_path / "p.pt", "--reported-quality", tmp_path / "other.json")
    assert "fitted for other weights" in line and not (tmp_path / "p.pt").exists()


def _packed_with_a_map(tmp_path, tiny_model, capsys):
    """A tiny model packed with a map of its own (`posecal pack --reported-quality`): (packed file, the map)."""
    from conftest import run_cli

    k = len(FEATURES)
    model = ReportedQuality(LogisticScore(np.zeros(k), np.full(k, 0.5), np.linspace(0, 1, k), -3.0), "test")
    model.write(tmp_path / "map.json")
    rc, _, err = run_cli(capsys, "pack", tiny_model, tmp_path / "packed.pt", "--reported-quality",
                         tmp_path / "map.json")
    assert rc == 0, err
    return tmp_path / "packed.pt", model


def _rates_with(packed, model, backend: str) -> None:
    from posecal.inference.predictor import Predictor

    carried = Predictor(str(packed), backend=backend, threads=1).pipeline.reported
    assert carried is not None and carried.fitted_on == "test", backend
    f, q = np.random.default_rng(5).uniform(size=(4, len(FEATURES))), np.array([0.2, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(carried(f, q), model(f, q))


def test_a_packed_model_carries_its_map(tmp_path, tiny_model, capsys):
    """The map stored in the model file rates its detected poses (a model without one has none); an unreadable map
    is one line."""
    from posecal.inference.predictor import Predictor

    from conftest import cli_error

    packed, model = _packed_with_a_map(tmp_path, tiny_model, capsys)
    _rates_with(packed, model, "torch")
    assert Predictor(tiny_model, backend="torch", threads=1).pipeline.reported is None
    (tmp_path / "bad.json").write_text("{}")
    line = cli_error(capsys, "pack", tiny_model, tmp_path / "p2.pt", "--reported-quality", tmp_path / "bad.json")
    assert line.startswith(f"{tmp_path / 'bad.json'}: reported quality is unreadable")


@pytest.mark.slow
def test_a_packed_models_map_goes_into_its_onnx_export(tmp_path, tiny_model, capsys):
    """The ONNX export (the onnx backend's cached graph) carries the map in its metadata."""
    packed, model = _packed_with_a_map(tmp_path, tiny_model, capsys)
    _rates_with(packed, model, "onnx")
