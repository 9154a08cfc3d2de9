"""Both shipped detectors merged (posecal/detect/union.py, `--detector ssd+nanodet`): the common score scale, the
merge on hand-made boxes, and the shipped files loaded and run through load_detector and detection_setup."""
import numpy as np
import pytest

from posecal.detect.detector import load_detector
from posecal.detect.nanodet import NANODET_THRESHOLD, NanoDetPersonDetector
from posecal.detect.ssd import GREY_THRESHOLD_FACTOR, SsdPersonDetector
from posecal.metrics.boxes import box_iou
from posecal.detect.union import (
    COMMON_SURE,
    MERGE_IOU,
    UnionPersonDetector,
    from_common,
    merge_detections,
    to_common,
)


def test_common_scale_puts_each_detectors_own_threshold_at_the_sure_score():
    # the SSD's scale is the common one: its scores are unchanged
    np.testing.assert_allclose(to_common([0.0, 0.15, 0.3, 0.6, 1.0], 0.3), [0.0, 0.15, 0.3, 0.6, 1.0])
    # NanoDet's working threshold lands on the sure score, 0 and 1 stay, halfway stays halfway on each side
    np.testing.assert_allclose(to_common([0.0, NANODET_THRESHOLD / 2, NANODET_THRESHOLD, 1.0], NANODET_THRESHOLD),
                               [0.0, COMMON_SURE / 2, COMMON_SURE, 1.0])
    np.testing.assert_allclose(to_common([(1 + NANODET_THRESHOLD) / 2], NANODET_THRESHOLD), [(1 + COMMON_SURE) / 2])
    # from_common is its inverse: the union's floor 0.15 runs NanoDet at 0.1625
    for sure in (0.25, 0.3, NANODET_THRESHOLD):
        for t in (0.05, 0.15, 0.3, 0.5, 0.9):
            assert to_common([from_common(t, sure)], sure)[0] == pytest.approx(t)
    assert from_common(0.15, NANODET_THRESHOLD) == pytest.approx(0.1625)
    # monotone: a detector's own ranking is kept
    s = np.linspace(0, 1, 101)
    assert (np.diff(to_common(s, NANODET_THRESHOLD)) > 0).all()


def test_overlapping_boxes_of_the_two_detectors_become_one_and_distinct_ones_stay():
    ssd = (np.array([[10.0, 10, 100, 200], [400, 50, 60, 120]]), np.array([0.5, 0.2]))
    nano = (np.array([[14.0, 12, 100, 196], [200, 30, 80, 150]]), np.array([0.7, 0.35]))
    boxes, scores, source, index = merge_detections([ssd, nano], threshold=0.1, merge_iou=0.5)
    # person 1: both found it (IoU ~0.9); NanoDet is surer, its box is kept, the SSD's dropped
    # person 2 (only NanoDet) and person 3 (only the SSD, unsure) stay; best first
    np.testing.assert_allclose(scores, [0.7, 0.35, 0.2])
    assert source.tolist() == [1, 1, 0] and index.tolist() == [0, 1, 1]
    np.testing.assert_allclose(boxes[0], nano[0][0])
    np.testing.assert_allclose(boxes[2], ssd[0][1])


