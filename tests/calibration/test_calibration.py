"""Post-hoc calibration: monotone maps and conformal radii on hand-made data with known answers, and the
stored calibration applied identically by the model file, Predictor, `posecal eval`, `posecal predict`
and the ONNX backend."""
import json

import numpy as np
import pytest

from posecal.calibration.conformal import conformal_quantile, fit_radii, person_scale
from posecal.calibration.maps import IsotonicMap, apply_temperature, fit_isotonic, fit_temperature
from posecal.calibration.quality import QualityCalibration, cross_fit, fit_quality_calibration
from posecal.metrics.calibration import ece


def test_isotonic_fit_pools_violators_by_hand():
    m = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 1.0])
    # PAV: 0 | (1, 0) pooled to 0.5 at mean score 0.25 | 1
    np.testing.assert_allclose(m.x, [0.1, 0.25, 0.4])
    np.testing.assert_allclose(m.y, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(m([0.0, 0.175, 0.25, 0.9]), [0.0, 0.25, 0.5, 1.0])


def test_isotonic_fit_is_monotone_small_and_fixes_overconfidence():
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 1, 5000)
    truth = (rng.uniform(0, 1, 5000) < score ** 2).astype(float)   # over-confident: true rate is score^2
    m = fit_isotonic(score, truth, max_knots=20)
    assert len(m.x) <= 20 and np.all(np.diff(m.y) >= 0) and np.all(np.diff(m.x) >= 0)
    assert ece(score, truth) > 0.1
    assert ece(m(score), truth) < 0.02
    np.testing.assert_allclose(m(0.5), 0.25, atol=0.05)
    again = IsotonicMap.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_allclose(again(score), m(score), atol=1e-4)
    with pytest.raises(ValueError):
        IsotonicMap.from_dict({"x": [0, 1], "y": [1, 0]})


def test_temperature_recovers_the_sharpening_and_keeps_the_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (20000, 3))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    sharp = apply_temperature(true_p, np.full(len(true_p), 0.5))   # over-confident by T = 2
    t = fit_temperature(sharp, labels)
    assert abs(t - 2.0) < 0.15
    np.testing.assert_allclose(apply_temperature(sharp, np.full(len(sharp), t)), true_p, atol=0.05)
    assert np.array_equal(apply_temperature(sharp, np.full(len(sharp), t)).argmax(1), sharp.argmax(1))
    np.testing.assert_allclose(apply_temperature(true_p, np.ones(len(true_p))), true_p, atol=1e-9)


def test_conformal_quantile_by_hand():
    assert conformal_quantile(np.arange(1, 10), 0.9) == 9      # rank ceil(10 * .9) = 9
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18     # rank ceil(20 * .9) = 18
    assert conformal_quantile(np.arange(1, 6), 0.9) == np.inf  # 5 scores cannot promise 90 %
    np.testing.assert_allclose(person_scale([[0, 0, 4, 9], [1, 1, 0, 5]]), [6.0, 1.0])


def _synthetic_errors(rng, n, k=3):
    """Quality q ~ U(0, 1); relative error |N(0, (1.1 - q) * 0.1 * (k+1))|: the 90 % radius is known."""
    q = rng.uniform(0, 1, (n, k))
    sd = (1.1 - q) * 0.1 * np.arange(1, k + 1)
    return q, np.abs(rng.normal(0, 1, (n, k))) * sd


def test_conformal_radii_cover_90_percent_and_shrink_with_quality():
    rng = np.random.default_rng(2)
    q, e = _synthetic_errors(rng, 4000)
    radii = fit_radii(q, e, np.ones_like(q, bool), target=0.9)
    q2, e2 = _synthetic_errors(rng, 20000)
    inside = e2 <= radii.relative(q2)
    for k in range(3):
        assert 0.88 <= inside[:, k].mean() <= 0.93
        assert np.all(np.diff(radii.radii[k]) <= 0)                  # more trust, smaller circle
        assert radii.radii[k, 0] > 2 * radii.radii[k, -1]
    # the top bin's radius matches the |N(0, sd)| 90 % quantile for its sd range (1.645 sd at sd ~ 0.15..0.35)
    assert 0.1 * 1.645 * 0.1 < radii.radii[0, -1] < 0.1 * 1.645 * 0.4
    # pixels: relative radius times sqrt(box area)
    np.testing.assert_allclose(radii(q2[:2], [[0, 0, 100, 100], [5, 5, 50, 200]]),
                               radii.relative(q2[:2]) * 100, rtol=1e-9)


