"""The person policy (posecal/inference/person_policy.py), rule by rule, from boxes of each origin; the pipeline
that applies it (the verifier's screen before the pose network); and the verifier's inputs by hand."""
from dataclasses import replace

import numpy as np
import pytest

from posecal.errors import PosecalInputError
from posecal.inference.person_policy import CARRIED, DETECTED, GIVEN, STILL, VIDEO, WHOLE, PersonPolicy
from posecal.inference.pipeline import PosePipeline, detection_setup
from posecal.metrics.boxes import inside_share

from conftest import STANDING, pose_of


def scored(xy, quality, vis=2, p_person=None, box_score=1.0):
    """pose_of with its pose scores filled, as the estimator fills them (NMS ranks by scores["oks"])."""
    person = pose_of(xy, quality, vis=vis)
    person.scores = {"oks": quality}
    person.person_probability, person.box_score = p_person, box_score
    return person


def test_screen_judges_each_origin_by_its_own_bar():
    policy = PersonPolicy(sure_score=0.3, min_person=0.2, unsure_person=0.5, carried_person=0.1)
    origins = [DETECTED, DETECTED, DETECTED, DETECTED, CARRIED, CARRIED, GIVEN, WHOLE]
    scores = np.array([0.6, 0.6, 0.2, 0.2, 0.0, 0.0, 1.0, 1.0])
    p = np.array([0.25, 0.15, 0.55, 0.45, 0.12, 0.05, 0.0, 0.0])
    # a sure detection needs 0.2 (a tripod the detector is sure of at 0.15 is not a person), an unsure one 0.5,
    # a carried box 0.1; the caller's boxes and the whole picture are never screened
    assert policy.screen(origins, scores, p).tolist() == [True, False, True, False, True, False, True, True]
    assert policy.screen(origins, scores, None).all()                 # no verifier: the pose rules decide
    # a grey picture lowers the detector's threshold, and the sure score with it: 0.2 >= 0.3 x 0.6
    assert policy.screen([DETECTED], np.array([0.2]), np.array([0.3]), sure_factor=0.6).tolist() == [True]
    assert PersonPolicy(sure_score=None).screen([DETECTED], np.array([0.2]), np.array([0.35])).tolist() == [True]


def test_nobody_rule_duplicates_and_given_boxes():
    a, twin, other = (scored(STANDING, 0.8, p_person=0.9), scored(STANDING + 0.5, 0.6, p_person=0.9),
                      scored(STANDING + [200, 0], 0.7, p_person=0.9))
    policy = PersonPolicy()
    assert policy.keep([twin, a, other], DETECTED) == [a, other]        # the twin is a duplicate of a
    assert policy.keep([twin, a, other], GIVEN) == [twin, a, other]     # the caller's boxes: all kept
    low, unseen = scored(STANDING + [400, 0], 0.2), scored(STANDING + [600, 0], 0.65, vis=1)
    # below 0.3, or nothing visible at a pose quality under unseen_quality: nobody
    assert policy.keep([a, low, unseen], DETECTED) == [a]
    assert PersonPolicy(min_pose_quality=0).keep([low, unseen], DETECTED) == [low, unseen]
    assert policy.keep([low, unseen], WHOLE) == [low, unseen]           # the whole picture given: reported
    assert PersonPolicy(nms="none").keep([twin, a], DETECTED) == [twin, a]
    # origins per pose: a given box beside detected ones is never merged away
    assert policy.keep([twin, a], [GIVEN, DETECTED]) == [twin, a]