def test_merge_thresholds_on_the_common_scale_and_respects_the_merge_iou():
    a = (np.array([[0.0, 0, 100, 100]]), np.array([0.4]))
    b = (np.array([[30.0, 0, 100, 100]]), np.array([0.3]))            # IoU with a: 70 / 130 = 0.54
    assert len(merge_detections([a, b], 0.1, merge_iou=0.5)[1]) == 1
    assert len(merge_detections([a, b], 0.1, merge_iou=0.6)[1]) == 2  # not overlapping enough to be one
    assert merge_detections([a, b], 0.35, merge_iou=0.6)[1].tolist() == [0.4]   # b under the threshold
    # a detector's own boxes are not suppressed again by their own kind (its NMS already ran)
    own = (np.array([[0.0, 0, 100, 100], [10.0, 0, 100, 100]]), np.array([0.5, 0.4]))
    boxes, _, source, _ = merge_detections([own, (np.zeros((0, 4)), np.zeros(0))], 0.1, merge_iou=0.3)
    assert len(boxes) == 2 and source.tolist() == [0, 0]
    # nothing from either
    boxes, scores, _, _ = merge_detections([(np.zeros((0, 4)), np.zeros(0))] * 2, 0.1)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_a_grey_picture_lowers_the_ssds_sure_score_inside_the_union():
    union = UnionPersonDetector.__new__(UnionPersonDetector)   # the arithmetic only, no sessions
    union.sures, union.score_threshold, union.merge_iou = (0.3, NANODET_THRESHOLD), 0.15, MERGE_IOU
    union.detectors = (SsdPersonDetector.__new__(SsdPersonDetector),
                       NanoDetPersonDetector.__new__(NanoDetPersonDetector))
    colour = np.zeros((40, 40, 3), np.uint8)
    colour[..., 2] = 200
    grey = np.full((40, 40, 3), 90, np.uint8)
    assert union.sure_scores(colour) == pytest.approx((0.3, NANODET_THRESHOLD))
    assert union.sure_scores(grey) == pytest.approx((0.3 * GREY_THRESHOLD_FACTOR, NANODET_THRESHOLD))
    # an SSD box at 0.25 on a grey picture is one the SSD is sure of: on the common scale at the sure score
    box = (np.array([[0.0, 0, 10, 20]]), np.array([0.3 * GREY_THRESHOLD_FACTOR]))
    _, scores, _, _ = union.merge(grey, [box, (np.zeros((0, 4)), np.zeros(0))])
    assert scores[0] == pytest.approx(COMMON_SURE)
    assert union.threshold_factor(grey) == 1.0


@pytest.fixture(scope="module")
def union():
    return load_detector("ssd+nanodet", threads=1)


def test_load_detector_gives_the_union_of_the_shipped_files(union):
    assert isinstance(union, UnionPersonDetector)
    assert isinstance(load_detector("SSD+NanoDet", threads=1), UnionPersonDetector)   # names are case-blind
    ssd, nano = union.detectors
    assert isinstance(ssd, SsdPersonDetector) and isinstance(nano, NanoDetPersonDetector)
    # the default threshold is each detector's own working one
    assert union.score_threshold == COMMON_SURE
    assert ssd.score_threshold == pytest.approx(0.3) and nano.score_threshold == pytest.approx(NANODET_THRESHOLD)
    low = load_detector("ssd+nanodet", 0.15, threads=1)
    assert low.detectors[0].score_threshold == pytest.approx(0.15)
    assert low.detectors[1].score_threshold == pytest.approx(0.1625)


def test_the_union_finds_the_astronaut_once(union):
    data = pytest.importorskip("skimage.data")
    bgr = np.ascontiguousarray(np.asarray(data.astronaut())[:, :, ::-1])
    boxes, scores = union(bgr)
    assert len(boxes) >= 1 and np.all(np.diff(scores) <= 0)
    assert boxes[0][3] > 400 and scores[0] >= COMMON_SURE          # her, tall, sure
    # the same as merging the two detectors' own outputs
    expect = union.merge(bgr, [d(bgr) for d in union.detectors])
    np.testing.assert_allclose(boxes, expect[0])
    np.testing.assert_allclose(scores, expect[1])
    # at most one box on her (IoU > merge_iou with her best box)
    assert (box_iou(boxes[0], boxes)[0] > union.merge_iou).sum() == 1


def test_the_union_is_trust_guided_like_the_ssd():
    from posecal.inference.person_policy import DETECTOR_FLOOR, STILL, SURE_SCORE
    from posecal.inference.pipeline import detection_setup

    threshold, policy = detection_setup("ssd+nanodet", None, True, STILL)
    assert threshold == DETECTOR_FLOOR and policy.sure_score == SURE_SCORE == COMMON_SURE
    threshold, policy = detection_setup("ssd+nanodet", 0.4, True, STILL)
    assert threshold == 0.4 and policy.sure_score is None
    threshold, policy = detection_setup("nanodet", None, True, STILL)
    assert threshold is None and policy.sure_score is None
