"""Quality heads: online targets, losses, metrics on hand-made cases, and the frozen (S3) strategy."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.codec.heatmap import decode, encode
from posecal.data.crops import heatmap_to_input
from posecal.training.losses import hard_mined_l1, opks_bce, visibility_class_weights
from posecal.metrics.calibration import ece, pearson, rankdata, spearman
from posecal.metrics.keypoints import average_precision, error_breakdown, mapk
from posecal.metrics.oks import oks, opks
from posecal.metrics.visibility import binary_report, classification_report
from posecal.training.quality_targets import online_targets


def test_online_targets_equal_the_metric_functions():
    rng = np.random.default_rng(3)
    gt = np.zeros((2, 17, 3))
    gt[..., 0] = rng.uniform(20, 120, (2, 17))
    gt[..., 1] = rng.uniform(20, 170, (2, 17))
    gt[..., 2] = rng.integers(0, 3, (2, 17))
    gt[1, :, 2] = 0
    gt[1, 4, 2] = 2
    pred_in = gt[..., :2] + rng.normal(0, 3, (2, 17, 2))
    hms = np.stack([encode((p + 0.5) / 4 - 0.5, np.full(17, 2), (36, 48))[0] for p in pred_in])
    area = np.array([3000.0, 900.0])
    decoded = heatmap_to_input(decode(hms)[0])   # DARK, as the model decodes at test time
    t = online_targets(decoded, torch.tensor(gt, dtype=torch.float32), torch.tensor(area, dtype=torch.float32))
    expected_ks = opks(pred_in, gt[..., :2], area)
    np.testing.assert_allclose(t.opks.numpy(), expected_ks, atol=0.01)
    np.testing.assert_allclose(t.oks.numpy(), oks(pred_in, gt[..., :2], gt[..., 2], area), atol=0.01)
    assert t.labelled.numpy().tolist() == (gt[..., 2] > 0).tolist()
    assert t.visibility.numpy().tolist() == gt[..., 2].astype(int).tolist()


def test_hard_mining_on_a_known_batch():
    pred = torch.tensor([0.1, 0.2, 0.9, 0.5])
    target = torch.tensor([0.1, 0.5, 0.2, 0.4])      # L1: 0, .3, .7, .1 -> largest 25% is the .7
    plain = hard_mined_l1(pred, target, enabled=False)
    mined = hard_mined_l1(pred, target)
    assert plain.item() == pytest.approx((0 + .3 + .7 + .1) / 4)
    assert mined.item() == pytest.approx((0 + .3 + math.expm1(1.4) + .1) / 4)


def test_opks_bce_ignores_unlabelled_keypoints():
    logits = torch.zeros(1, 3)
    target = torch.tensor([[1.0, 0.0, 0.3]])
    labelled = torch.tensor([[True, False, False]])
    assert opks_bce(logits, target, labelled).item() == pytest.approx(math.log(2))


def test_weighted_ce_class_weights():
    w = visibility_class_weights([27174, 5897, 41678])
    np.testing.assert_allclose(w.numpy(), [41678 / 27174, 41678 / 5897, 1.0], rtol=1e-6)


def test_ece_hand_computed():
    # bins of width 1/15; two samples in the bin of 0.9 (mean truth .5), one in the bin of 0.1 (truth .1)
    conf = np.array([0.9, 0.9, 0.1])
    truth = np.array([1.0, 0.0, 0.1])
    assert ece(conf, truth) == pytest.approx(2 / 3 * 0.4)
    assert ece(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0.0)


def test_correlations():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert rankdata([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)


def test_visibility_report_matches_hand_counts():
    truth = [0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 2, 1, 2, 2, 2, 2, 0]
    r = classification_report(truth, pred, 3)
    assert r["confusion"] == [[1, 0, 1], [0, 1, 1], [1, 0, 3]]
    # class 2: tp 3, predicted 5, true 4
    assert r["precision"][2] == pytest.approx(3 / 5) and r["recall"][2] == pytest.approx(3 / 4)
    f1 = [0.5, 2 * 1 * .5 / 1.5, 2 * .6 * .75 / 1.35]
    assert r["f1"] == pytest.approx(f1)
    assert r["f1_weighted"] == pytest.approx((2 * f1[0] + 2 * f1[1] + 4 * f1[2]) / 8)
    assert r["accuracy"] == pytest.approx(5 / 8)
    b = binary_report(np.array(truth) > 0, np.array(pred) > 0)
    # positives: 6 true, predicted positive 6; tp = 5
    assert b["precision"] == pytest.approx(5 / 6) and b["recall"] == pytest.approx(5 / 6)


def test_average_precision_and_mapk_rule():
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    # one FP ranked first then one TP: precision .5 at recall 1
    assert average_precision([0.9, 0.8], [False, True], 1) == pytest.approx(0.5)
    ks = np.ones((2, 17))
    conf = np.ones((2, 17))
    conf[1] = 2.0                        # the more confident prediction sits on an unlabelled GT keypoint
    labelled = np.ones((2, 17), bool)
    labelled[1] = False
    all_kept = mapk(ks, conf, labelled)
    assert all_kept["mean"] == pytest.approx(50.0)   # ... so it is a false positive ranked first
    dropped = mapk(ks, conf, labelled, keep=labelled)
    assert dropped["mean"] == pytest.approx(100.0)


def test_error_breakdown_finds_an_inversion():
    gt = np.zeros((1, 17, 3))
    gt[0, :, :2] = np.arange(34).reshape(17, 2) * 10
    gt[0, :, 2] = 2
    pred = gt[:, :, :2].copy()
    pred[0, 9] = gt[0, 10, :2]         # left wrist placed on the right wrist
    pred[0, 0] += 300                   # nose far away
    e = error_breakdown(pred, gt, np.array([10000.0]))
    assert e["left_wrist"]["inversion"] == 1 and e["nose"]["miss"] == 1
    assert e["total"]["good"] == 15


@pytest.mark.slow
def test_frozen_step_leaves_pose_weights_bit_identical(tmp_path):
    from conftest import make_coco
    from posecal.models.checkpoint import save_model
    from posecal.models.config import ModelConfig
    from posecal.training.config import TrainConfig, DataConfig
    from posecal.models.estimator import build_estimator
    from posecal.training.train import train

    ann, img_dir = make_coco(tmp_path / "d", n_images=4)
    base_cfg = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False)
    base = build_estimator(base_cfg.head_widths, imagenet=False)
    save_model(base, base_cfg, tmp_path / "base.pt")
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=2, max_steps=2, num_workers=0,
                      data=DataConfig(str(ann), str(img_dir), str(ann), str(img_dir)),
                      model=ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False,
                                        quality_heads=True, head_hidden=16),
                      strategy="s3", init_from=str(tmp_path / "base.pt"), lr=0.01)
    train(cfg, progress=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    for k, v in base.state_dict().items():
        assert torch.equal(last[k], v), k
    assert not torch.equal(last["oks_head.fc.0.weight"],
                           build_estimator((16, 16, 8), imagenet=False, quality_heads=True,
                                           head_hidden=16).state_dict()["oks_head.fc.0.weight"])


def test_heatmap_statistics_peak_and_spread_by_hand():
    from posecal.models.heads import heatmap_statistics

    hm = torch.zeros(1, 2, 5, 4)
    hm[0, 0, 2, 1] = 0.8                      # one hot pixel: spread 0 (up to the 1e-6 guard)
    hm[0, 1, 1, 0] = hm[0, 1, 1, 2] = 0.5     # two equal pixels 2 apart: RMS distance from the centroid 1
    hm[0, 1, 4, 3] = -0.3                     # negative values carry no mass
    stats = heatmap_statistics(hm)
    diag = math.hypot(5, 4)
    assert stats.shape == (1, 4)
    assert stats[0, :2].tolist() == pytest.approx([0.8, 0.5])
    assert stats[0, 2].item() == pytest.approx(0.001 / diag, abs=1e-6)
    assert stats[0, 3].item() == pytest.approx(1 / diag, abs=1e-5)


def test_adaptive_pool_matches_torch_on_uneven_grids():
    from posecal.models.heads import adaptive_pool

    x = torch.randn(2, 3, 12, 9)
    torch.testing.assert_close(adaptive_pool(x, (6, 5), "max"), torch.nn.functional.adaptive_max_pool2d(x, (6, 5)))
    torch.testing.assert_close(adaptive_pool(x, (5, 4), "avg"), torch.nn.functional.adaptive_avg_pool2d(x, (5, 4)))
    assert adaptive_pool(x, (12, 9), "max") is x


@pytest.mark.slow
def test_visibility_classes_say_occluded_only_when_clearly_more_likely_than_visible(tmp_path):
    from conftest import tiny_heads_predictor
    from posecal.inference.scoring import OCCLUDED_OVER_VISIBLE, visibility_classes

    assert OCCLUDED_OVER_VISIBLE == 2.0
    probs = np.array([[0.55, 0.25, 0.2],    # absent more likely than not: absent
                      [0.1, 0.5, 0.4],      # argmax occluded, but 0.5 < 2 x 0.4: visible
                      [0.25, 0.5, 0.25],    # 0.5 >= 2 x 0.25: occluded (the boundary counts)
                      [0.2, 0.7, 0.1],      # occluded
                      [0.3, 0.1, 0.6]])     # visible
    np.testing.assert_array_equal(visibility_classes(probs), [0, 2, 1, 1, 2])
    np.testing.assert_array_equal(visibility_classes(probs, 1.0), probs.argmax(-1))   # ratio 1 = the argmax here
    # a plurality of absent that is not a majority is present: occluded or visible by the ratio
    np.testing.assert_array_equal(visibility_classes(np.array([[0.45, 0.45, 0.1], [0.45, 0.1, 0.45]])), [1, 2])
    np.testing.assert_array_equal(visibility_classes(np.stack([probs, probs[::-1]])), [[0, 2, 1, 1, 2],
                                                                                      [2, 1, 1, 2, 0]])
    binary = np.array([[0.6, 0.4], [0.3, 0.7]])
    np.testing.assert_array_equal(visibility_classes(binary), [0, 1])
    person = tiny_heads_predictor(tmp_path)(np.full((64, 48, 3), 90, np.uint8))[0]
    np.testing.assert_array_equal(person.visibility, visibility_classes(person.visibility_probs,
                                                                        keypoint_quality=person.keypoint_quality))


def test_a_keypoint_the_model_places_well_is_present_however_unusual():
    """Absent means outside the picture or not labelled: a keypoint whose calibrated keypoint quality reaches
    PLACED_AT is called present even where p(absent) is above one half (an athlete's limb in an unusual pose)."""
    from posecal.calibration.quality import PLACED_AT, occluded_rule
    from posecal.inference.scoring import visibility_classes

    probs = np.array([[0.7, 0.05, 0.25],     # absent by its probabilities ...
                      [0.7, 0.2, 0.1],
                      [0.7, 0.05, 0.25],
                      [0.2, 0.1, 0.7]])      # present by them
    quality = np.array([PLACED_AT, PLACED_AT, PLACED_AT - 0.01, 0.1])
    # ... but placed at PLACED_AT (the boundary counts): visible, or occluded where p(occluded) >= 2 x p(visible)
    np.testing.assert_array_equal(occluded_rule(probs, 2.0, quality), [2, 1, 0, 2])
    np.testing.assert_array_equal(occluded_rule(probs, 2.0), [0, 0, 0, 2])     # without a quality: as before
    np.testing.assert_array_equal(visibility_classes(probs, 2.0, quality), [2, 1, 0, 2])
    # a quality never turns a present keypoint absent
    np.testing.assert_array_equal(occluded_rule(probs[3:], 2.0, np.zeros(1)), [2])
    # placed well but outside the picture by the model's in_frame (under one half): absent, as a cut-off ankle is
    in_frame = np.array([0.49, 0.5, 0.9, 0.1])
    np.testing.assert_array_equal(occluded_rule(probs, 2.0, quality, in_frame), [0, 1, 0, 2])
    np.testing.assert_array_equal(visibility_classes(probs, 2.0, quality, in_frame), [0, 1, 0, 2])
    assert 0.5 < PLACED_AT < 1.0


def test_each_person_is_called_by_its_own_keypoint_quality_and_in_frame():
    """The estimator hands the rule each person's calibrated keypoint quality and in_frame (what predict, track and
    the person policy then read): placed well inside the picture -> present; placed well outside, or doubtful ->
    absent."""
    from posecal.inference.estimator import Estimator

    res = {"keypoints": np.zeros((2, 3, 2)), "heatmap_scores": np.full((2, 3), 0.5), "oks": np.array([0.8, 0.8]),
           "opks": np.array([[0.9, 0.9, 0.2], [0.9, 0.9, 0.9]]),
           "visibility_probs": np.tile([0.7, 0.1, 0.2], (2, 3, 1)),
           "in_frame": np.array([[0.9, 0.2, 0.9], [0.9, 0.9, 0.9]])}
    first, second = (Estimator._person(res, j, np.array([0, 0, 10, 10.0]), 0.9, 2.0) for j in range(2))
    assert first.visibility.tolist() == [2, 0, 0] and second.visibility.tolist() == [2, 2, 2]
    np.testing.assert_array_equal(first.in_frame, res["in_frame"][0])
