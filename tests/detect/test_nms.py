import numpy as np
import pytest

from posecal.detect.nms import oks_nms, pose_nms, soft_oks_nms
from posecal.skeleton import COCO_SIGMAS

from conftest import STANDING, pose_of

AREA = 120.0 * 160.0 * 0.5


def hand_oks(a, b, area):
    d2 = ((a - b) ** 2).sum(-1)
    return np.mean(np.exp(-d2 / (2 * area * (2 * COCO_SIGMAS) ** 2)))


def poses(*shifts):
    return np.stack([STANDING + np.asarray(s, float) for s in shifts])


def test_identical_poses_keep_higher_score():
    kept = oks_nms(poses((0, 0), (0, 0)), np.array([0.6, 0.8]), np.full(2, AREA))
    assert kept.tolist() == [1]


def test_far_apart_poses_both_kept_best_first():
    kept = oks_nms(poses((0, 0), (500, 0)), np.array([0.6, 0.8]), np.full(2, AREA))
    assert kept.tolist() == [1, 0]


def test_threshold_boundary_is_strict():
    # identical poses have OKS exactly 1: suppressed only when OKS > threshold
    kp, s, a = poses((0, 0), (0, 0)), np.array([0.9, 0.5]), np.full(2, AREA)
    assert oks_nms(kp, s, a, threshold=1.0).tolist() == [0, 1]
    assert oks_nms(kp, s, a, threshold=0.999).tolist() == [0]
    # a 3 px shift: hand-computed OKS, just above / just below it
    kp = poses((0, 0), (3, 0))
    o = hand_oks(kp[0], kp[1], AREA)
    assert 0.5 < o < 0.99
    assert oks_nms(kp, s, a, threshold=o + 1e-9).tolist() == [0, 1]
    assert oks_nms(kp, s, a, threshold=o - 1e-9).tolist() == [0]


def test_reference_area_is_the_kept_pose():
    # same shift; the kept (higher-score) pose's area decides: a large area -> high OKS -> suppressed
    kp, s = poses((0, 0), (3, 0)), np.array([0.9, 0.5])
    thr = hand_oks(kp[0], kp[1], AREA)
    assert oks_nms(kp, s, np.array([4 * AREA, 1.0]), threshold=thr).tolist() == [0]
    assert oks_nms(kp, s, np.array([AREA / 4, 1e6]), threshold=thr).tolist() == [0, 1]


def test_soft_nms_decays_duplicate_by_documented_gaussian():
    kp = poses((0, 0), (0, 0), (400, 0))
    kept, new = soft_oks_nms(kp, np.array([0.9, 0.8, 0.7]), np.full(3, AREA), threshold=0.3, sigma=0.5)
    # duplicate: OKS = 1 -> 0.8 * exp(-1 / 0.5); far pose untouched and now ranked above it
    assert kept.tolist() == [0, 2, 1]
    np.testing.assert_allclose(new, [0.9, 0.7, 0.8 * np.exp(-2.0)], rtol=1e-12)


def test_soft_nms_partial_overlap_and_floor():
    kp = poses((0, 0), (3, 0))
    o = hand_oks(kp[0], kp[1], AREA)
    kept, new = soft_oks_nms(kp, np.array([0.9, 0.8]), np.full(2, AREA), threshold=0.3, sigma=0.5)
    assert kept.tolist() == [0, 1]
    np.testing.assert_allclose(new, [0.9, 0.8 * np.exp(-o ** 2 / 0.5)], rtol=1e-12)
    # below the OKS threshold: no decay at all
    kept, new = soft_oks_nms(kp, np.array([0.9, 0.8]), np.full(2, AREA), threshold=o + 1e-9)
    np.testing.assert_allclose(new, [0.9, 0.8])
    # the decayed duplicate falls under the floor and is dropped
    kept, new = soft_oks_nms(poses((0, 0), (0, 0)), np.array([0.9, 0.01]), np.full(2, AREA), min_score=0.005)
    assert kept.tolist() == [0] and new.tolist() == [0.9]


@pytest.mark.parametrize("fn", [oks_nms, soft_oks_nms])
def test_empty_input(fn):
    out = fn(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0))
    kept = out[0] if isinstance(out, tuple) else out
    assert kept.shape == (0,) and kept.dtype == np.int64
    if isinstance(out, tuple):
        assert out[1].shape == (0,)