def test_a_box_the_verifier_is_sure_of_is_a_person_whatever_its_pose_says():
    curled, unseen = scored(STANDING, 0.2, p_person=0.9), scored(STANDING + [200, 0], 0.65, vis=1, p_person=0.9)
    doubted = scored(STANDING + [400, 0], 0.2, p_person=0.7)
    assert PersonPolicy().keep([curled, unseen, doubted], DETECTED) == []        # the pose rules alone: nobody
    sure = PersonPolicy(sure_person=0.8)
    # 0.7 < 0.8: the pose decides; a verified pose that sees nothing is a person still (the verifier decides)
    assert sure.keep([curled, unseen, doubted], DETECTED) == [curled, unseen]
    # only a detected box: a carried one is still judged by its pose (the whole picture is given: always kept)
    assert sure.keep([curled], CARRIED) == [] and sure.keep([curled], WHOLE) == [curled]
    no_verifier = scored(STANDING, 0.2)
    assert sure.keep([no_verifier], DETECTED) == []
    # the presets answer alike: a sure verifier overrules the pose in pictures and in video
    assert STILL.keep([curled, unseen, doubted], DETECTED) == VIDEO.keep([curled, unseen, doubted], DETECTED) == [
        curled, unseen]


def test_a_pose_trusted_enough_is_somebody_with_no_keypoint_called_visible():
    """unseen_quality: an athlete upside down whose joints the trust model calls occluded, at a pose quality it
    trusts, is somebody; below that bar, or with the gate off, the nobody rule stands."""
    unseen, doubtful = scored(STANDING, 0.85, vis=1, p_person=0.7), scored(STANDING + [200, 0], 0.6, vis=1,
                                                                           p_person=0.7)
    gate = replace(STILL, unseen_quality=0.7)
    assert gate.keep([unseen, doubtful], DETECTED) == [unseen]
    assert replace(STILL, unseen_quality=None).keep([unseen, doubtful], DETECTED) == []
    assert gate.someone_there(unseen) and not gate.someone_there(doubtful)


def test_duplicates_are_ranked_by_the_detectors_score_a_carried_box_counting_least():
    """A carried box and a fresh detection of one person: the fresh detection is kept (a carried box used to count
    as a detection of score 1 and won); between two detections, the tighter box the detector scores higher, not
    the one the verifier (which reads context) likes more."""
    fresh = scored(STANDING, 0.80, p_person=0.6, box_score=0.4)
    carried = scored(STANDING + 0.5, 0.82, p_person=0.9, box_score=0.0)
    carried.box_origin = CARRIED
    assert PersonPolicy().keep([carried, fresh], [CARRIED, DETECTED]) == [fresh]
    assert PersonPolicy().evidence(carried) == PersonPolicy().detector_floor
    tight, loose = scored(STANDING, 0.8, p_person=0.6, box_score=0.5), scored(STANDING + 0.5, 0.8, p_person=0.95,
                                                                              box_score=0.35)
    assert PersonPolicy().keep([loose, tight], DETECTED) == [tight]


def test_of_two_poses_of_one_person_the_rank_weighs_pose_quality_against_the_boxes_score():
    """vtest's frame 70 (issue 84): the box on a woman walking in front of a man (detector score 0.484) got a pose
    with his head and her legs (Q 0.70); the man's own box (0.361) a pose of him (Q 0.87). They agree on the head
    and shoulders, so pose NMS takes them for one person: by score x quality (0.339 against 0.314) the mixed pose
    stays; with the score's weight halved (0.487 against 0.523) the man's. A walker's whole box (0.557) and the box
    of their upper body (0.378) at one pose quality (0.779, 0.782; tracking worlds, vtest scene 0): the whole box
    stays at any weight but none."""
    mixed = scored(STANDING, 0.70, p_person=0.8, box_score=0.484)
    mixed.keypoints = STANDING + np.where(np.arange(17)[:, None] >= 11, [0, 60], 0)   # hips down on another body
    own = scored(STANDING + 0.5, 0.87, p_person=0.7, box_score=0.361)
    assert PersonPolicy(duplicate_evidence=1.0).keep([mixed, own], DETECTED) == [mixed]
    assert PersonPolicy(duplicate_evidence=0.5).keep([mixed, own], DETECTED) == [own]
    assert PersonPolicy(duplicate_evidence=0.5).duplicate_rank(own) == pytest.approx(0.361 ** 0.5)
    whole, upper = scored(STANDING, 0.779, box_score=0.557), scored(STANDING + 0.5, 0.782, box_score=0.378)
    for weight in (1.0, 0.5, 0.25):
        assert PersonPolicy(duplicate_evidence=weight).keep([upper, whole], DETECTED) == [whole], weight
    assert PersonPolicy(duplicate_evidence=0.0).keep([upper, whole], DETECTED) == [upper]


