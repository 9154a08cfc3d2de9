import copy

import numpy as np
import pytest

from posecal.metrics.coco_ap import load_coco_gt
from posecal.metrics.oks import oks, opks
from posecal.skeleton import COCO_SIGMAS

from conftest import COCO_CROPS, needs_shared


def test_opks_hand_computed():
    gt = np.zeros((17, 2))
    pred = np.zeros((17, 2))
    pred[5] = (3.0, 4.0)                       # d = 5 on left shoulder, sigma .079
    area = 400.0
    ks = opks(pred, gt, area)
    expected = np.exp(-25 / (2 * 400 * (2 * 0.079) ** 2))
    assert ks[5] == pytest.approx(expected, rel=1e-12)
    assert ks[0] == pytest.approx(1.0)
    vis = np.zeros(17)
    vis[[0, 5]] = 2
    assert oks(pred, gt, vis, area) == pytest.approx((1 + expected) / 2)
    assert np.isnan(oks(pred, gt, np.zeros(17), area))


def _compare_with_pycocotools(ann_file, limit=None):
    """Perturb every GT pose, score it with pycocotools' computeOks and with ours."""
    from pycocotools.cocoeval import COCOeval

    gt = load_coco_gt(ann_file)
    rng = np.random.default_rng(0)
    anns = [a for a in gt.dataset["annotations"] if a["num_keypoints"] > 0][:limit]
    results = []
    for a in anns:
        kp = np.array(a["keypoints"], float).reshape(17, 3)
        pred = kp[:, :2] + rng.normal(0, 6, (17, 2))
        results.append({"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                        "keypoints": np.concatenate([pred, np.ones((17, 1))], 1).reshape(-1).tolist()})
    dt = gt.loadRes(copy.deepcopy(results))
    ev = COCOeval(gt, dt, "keypoints")
    ev.params.imgIds = sorted({a["image_id"] for a in anns})
    ev._prepare()
    for a, r in zip(anns, results):
        theirs = ev.computeOks(a["image_id"], 1)
        g = np.array(a["keypoints"], float).reshape(17, 3)
        p = np.array(r["keypoints"]).reshape(17, 3)[:, :2]
        ours = oks(p, g[:, :2], g[:, 2], a["area"])
        # one GT and one prediction per crop image in these files
        assert np.asarray(theirs).size == 1
        assert ours == pytest.approx(float(np.asarray(theirs).ravel()[0]), rel=1e-9, abs=1e-12)


def test_oks_equals_pycocotools_on_synthetic_file(tiny_coco):
    ann_file, _ = tiny_coco
    _compare_with_pycocotools(ann_file)


@needs_shared
def test_oks_equals_pycocotools_on_real_annotations():
    _compare_with_pycocotools(COCO_CROPS / "annotations" / "val.json", limit=300)


def test_sigmas_are_cocos():
    assert len(COCO_SIGMAS) == 17 and COCO_SIGMAS[0] == 0.026 and COCO_SIGMAS[11] == 0.107


def test_moved_opks_is_the_expected_opks_of_a_gaussian_error_moved_by_d():
    from posecal.metrics.oks import moved_opks
    rng = np.random.default_rng(0)
    area, sigmas = 5000.0, np.full(1, 0.05)
    c2 = (2 * 0.05) ** 2 * area                                   # c = s * kappa = 7.07 px
    for sigma, d in ((3.0, 0.0), (3.0, 6.0), (8.0, 4.0), (1.0, 12.0)):
        err = rng.normal(0, sigma, (200_000, 2))
        q = np.exp(-(err ** 2).sum(1) / (2 * c2)).mean()          # the keypoint's expected OPKS where it was
        moved = np.exp(-((err + [d, 0]) ** 2).sum(1) / (2 * c2)).mean()   # ... and after moving it by d
        assert moved_opks(np.array([q]), np.array([d * d]), area, sigmas)[0] == pytest.approx(moved, abs=3e-3)
    # by hand: q = 0.5 moved by d with d^2 = 2 c^2 -> 0.5 * exp(-0.5)
    assert moved_opks(np.array([0.5]), np.array([2 * c2]), area, sigmas)[0] == pytest.approx(0.5 * np.exp(-0.5))
    assert moved_opks(np.array([0.7]), np.array([0.0]), area, sigmas)[0] == pytest.approx(0.7)


def test_oks_either_side_forgives_a_label_given_from_the_viewers_side_and_nothing_else():
    from posecal.metrics.oks import oks_either_side
    from posecal.skeleton import flip_permutation
    rng = np.random.default_rng(1)
    truth = np.c_[rng.uniform(0, 200, (17, 2)), np.full(17, 2.0)]
    truth[0, 2] = 0                                    # the nose unlabelled: it stays out of both
    area = 3000.0
    mirrored = truth[flip_permutation()]              # the person's left labelled as right and back
    pose = truth[:, :2].copy()
    assert oks(pose, mirrored[:, :2], mirrored[:, 2], area) < 0.5
    assert oks_either_side(pose, mirrored[:, :2], mirrored[:, 2], area) == pytest.approx(1.0)
    # a pose that fits neither side is scored as it is: the higher of the two, by hand
    off = pose + [0.0, 12.0]
    by_hand = np.exp(-144.0 / (2 * area * (2 * COCO_SIGMAS[1:]) ** 2)).mean()
    assert oks_either_side(off, truth[:, :2], truth[:, 2], area) == pytest.approx(by_hand)
    # batched over persons, unlabelled persons stay NaN
    both = oks_either_side(np.stack([pose, pose]), np.stack([mirrored[:, :2]] * 2),
                           np.stack([mirrored[:, 2], np.zeros(17)]), np.array([area, area]))
    assert both[0] == pytest.approx(1.0) and np.isnan(both[1])