def test_seen_keypoints_decide_a_duplicate_by_hand_computed_oks():
    # pose 1 sees only keypoints 0-10, its guesses for the legs (11-16) lie 60 px off: over all 17 keypoints
    # the pair looks like two people, over the 11 keypoints both see it is one person
    a, b = STANDING.copy(), STANDING.copy()
    b[:11] += 2.0
    b[11:] += [0.0, 60.0]
    kp, s, areas = np.stack([a, b]), np.array([0.9, 0.8]), np.full(2, AREA)
    all_17 = hand_oks(a, b, AREA)
    both = np.arange(11)
    shared = np.mean(np.exp(-((a[both] - b[both]) ** 2).sum(-1) / (2 * AREA * (2 * COCO_SIGMAS[both]) ** 2)))
    assert all_17 < 0.7 < shared
    seen = np.ones((2, 17), bool)
    seen[1, 11:] = False
    assert oks_nms(kp, s, areas, threshold=0.7).tolist() == [0, 1]
    assert oks_nms(kp, s, areas, threshold=0.7, seen=seen).tolist() == [0]
    assert oks_nms(kp, s, areas, threshold=shared + 1e-9, seen=seen).tolist() == [0, 1]
    # fewer than MIN_SHARED keypoints seen by both (strict and loose alike): never a duplicate
    few = np.zeros((2, 17), bool)
    few[:, 0] = True
    assert oks_nms(kp, s, areas, threshold=0.0, seen=few).tolist() == [0, 1]
    # too few seen (strict), enough present (loose): compared on the loose mask
    assert oks_nms(kp, s, areas, threshold=0.7, seen=(few, seen)).tolist() == [0]


def test_soft_pose_nms_lowers_a_score_only_above_its_threshold():
    """pose_nms(..., "soft", threshold) hands its threshold to soft-OKS-NMS (it once ran at 0.3 whatever was
    asked): two poses 3 px apart in boxes of 120 x 80 px, their OKS computed by hand."""
    def scored(xy, score):
        person = pose_of(xy, score)
        person.box = np.array([0.0, 0.0, 120.0, 80.0])      # area 9600: the reference area of the OKS
        person.scores = {"oks": score}
        return person

    o = hand_oks(STANDING, STANDING + [3.0, 0.0], 120.0 * 80.0)
    assert 0.3 < o < 0.99
    above = pose_nms([scored(STANDING, 0.9), scored(STANDING + [3.0, 0.0], 0.8)], "soft", o - 1e-9, "oks")
    assert [p.scores["oks"] for p in above] == pytest.approx([0.9, 0.8 * np.exp(-o ** 2 / 0.5)], rel=1e-9)
    below = pose_nms([scored(STANDING, 0.9), scored(STANDING + [3.0, 0.0], 0.8)], "soft", o + 1e-9, "oks")
    assert [p.scores["oks"] for p in below] == [0.9, 0.8]                  # OKS not above it: untouched
    # the policy's duplicate_oks (predict's --nms-threshold) is that threshold
    from posecal.inference.person_policy import DETECTED, PersonPolicy

    loose = PersonPolicy(nms="soft", duplicate_oks=o + 1e-9)
    kept = loose.keep([scored(STANDING, 0.9), scored(STANDING + [3.0, 0.0], 0.8)], DETECTED)
    assert [p.scores["oks"] for p in kept] == [0.9, 0.8]


def test_close_keypoints_count_the_same_named_keypoints_on_one_spot():
    from posecal.detect.nms import CLOSE_OPKS, close_keypoints, merged_poses

    a = STANDING.astype(float)
    b = a.copy()
    b[5:] += [0.0, 80.0]                                  # 5 face keypoints shared, the rest far off
    c = a + [300.0, 0.0]
    areas = np.full(3, AREA)
    close = close_keypoints(np.stack([a, b, c]), areas)
    assert close.tolist() == [[0, 5, 0], [5, 0, 0], [0, 0, 0]]
    # a keypoint either pose calls absent is not shared
    present = np.ones((3, 17), bool)
    present[1, :2] = False
    assert close_keypoints(np.stack([a, b, c]), areas, present)[0, 1] == 3
    # the OPKS bar by hand: a shift of d px on the nose is shared while exp(-d^2 / (2 area k^2)) >= CLOSE_OPKS
    k2 = (2 * COCO_SIGMAS[0]) ** 2
    d = np.sqrt(-np.log(CLOSE_OPKS) * 2 * AREA * k2)
    for shift, shared in ((0.99 * d, 1), (1.01 * d, 0)):
        e = a + [0.0, 500.0]
        e[0] = a[0] + [shift, 0.0]
        assert close_keypoints(np.stack([a, e]), areas[:2])[0, 1] == shared
    # the pose over a (head) and c (legs) is a merge; a and c are not
    m = a.copy()
    m[9:] = c[9:]
    assert merged_poses(np.stack([a, c, m]), areas, None, 4).tolist() == [False, False, True]