def test_stills_keep_the_walker_behind_over_a_pose_mixing_two_and_videos_the_surer_box():
    """vtest's frame 70 as a still (STILL's duplicate_margin 0.1): the man's own pose (Q 0.87, box 0.361, sticking
    out above the woman's box) over her box's pose with his head (Q 0.70, box 0.484); VIDEO keeps the surer box."""
    mixed = scored(STANDING, 0.70, p_person=0.8, box_score=0.484)
    mixed.box = np.array([169.0, 365, 70, 191])
    own = scored(STANDING + 0.5, 0.87, p_person=0.7, box_score=0.361)
    own.box = np.array([187.0, 341, 44, 104])
    assert STILL.keep([mixed, own], DETECTED) == [own]
    assert VIDEO.keep([mixed, own], DETECTED) == [mixed]


def test_without_a_verifier_an_unsure_detection_needs_a_confirming_pose():
    sure, person, thing = (scored(STANDING + [dx, 0], q, box_score=s) for dx, q, s in ((0, 0.4, 0.6), (100, 0.7, 0.2),
                                                                                       (200, 0.4, 0.2)))
    policy = PersonPolicy(sure_score=0.3, unsure_quality=0.5)
    assert policy.keep([sure, person, thing], DETECTED) == [sure, person]
    sure.pose_quality = 0.2                         # however sure the detector, a pose that says nobody is nobody
    assert policy.keep([sure, person], DETECTED) == [person]


def test_a_doubtful_box_inside_a_person_is_a_part_of_that_person():
    whole = scored(STANDING, 0.8, p_person=0.95, box_score=0.6)
    upper = scored(STANDING, 0.9, p_person=0.8, box_score=0.2)
    upper.keypoints = STANDING[[0] * 17] + np.arange(17)[:, None] * [3.0, 0.0]   # another pose: NMS keeps it
    upper.box = whole.box * [1, 1, 1, 0.5]
    assert PersonPolicy(sure_score=0.3).keep([whole, upper], DETECTED) == [whole]
    upper.box_score = 0.35                          # the detector is sure of it itself: kept
    assert len(PersonPolicy(sure_score=0.3).keep([whole, upper], DETECTED)) == 2
    assert inside_share(upper.box, whole.box) == 1.0


def test_a_box_that_two_people_fill_is_the_box_of_both_not_a_person():
    """Two people walking together, the detector's one box around both (its pose spans them, poorer than either's)
    beside a box for each: the two are reported, the box of both is not (vtest's first seconds, issue 63)."""
    left, right = scored(STANDING, 0.9, p_person=0.9), scored(STANDING + [40, 0], 0.85, p_person=0.9)
    both = scored(STANDING + [20, 10], 0.5, p_person=0.9)
    both.box = np.array([28.0, 16.0, 104.0, 146.0])                   # around both people
    assert inside_share(left.box, both.box) == inside_share(right.box, both.box) == 1.0
    policy = PersonPolicy(group_inside=0.6)
    assert policy.keep([both, left, right], DETECTED) == [left, right]
    assert PersonPolicy().keep([both, left, right], DETECTED) == [both, left, right]      # off
    assert VIDEO.group_inside == 0.6
    # its pose as trusted as one of theirs: a person with someone in front, kept
    both.pose_quality = both.scores["oks"] = 0.88
    assert len(policy.keep([both, left, right], DETECTED)) == 3
    both.pose_quality = both.scores["oks"] = 0.5
    # one of the two far shorter than the box: a part, not a second person
    right.box = right.box * [1, 1, 1, 0.4]
    assert len(policy.keep([both, left, right], DETECTED)) == 3