def test_radii_with_too_few_keypoints_make_no_promise_they_cannot_keep():
    q = np.full((5, 1), 0.5)
    radii = fit_radii(q, np.full((5, 1), 0.1), np.ones((5, 1), bool), target=0.9)
    assert np.all(radii.relative(q) == 2.0)


def _fake_heads(rng, n=300, k=17):
    """Raw head outputs that are over-confident, with keypoints whose error follows the truth they claim."""
    area = rng.uniform(2000, 20000, n)
    boxes = np.stack([np.zeros(n), np.zeros(n), np.sqrt(area * 2), np.sqrt(area * 2) / 2], 1)
    gt_xy = rng.uniform(0, 100, (n, k, 2))
    true_ks = rng.uniform(0.05, 1, (n, k))
    sig = 2 * np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087,
                        .089, .089])
    d = np.sqrt(-2 * np.log(true_ks) * area[:, None]) * sig
    ang = rng.uniform(0, 2 * np.pi, (n, k))
    pred = gt_xy + np.stack([np.cos(ang), np.sin(ang)], -1) * d[..., None]
    v = rng.choice([0, 1, 2], (n, k), p=[0.35, 0.1, 0.55])
    gt = np.concatenate([gt_xy, v[..., None]], -1)
    raw_opks = np.clip(np.sqrt(true_ks) + rng.normal(0, 0.05, (n, k)), 0, 1)   # over-confident
    logits = rng.normal(0, 1, (n, k, 3)) + 3 * np.eye(3)[v]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    oks = np.clip(((true_ks * (v > 0)).sum(1) / np.maximum((v > 0).sum(1), 1)) ** 0.5, 0, 1)
    return oks, raw_opks, probs, pred, boxes, gt, area


def test_quality_calibration_fits_round_trips_through_json_and_cross_fits():
    rng = np.random.default_rng(3)
    args = _fake_heads(rng)
    cal = fit_quality_calibration(*args)
    again = QualityCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    a = cal.apply(args[0], args[1], args[2], args[4])
    b = again.apply(args[0], args[1], args[2], args[4])
    for key in ("oks", "opks", "visibility_probs", "keypoint_radius"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-3)
    assert len(json.dumps(cal.to_dict())) < 40000   # a few tens of KB
    honest = cross_fit(*args, folds=5)
    from posecal.calibration.quality import truth_of

    ks, lab, _ = truth_of(args[3], args[5], args[6])
    assert ece(args[1][lab], ks[lab]) > 0.1
    assert ece(honest["opks"][lab], ks[lab]) < 0.04
    with pytest.raises(ValueError):
        QualityCalibration.from_dict({"format": "something else"})


def test_risk_coverage_by_hand():
    from posecal.metrics.risk_coverage import risk_coverage

    rc = risk_coverage([0.9, 0.1, 0.5, 0.7], [1.0, 0.0, 0.5, 0.25])
    # by score: 1, .25, .5, 0 -> running means 1, .625, .5833, .4375; oracle: 1, .75, .5833, .4375
    assert rc["mean_oks"][4] == 0.625 and rc["mean_oks"][9] == 0.4375 and rc["mean_oks"][0] == 1.0
    assert rc["aurc"] == round((1 + 0.625 + 0.58333 + 0.4375) / 4, 4)
    assert rc["oracle_aurc"] == round((1 + 0.75 + 0.58333 + 0.4375) / 4, 4)
    assert rc["coverage"][0] == 0.1 and len(rc["coverage"]) == 10


def test_ece_floor_of_a_calibrated_predictor_by_hand_and_a_miscalibrated_one_above_it():
    from posecal.metrics.calibration import ece_floor

    rng = np.random.default_rng(0)
    # 400 predictions of 0.5 (one bin), truth 0.4 or 0.6: the ECE is |mean truth - 0.5|, the mean of 400 draws of
    # sd 0.1, so |N(0, 0.1 / 20)|: mean 0.005 * sqrt(2 / pi) = 0.0040, 90th percentile 1.645 * 0.005 = 0.0082
    conf = np.full(400, 0.5)
    truth = 0.5 + rng.choice([-0.1, 0.1], 400)
    floor, p90 = ece_floor(conf, truth, draws=400)
    assert abs(floor - 0.0040) < 0.0006 and abs(p90 - 0.0082) < 0.0012
    # the same spread around 0.55: over-confident by 0.05, far above the floor (which ignores the bias)
    assert ece(conf, truth + 0.05) > 5 * ece_floor(conf, truth + 0.05, draws=400)[1]