def test_a_whole_person_beside_two_boxes_of_their_halves_is_no_merge():
    """An upper-body box (legs called absent) and a legs box (head called absent) of one person each coincide
    with the whole person's pose on their half: the whole pose is that person, not a merge of two."""
    from posecal.detect.nms import merged_poses

    whole = STANDING.astype(float)
    upper, lower = whole.copy(), whole.copy()
    upper[11:] += [0.0, -70.0]                     # its guesses for the legs, called absent
    lower[:5] += [0.0, 90.0]                       # its guess for the head, called absent
    present = np.ones((3, 17), bool)
    present[1, 11:] = False
    present[2, :5] = False
    kps = np.stack([whole, upper, lower])
    assert merged_poses(kps, np.full(3, AREA), present, 4).tolist() == [False, False, False]


def test_a_pose_clearly_better_than_the_best_scored_one_of_its_person_is_kept_instead():
    """Scores (quality x the box's evidence) 0.8 and 0.5 for one person (the same keypoints), qualities 0.6 and 0.9:
    the better pose is kept where its quality is above by more than the margin (0.3 > 0.2), not where the margin
    is wider (0.3 < 0.4) or off; a pose far away stays. A third pose matching only the better one (12 px below it,
    24 px below the best-scored one) goes with it."""
    kp = poses((0, 0), (0, 0), (500, 0))
    s, q, a = np.array([0.8, 0.5, 0.4]), np.array([0.6, 0.9, 0.5]), np.full(3, AREA)
    assert oks_nms(kp, s, a, 0.5, quality=q, margin=0.2).tolist() == [1, 2]
    assert oks_nms(kp, s, a, 0.5, quality=q, margin=0.4).tolist() == [0, 2]
    assert oks_nms(kp, s, a, 0.5).tolist() == [0, 2]
    chain = poses((0, 0), (0, 12), (0, 24))
    assert hand_oks(chain[0], chain[2], AREA) < 0.5 < min(hand_oks(chain[0], chain[1], AREA),
                                                          hand_oks(chain[1], chain[2], AREA))
    assert oks_nms(chain, np.array([0.8, 0.5, 0.3]), np.full(3, AREA), 0.5).tolist() == [0, 2]
    assert oks_nms(chain, np.array([0.8, 0.5, 0.3]), np.full(3, AREA), 0.5, quality=np.array([0.6, 0.9, 0.5]),
                   margin=0.2).tolist() == [1]


def test_a_better_pose_on_a_box_inside_the_best_scored_one_is_a_part_and_does_not_replace_it():
    """vtest's frame 70 (issue 84): the man's box sticks out above the woman's (77 % of it inside) and replaces her
    box's mixed pose; a walker's upper body, whose box lies wholly inside their whole box, does not replace the
    whole walker's pose however much better its pose quality."""
    def person(xy, quality, box, score):
        p = pose_of(xy, quality)
        p.box, p.scores, p.box_score = np.asarray(box, float), {"oks": quality}, score
        return p

    rank = lambda p: p.box_score  # noqa: E731   (the person policy's evidence)
    mixed = person(STANDING, 0.70, [169, 365, 70, 191], 0.484)
    man = person(STANDING + 0.5, 0.87, [187, 341, 44, 104], 0.361)
    assert pose_nms([mixed, man], "oks", 0.6, "oks", rank, margin=0.1) == [man]
    assert pose_nms([mixed, man], "oks", 0.6, "oks", rank) == [mixed]
    whole = person(STANDING, 0.70, [480, 267, 58, 175], 0.557)
    upper = person(STANDING + 0.5, 0.90, [486, 276, 47, 103], 0.378)
    assert pose_nms([whole, upper], "oks", 0.6, "oks", rank, margin=0.1) == [whole]