def test_one_person_by_the_keypoints_both_poses_put_on_one_spot():
    """A walker's second box reaching down to a bollard: its head and shoulders lie on the first pose's to a
    pixel, its arms and legs 60 px off; the mean agreement over the keypoints both see is under DUPLICATE_OKS, yet it is one
    person (SAME_KEYPOINTS on one spot). Two people side by side share no spot and both stay."""
    walker = scored(STANDING, 0.9, p_person=0.9, box_score=0.8)
    second = STANDING.copy()
    second[7:] += [0.0, 60.0]                                      # arms and legs on the bollard
    second[:7] += 0.5
    twice = scored(second, 0.8, p_person=0.9, box_score=0.5)
    neighbour = scored(STANDING + [45, 0], 0.85, p_person=0.9, box_score=0.7)
    assert PersonPolicy(same_keypoints=None).keep([walker, twice, neighbour], DETECTED) == [walker, twice, neighbour]
    assert PersonPolicy().keep([walker, twice, neighbour], DETECTED) == [walker, neighbour]
    assert STILL.same_keypoints == VIDEO.same_keypoints == 4


def test_a_pose_on_two_people_is_dropped_and_both_people_stay():
    """A box over two men: its head and arms on the tall one, its legs on the one in front. Each of the two has
    a pose of his own; the pose over both is a merge, dropped even when ranked first (greedy NMS would have
    dropped both men for it)."""
    tall, front = scored(STANDING, 0.8, p_person=0.9, box_score=0.5), scored(STANDING + [50, 30], 0.8, p_person=0.9,
                                                                             box_score=0.5)
    merged_xy = STANDING.copy()
    merged_xy[11:] = STANDING[11:] + [50, 30]
    merged = scored(merged_xy, 0.9, p_person=0.95, box_score=0.9)
    assert PersonPolicy().keep([merged, tall, front], DETECTED) == [tall, front]
    # with one of the two men missing it is the best pose of the other: kept over his
    assert PersonPolicy().keep([merged, tall], DETECTED) == [merged]


def test_carried_poses_need_the_carried_quality():
    kept, left = scored(STANDING, 0.35, p_person=0.5), scored(STANDING + [200, 0], 0.1, p_person=0.5)
    policy = PersonPolicy(min_pose_quality=0.3, carried_quality=0.15)
    assert policy.keep([kept, left], CARRIED) == [kept]
    assert PersonPolicy(min_pose_quality=0.0).keep([left], CARRIED) == [left]    # 0 keeps all


def test_births_read_p_person_where_the_verifier_judged_else_visible_keypoints():
    policy = PersonPolicy(birth_person=0.5, birth_quality=0.45, birth_visible=3)
    assert policy.born(scored(STANDING, 0.6, p_person=0.7))
    assert not policy.born(scored(STANDING, 0.6, p_person=0.3))               # a tripod: no track
    assert not policy.born(scored(STANDING, 0.4, p_person=0.9))               # a doubtful pose: none either
    back = scored(STANDING, 0.6, vis=1, p_person=0.8)                          # seen from behind: joints occluded
    assert policy.born(back)
    back.person_probability = None                                            # no verifier: needs 3 visible
    assert not policy.born(back)
    back.visibility[:3] = 2
    assert policy.born(back)
    # inside a held person's box: a second pose of them, unless the verifier is sure it frames a person
    lenient = replace(policy, birth_person=0.3, unsure_person=0.5)
    inside = scored(STANDING, 0.6, p_person=0.4)
    assert lenient.born(inside) and not lenient.born(inside, inside_held=0.9)
    inside.person_probability = 0.8
    assert lenient.born(inside, inside_held=0.9)
    inside.person_probability = None                                          # no verifier: never inside
    inside.visibility[:] = 2
    assert lenient.born(inside) and not lenient.born(inside, inside_held=0.9)


