"""The pseudo-label filter (lab/tools/pseudo_labels.py, issue 62 item 4): a keypoint is kept only where the three
scales agree and the trust model is sure it is right and visible; what each condition drops, by hand."""
import numpy as np

from pseudo_labels import Filter, covered, keep_mask, scaled_boxes

BOX = np.array([10.0, 20.0, 40.0, 90.0])   # sqrt(area) = 60 px


def _answers(k=4):
    """Three scales' answers for k keypoints that agree exactly, with high quality and p(visible)."""
    kp = np.tile(np.arange(k * 2, dtype=float).reshape(1, k, 2) * 10, (3, 1, 1))
    quality = np.full((3, k), 0.9)
    probs = np.tile(np.array([0.02, 0.08, 0.9]), (3, k, 1))
    return kp, quality, probs


def test_agreeing_sure_keypoints_are_kept_at_their_mean():
    kp, q, p = _answers()
    kp[0, 1] += [2.0, 0.0]
    kp[2, 1] -= [2.0, 0.0]   # scales spread by 2 px about the same mean
    keep, mean = keep_mask(kp, q, p, BOX, Filter(0.7, 0.8, 0.05))
    assert keep.all()
    np.testing.assert_allclose(mean, kp[1])


def test_each_condition_drops_what_it_should():
    rule = Filter(min_quality=0.7, min_visible=0.8, max_spread=0.05)   # spread limit 0.05 x 60 = 3 px
    kp, q, p = _answers()
    kp[2, 0] += [3.5, 0.0]          # keypoint 0: one scale 3.5 - 1.17 = 2.33 px from the mean: kept
    kp[2, 1] += [6.0, 0.0]          # keypoint 1: one scale 4 px from the mean: the scales disagree
    q[:, 2] = [0.9, 0.6, 0.5]       # keypoint 2: mean quality 0.667 < 0.7
    p[:, 3] = [0.3, 0.3, 0.4]       # keypoint 3: p(visible) 0.4: maybe hidden
    keep, _ = keep_mask(kp, q, p, BOX, rule)
    assert keep.tolist() == [True, False, False, False]
    loose = Filter(min_quality=0.6, min_visible=0.3, max_spread=0.1)
    assert keep_mask(kp, q, p, BOX, loose)[0].tolist() == [True, True, True, True]


def test_scaled_boxes_keep_the_centre_and_the_people_a_label_covers():
    boxes = scaled_boxes(BOX, (0.5, 1.0, 2.0))
    np.testing.assert_allclose(boxes[:, :2] + boxes[:, 2:] / 2, [[30.0, 65.0]] * 3)
    np.testing.assert_allclose(boxes[:, 2:], [[20, 45], [40, 90], [80, 180]])
    assert covered(BOX, np.array([[0.0, 0.0], [30.0, 100.0]]))
    assert not covered(BOX, np.array([[0.0, 0.0], [60.0, 100.0]]))
    assert not covered(BOX, np.zeros((0, 2)))