def test_ece_floor_matches_the_ece_calibrated_predictors_show():
    from posecal.metrics.calibration import ece_floor

    def calibrated(seed, n=2000):
        """Confidence c ~ Beta(5, 1.5) (keypoint qualities lean high), truth ~ Beta with mean c: calibrated."""
        r = np.random.default_rng(seed)
        c = r.beta(5, 1.5, n)
        return c, r.beta(4 * c, 4 * (1 - c))
    seen = np.array([ece(*calibrated(s)) for s in range(200)])
    c, t = calibrated(1000)
    floor, p90 = ece_floor(c, t)
    # the floor from one set is what calibrated sets of that size show: their mean ECE and 90th percentile
    assert abs(floor - seen.mean()) < 0.15 * seen.mean() and abs(p90 - np.quantile(seen, 0.9)) < 0.2 * p90
    assert 0.05 < (seen > p90).mean() < 0.2
    # truth 0.05 below every confidence: miscalibrated, several times the floor's 90th percentile
    assert ece(c, np.clip(t - 0.05, 0, 1)) > 3 * p90


def test_ece_interval_resamples_whole_groups():
    from posecal.metrics.calibration import bootstrap_by_group, ece_interval

    seen = []
    bootstrap_by_group(lambda a: seen.append(a) or 0.0, [5, 5, 7, 9, 9, 9], np.arange(6.0), draws=20)
    members = {5: {0, 1}, 7: {2}, 9: {3, 4, 5}}
    for drawn in seen:
        ids = set(drawn.astype(int))
        assert all(m <= ids or not (m & ids) for m in members.values())   # a group is taken whole or not at all
        assert sum(drawn.astype(int).tolist().count(i) for i in (0, 2, 3)) == 3   # three groups drawn
    rng = np.random.default_rng(2)
    c = rng.uniform(0.2, 0.9, 3000)
    t = np.clip(c + 0.08 + rng.normal(0, 0.1, 3000), 0, 1)
    lo, hi = ece_interval(c, t, np.arange(3000) // 10)
    assert lo < ece(c, t) < hi and hi - lo < 0.02


def test_anchored_logistic_corrects_only_where_its_feature_is_not_zero():
    from posecal.calibration.maps import fit_logistic

    rng = np.random.default_rng(4)
    offset = rng.normal(0, 1.5, 4000)                  # a logit already right where the feature is 0
    x = (rng.random(4000) < 0.3).astype(float)         # e.g. the box touches the picture's edge
    truth = 1 / (1 + np.exp(-(offset + 0.8 * x)))      # there the logit is 0.8 too low
    m = fit_logistic(x[:, None], truth, [0], offset=offset, anchored=True)
    assert m.bias == 0 and m.mean[0] == 0
    assert abs(m.weights[0] / m.std[0] - 0.8) < 0.02   # the per-unit correction, recovered
    np.testing.assert_allclose(m(np.zeros((3, 1)), offset=offset[:3]), 1 / (1 + np.exp(-offset[:3])))


def test_a_moved_radius_holds_the_true_keypoint_as_often_as_before():
    """Gaussian errors of sigma 4 px: the 0.9 radius is 4 * sqrt(2 ln 10); moved by d, the new radius holds the
    truth in 90 % of draws (Monte Carlo), where r + d over-covers and sqrt(r^2 + d^2) under-covers."""
    from posecal.calibration.conformal import moved_radius
    rng = np.random.default_rng(0)
    err = rng.normal(0, 4.0, (400_000, 2))
    r = 4.0 * np.sqrt(2 * np.log(10))
    assert np.mean(np.hypot(*err.T) <= r) == pytest.approx(0.9, abs=0.002)
    for d in (0.0, 2.0, 6.0, 20.0, 200.0):
        new = moved_radius(np.array([r]), np.array([d]))[0]
        assert np.mean(np.hypot(err[:, 0] + d, err[:, 1]) <= new) == pytest.approx(0.9, abs=0.003), d
        assert (new <= r + d + 1e-9) and new >= np.hypot(r, d) - 1e-9
    assert moved_radius(np.array([np.inf]), np.array([3.0]))[0] == np.inf      # no promise stays no promise