def test_presets_and_the_detector_threshold_they_ask_for():
    """The still-picture preset runs the detector permissively and judges unsure boxes; the video preset runs it at
    its sure score (the tracker does across frames what unsure boxes do in a picture). detection_setup gives the
    API, predict and track the same threshold for the same request."""
    assert STILL.sure_score == VIDEO.sure_score and STILL.detector_floor < VIDEO.detector_floor == VIDEO.sure_score
    assert detection_setup("default", None, True, STILL) == (STILL.detector_floor, STILL)
    assert detection_setup("default", None, True, VIDEO) == (VIDEO.sure_score, VIDEO)
    threshold, policy = detection_setup("default", 0.4, True, STILL)
    assert threshold == 0.4 and policy.sure_score is None                       # the user's threshold: all sure
    assert detection_setup("nanodet", None, True, VIDEO)[0] is None            # its own threshold
    assert detection_setup("default", None, False, STILL)[0] is None           # nothing to judge unsure boxes with


def test_the_pipeline_screens_before_the_pose_network_and_passes_p_person_on():
    posed = []

    def estimate(items):
        posed.extend(len(boxes) for _, boxes, _ in items)
        return [[scored(STANDING + [100 * i, 0], 0.8) for i in range(len(boxes))] for _, boxes, _ in items]

    boxes = np.array([[0, 0, 60, 150], [100, 0, 60, 150], [200, 0, 60, 150]], float)
    detector = lambda image: (boxes, np.array([0.6, 0.6, 0.2]))                 # noqa: E731
    verifier = lambda image, b: np.array([0.9, 0.05, 0.7])[:len(b)]             # noqa: E731
    pipeline = PosePipeline(estimate, detector, replace(STILL, unsure_person=0.5), verifier)
    people = pipeline(np.zeros((200, 300, 3), np.uint8))
    assert posed == [2]                                   # the box the verifier called nobody got no pose
    assert [p.person_probability for p in people] == [0.9, 0.7]
    assert [p.box_origin for p in people] == [DETECTED, DETECTED]
    # the caller's boxes are not judged: every one gets a pose, and no p(person)
    given = pipeline.people([(np.zeros((200, 300, 3), np.uint8), boxes, np.ones(3), GIVEN)])[0]
    assert len(given) == 3 and all(p.person_probability is None for p in given)


def test_verifier_inputs_by_hand():
    from posecal.detect.verifier import CONTEXT, INPUT_HW, MASK_HW, box_masks, crop_regions, verifier_inputs

    box = np.array([[100.0, 50.0, 40.0, 120.0]])
    region = crop_regions(box)[0]
    # grown by CONTEXT about the centre (120, 110), then widened to the input's aspect (H / W = 4 / 3)
    h = 120 * CONTEXT
    w = max(40 * CONTEXT, h * INPUT_HW[1] / INPUT_HW[0])
    np.testing.assert_allclose(region, [120 - w / 2, 110 - h / 2, w, h])
    mask = box_masks(box, crop_regions(box))[0, 0]
    assert mask.shape == MASK_HW
    # the box's share of the region is 40 / w wide and 1 / CONTEXT tall: the mask's cells add up to as much
    np.testing.assert_allclose(mask.sum(), MASK_HW[0] * MASK_HW[1] * (40 / w) * (1 / CONTEXT), rtol=1e-6)
    # a centred narrow box: a middle row of cells holds 40 / w of its width, symmetric; the corners nothing
    np.testing.assert_allclose(mask[MASK_HW[0] // 2].sum(), 40 / w * MASK_HW[1], rtol=1e-6)
    np.testing.assert_allclose(mask, mask[:, ::-1], atol=1e-6)
    assert mask.max() <= 1 and mask[0, 0] == 0
    image = np.zeros((300, 300, 3), np.uint8)
    image[50:170, 100:140] = 255                                          # the box itself white
    crops, masks = verifier_inputs(image, box)
    assert crops.shape == (1, 3, *INPUT_HW) and masks.shape == (1, 1, *MASK_HW)
    centre = crops[0, :, INPUT_HW[0] // 2, INPUT_HW[1] // 2]
    assert (centre > 2).all() and (crops[0, :, 1, 1] < -1).all()          # white in the box, black around


@pytest.fixture
def small_verifier(tmp_path):
    """An untrained verifier network with calibration 0.5 * logit - 1 and its exported graph (tmp_path/v.onnx)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from verifier_export import export_verifier
    from posecal.models.verifier import PersonVerifierNet

    torch.manual_seed(0)
    net = PersonVerifierNet(imagenet=False).eval()
    net.head.calibration.copy_(torch.tensor([0.5, -1.0]))
    export_verifier(net, tmp_path / "v.onnx", {"fit_boxes": 3})
    return net, tmp_path / "v.onnx"


def test_verifier_graph_round_trip_and_its_calibration(small_verifier):
    """The exported graph computes what the (fp16-rounded) network computes, its calibration a * logit + b
    included, and carries its record."""
    import torch

    from posecal.detect.verifier import INPUT_HW, MASK_HW, PersonVerifier
    from verifier_export import round_to_fp16
    from posecal.models.verifier import PersonVerifierNet

    net, path = small_verifier
    verifier = PersonVerifier(path, threads=1)
    assert verifier.info == {"fit_boxes": 3}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 20, 60, 150], [200, 30, 80, 90]])
    from posecal.detect.verifier import verifier_inputs

    crops, masks = verifier_inputs(image, boxes)
    assert crops.shape[2:] == INPUT_HW and masks.shape[2:] == MASK_HW
    rounded = round_to_fp16(PersonVerifierNet(imagenet=False).eval())
    rounded.load_state_dict(net.state_dict())
    with torch.no_grad():
        expect = rounded(torch.from_numpy(crops), torch.from_numpy(masks)).numpy()
        logit = rounded.head.logit(rounded.features(torch.from_numpy(crops), torch.from_numpy(masks))).numpy()
    got = verifier(image, boxes)
    np.testing.assert_allclose(got, expect, atol=1e-5)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(0.5 * logit - 1.0))), atol=1e-5)   # the calibration
    assert verifier(image, np.zeros((0, 4))).shape == (0,)


def test_verifier_option_none_turns_it_off_and_a_missing_file_is_one_line(tmp_path, capsys):
    from posecal.cli.main import main
    from posecal.detect.verifier import open_verifier

    assert open_verifier("none") is None and open_verifier(None) is None
    image = np.full((80, 60, 3), 90, np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), image)
    code = main(["predict", str(tmp_path / "a.png"), "--verifier", str(tmp_path / "nope.onnx"), "--model", "fast",
                 "--out", str(tmp_path / "p.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"posecal: error: {tmp_path / 'nope.onnx'}: person verifier file not found " \
                                     "(--verifier default|none|FILE.onnx)"
    assert not (tmp_path / "p.json").exists()


def test_verifier_recalibrated_gives_the_remapped_p_person(small_verifier, tmp_path):
    """recalibrated_verifier_bytes composes a * logit(p) + b with the graph's own calibration: the new graph's
    p(person) is the old one remapped, on the same boxes, and its record says so."""
    from posecal.detect.verifier import PersonVerifier, remapped
    from verifier_export import recalibrated_verifier_bytes

    _, path = small_verifier
    (tmp_path / "r.onnx").write_bytes(recalibrated_verifier_bytes(path.read_bytes(), 0.6, 0.1, {"fitted_on": "test"}))
    before, after = PersonVerifier(path, threads=1), PersonVerifier(tmp_path / "r.onnx", threads=1)
    assert after.info == {"fit_boxes": 3, "reported_calibration": {"fitted_on": "test"}}
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 150], [100, 40, 80, 120], [200, 0, 100, 240]], float)
    p = before(image, boxes)
    want = 1 / (1 + np.exp(-(0.6 * np.log(p / (1 - p)) + 0.1)))              # the map by hand
    np.testing.assert_allclose(after(image, boxes), want, atol=1e-5)
    np.testing.assert_allclose(remapped(p, 0.6, 0.1), want, atol=1e-9)
    with pytest.raises(ValueError, match="not a posecal verifier graph"):
        recalibrated_verifier_bytes(path.read_bytes().replace(b"p_person", b"q_person"), 1, 0, {})


def test_the_policy_thresholds_are_the_chosen_ones_through_the_shipped_verifiers_map():
    """The presets hold the p(person) thresholds as chosen, on a verifier's own scale; opened with the shipped
    verifier, whose p(person) is remapped to the people the product reports (issue 63), each is moved through the
    map its graph records (so the same boxes are kept)."""
    from posecal.detect.verifier import SHIPPED_VERIFIER, PersonVerifier, remapped

    chosen = {(STILL, "min_person"): 0.2, (STILL, "unsure_person"): 0.6, (STILL, "sure_person"): 0.8,
              (STILL, "carried_person"): 0.1, (STILL, "birth_person"): 0.5, (VIDEO, "min_person"): 0.2,
              (VIDEO, "unsure_person"): 0.6, (VIDEO, "sure_person"): 0.8, (VIDEO, "birth_person"): 0.3}
    for (preset, field), value in chosen.items():
        assert getattr(preset, field) == value, field
    if not SHIPPED_VERIFIER.is_file():
        pytest.skip("no shipped verifier in this tree")
    verifier = PersonVerifier(SHIPPED_VERIFIER, threads=1)
    record = verifier.info["reported_calibration"]
    assert verifier.scale_map == (record["a"], record["b"]) != (1.0, 0.0)
    for (preset, field), value in chosen.items():
        moved = getattr(preset.on_scale(*verifier.scale_map), field)
        assert moved == pytest.approx(remapped(value, record["a"], record["b"]), abs=1e-12), field
    assert STILL.on_scale(*verifier.scale_map).min_person == pytest.approx(0.314, abs=5e-4)   # the documented one


def test_a_custom_verifier_is_judged_on_its_own_scale(small_verifier, tiny_model, tmp_path):
    """The policy's thresholds follow the verifier opened: one without a map keeps the chosen numbers, one whose
    graph folds a map into p(person) gets them moved through its map, read from the session's metadata; the two
    keep the same boxes (the map is monotone)."""
    from posecal.detect.verifier import PersonVerifier
    from posecal.inference.predictor import Predictor
    from verifier_export import recalibrated_verifier_bytes

    _, path = small_verifier
    remapped_path = tmp_path / "r.onnx"
    remapped_path.write_bytes(recalibrated_verifier_bytes(path.read_bytes(), 0.6, 0.4, {"a": 0.6, "b": 0.4}))
    own = Predictor(tiny_model, verifier=str(path), backend="torch", threads=1)
    moved = Predictor(tiny_model, verifier=str(remapped_path), backend="torch", threads=1)
    assert own.verifier.scale_map == (1.0, 0.0) and moved.verifier.scale_map == (0.6, 0.4)
    assert own.pipeline.policy.min_person == STILL.min_person == 0.2
    z = 0.6 * np.log(0.2 / 0.8) + 0.4
    assert moved.pipeline.policy.min_person == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-12)    # by hand: 0.3755
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 150], [100, 40, 80, 120], [200, 0, 100, 240], [5, 100, 300, 60]], float)
    origins, scores = [DETECTED] * 4, np.array([0.9, 0.2, 0.5, 0.25])
    for predictor in (own, moved):
        assert isinstance(predictor.verifier, PersonVerifier)
    kept = [p.pipeline.policy.screen(origins, scores, p.verifier(image, boxes)) for p in (own, moved)]
    np.testing.assert_array_equal(kept[0], kept[1])


def test_a_verifier_record_that_is_not_json_is_one_line(small_verifier, tmp_path):
    from posecal.detect.verifier import METADATA_KEY, PersonVerifier

    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(small_verifier[1]))
    next(p for p in proto.metadata_props if p.key == METADATA_KEY).value = "{not json"
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(PosecalInputError, match=r"bad.onnx: metadata 'posecal_verifier' is not JSON"):
        PersonVerifier(tmp_path / "bad.onnx", threads=1)
