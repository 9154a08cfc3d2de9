"""Keypoints carried by optical flow between detector frames, and the tracker's use of trust: keypoints predicted
present only in the association, a track whose pose quality collapses under another person held as occluded, no birth
from a pose with no keypoint called visible."""
import dataclasses
from dataclasses import replace

import cv2
import numpy as np
import pytest

from posecal.inference.person_policy import VIDEO
from posecal.tracking.associate import trusted
from posecal.tracking.flow import FrameFlow, carried_poses, flow_points, person_step
from posecal.tracking.tracker import HELD_QUALITY, Tracker, TrackerConfig

from conftest import STANDING, pose_of


def _texture(h=240, w=320, seed=0):
    """A smooth random texture (blurred noise): every point has structure for Lucas-Kanade to follow."""
    noise = np.random.default_rng(seed).integers(0, 255, (h, w)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def test_flow_follows_a_known_shift_and_moves_lost_points_with_the_rest():
    a = _texture()
    shift = np.float32([[1, 0, 5], [0, 1, 3]])                  # the image moves 5 px right, 3 px down
    b = cv2.warpAffine(a, shift, a.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    pts = np.array([[60.0, 50], [100, 120], [200, 80], [150, 150], [250, 60]])
    moved, held = flow_points(a, b, pts)
    assert held.all()
    assert moved == pytest.approx(pts + [5, 3], abs=0.3)
    xy = STANDING + [80, 40]
    pose = dataclasses.replace(pose_of(xy), visibility=np.where(np.arange(17) == 0, 0, 2))   # the nose: absent
    (out,) = carried_poses([pose], a, b)
    assert out.keypoints == pytest.approx(xy + [5, 3], abs=0.4)  # the absent one moves with the median of the rest
    assert out.box[:2] == pytest.approx(pose.box[:2] + [5, 3], abs=0.4) and out.box[2:] == pytest.approx(pose.box[2:])
    assert out.pose_quality == pose.pose_quality and (out.visibility == pose.visibility).all()


def test_person_step_follows_the_points_that_move_with_the_track():
    # steps measured on the tracking bench: a walker at 21 px a frame whose limb points mostly see still background
    steps = np.array([[-1.0, 0.5], [21.0, -0.5], [3.0, 0.0], [-1.0, 1.0]])
    assert person_step(steps, None) == pytest.approx([1.0, 0.25])             # the median: the background's
    assert person_step(steps, np.array([20.0, 0.0])) == pytest.approx([21.0, -0.5])
    assert person_step(np.zeros((0, 2)), np.array([20.0, -1.0])) == pytest.approx([20.0, -1.0])   # none held
    assert person_step(np.zeros((0, 2)), None) == pytest.approx([0.0, 0.0])
    # a person who stops: no point moved with the old velocity, so the flow's median is believed
    assert person_step(np.array([[0.0, 0.0], [0.5, 0.0], [-0.5, 0.0]]), np.array([20.0, 0.0])) == \
        pytest.approx([0.0, 0.0])


def test_a_walker_whose_keypoints_see_mostly_background_is_carried_with_them():
    """A textured person 40 px wide moves 12 px right over a still textured room; 4 of its 10 keypoints lie inside
    it, 6 just outside its edges (what a thin limb's window sees). By the median of all points it stays put; with
    its track's velocity it moves with the person."""
    room, body = _texture(seed=1), _texture(h=100, w=40, seed=2)
    a, b = room.copy(), room.copy()
    a[60:160, 100:140], b[60:160, 112:152] = body, body
    inside = np.array([[118.0, 80], [120, 100], [124, 130], [118, 145]])
    outside = np.array([[80.0, 70], [84, 100], [78, 140], [165, 75], [170, 110], [168, 150]])
    pose = pose_of(np.vstack([inside, outside]))
    moved, held = flow_points(a, b, np.vstack([inside, outside]))
    assert held.all() and moved[:4] - inside == pytest.approx(np.tile([12, 0], (4, 1)), abs=0.5)
    (still,) = carried_poses([pose], a, b)
    (walked,) = carried_poses([pose], a, b, [np.array([11.0, 0.0])])
    assert still.box[:2] == pytest.approx(pose.box[:2], abs=0.5)
    assert walked.box[:2] == pytest.approx(pose.box[:2] + [12, 0], abs=0.5)
    assert walked.keypoints[:4] == pytest.approx(inside + [12, 0], abs=0.5)


def test_frame_flow_hands_over_the_previous_frame():
    flow, frame = FrameFlow(), np.zeros((8, 8, 3), np.uint8)
    previous, now = flow.advance(frame)
    assert previous is None and now.shape == (8, 8)
    previous, _ = flow.advance(frame + 7)
    assert previous is now and flow.previous[0, 0] == 7


def test_follow_keeps_ids_and_lets_unseen_tracks_miss():
    tracker = Tracker(TrackerConfig(smooth=False, max_misses=1), policy=replace(VIDEO, birth_quality=0))
    a, b = pose_of(STANDING), pose_of(STANDING + [300, 0], quality=0.6)
    assert [i for i, _ in tracker.update([a, b], 0.0)] == [1, 2]
    seen = tracker.seen()
    moved = [dataclasses.replace(tr.person, keypoints=tr.person.keypoints + [4, 0]) for tr in seen]
    out = tracker.follow(seen[:1], moved[:1], 0.1)                        # only A carried
    assert [i for i, _ in out] == [1] and out[0][1].keypoints == pytest.approx(STANDING + [4, 0])
    assert tracker.tracks[0].velocity == pytest.approx([4, 0])
    assert [tr.misses for tr in tracker.tracks] == [0, 1]                 # B missed the carried frame
    tracker.follow(tracker.seen(), [tracker.tracks[0].person], 0.2)
    assert [tr.track_id for tr in tracker.tracks] == [1] and tracker.tracks[0].undetected == 2   # B: gone


def test_keypoints_predicted_absent_do_not_drive_matching():
    q, vis = np.array([0.9, 0.2, 0.9, 0.1]), np.array([2, 1, 0, 2])
    assert trusted(q, vis).tolist() == [True, True, False, True]            # present: visible or occluded
    assert trusted(q, None).tolist() == [True, False, True, False]          # no visibility: quality >= 0.3


def test_a_collapsed_pose_under_another_person_is_held_not_taken():
    """B stands half behind A; B's pose then falls to quality 0.2 (B has had 0.8) where it overlaps A's: B is
    held as occluded (its pose not taken) and keeps its id when it shows again."""
    for collapse, held in ((0.8, True), (0.0, False)):
        tracker = Tracker(TrackerConfig(smooth=False, collapse=collapse, report_hidden=0),
                          policy=replace(VIDEO, birth_overlap=1.0))
        for f in range(3):
            assert set(dict(tracker.update([pose_of(STANDING), pose_of(STANDING + [20, 0])], f / 10))) == {1, 2}
        out = dict(tracker.update([pose_of(STANDING), pose_of(STANDING + [20, 0], quality=0.2)], 0.3))
        assert (2 not in out) == held and 1 in out
        assert tracker.tracks[1].misses == (1 if held else 0)
        out = dict(tracker.update([pose_of(STANDING), pose_of(STANDING + [20, 0])], 0.4))
        assert set(out) == {1, 2}
    tracker = Tracker(TrackerConfig(smooth=False, collapse=0.8))          # alone, a bad frame is not a hiding
    for f in range(3):
        tracker.update([pose_of(STANDING)], f / 10)
    assert set(dict(tracker.update([pose_of(STANDING, quality=0.2)], 0.3))) == {1}


def test_a_hidden_track_is_reported_behind_the_person_in_front_for_a_few_frames():
    """B walks right behind A (from 10 px on, 4 px a frame), then only A is seen: B is reported where its velocity says it is,
    every keypoint occluded and its quality x HELD_QUALITY, for report_hidden frames; then no more."""
    tracker = Tracker(TrackerConfig(smooth=False, report_hidden=2), policy=replace(VIDEO, birth_overlap=1.0))
    for f in range(4):
        out = dict(tracker.update([pose_of(STANDING), pose_of(STANDING + [10 + 4 * f, 0])], f / 10))
    assert set(out) == {1, 2}
    for f, expect in ((4, {1, 2}), (5, {1, 2}), (6, {1})):
        out = dict(tracker.update([pose_of(STANDING)], f / 10))
        assert set(out) == expect
        if 2 in out:
            b = out[2]
            assert b.keypoints == pytest.approx(STANDING + [10 + 4 * f, 0])
            assert (b.visibility == 1).all() and b.pose_quality == pytest.approx(0.8 * HELD_QUALITY)
            assert b.keypoint_quality == pytest.approx(np.full(17, 0.9 * HELD_QUALITY))
    alone = Tracker(TrackerConfig(smooth=False, report_hidden=2))         # nobody in front: not reported
    for f in range(3):
        alone.update([pose_of(STANDING + [300, 0])], f / 10)
    assert alone.update([], 0.3) == []


def test_a_fast_walker_behind_another_is_judged_where_they_are_reported():
    """B crosses behind A at 12 px a frame and is hidden at 30 px right of A (box IoU 0.36 with A's, above
    hold_overlap 0.3); one frame further on (42 px) the overlap would be 0.2: B is reported held, the overlap taken
    from the box B is reported with."""
    tracker = Tracker(TrackerConfig(smooth=False, report_hidden=2), policy=replace(VIDEO, birth_overlap=1.0))
    for f in range(4):
        out = dict(tracker.update([pose_of(STANDING), pose_of(STANDING + [-18 + 12 * f, 0])], f / 10))
    assert set(out) == {1, 2}
    out = dict(tracker.update([pose_of(STANDING)], 0.4))
    assert set(out) == {1, 2} and out[2].pose_source == "held"
    assert out[2].keypoints == pytest.approx(STANDING + [30, 0])


def test_no_birth_from_a_pose_with_nothing_visible():
    post = pose_of(STANDING + [300, 0], quality=0.8, vis=1)                # the detector's post: all occluded
    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_visible=3))
    assert all(tracker.update([post], f / 10) == [] for f in range(4))
    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_visible=0))
    assert [i for i, _ in tracker.update([post], 0.0)] == [1]


def test_fitted_box_is_the_mean_of_the_crop_box_and_the_padded_keypoint_box():
    from posecal.inference.fitted_box import fitted_box

    xy = np.array([[110.0, 110], [140, 190]] + [[125, 150]] * 15)            # keypoints span 110-140 x 110-190
    p = dataclasses.replace(pose_of(xy), box=np.array([100.0, 100, 50, 100]))
    # keypoint box padded by 0.08 / 0.12 / 0.06 of its height 80: (103.6, 100.4) - (146.4, 194.8); the mean with
    # the box (100, 100) - (150, 200): (101.8, 100.2) - (148.2, 197.4)
    assert fitted_box(p, 640, 480) == pytest.approx([101.8, 100.2, 46.4, 97.2])
    assert fitted_box(p, 120, 480)[[0, 2]] == pytest.approx([101.8, 18.2])   # clipped at the frame's right edge
    hidden = dataclasses.replace(p, visibility=np.where(np.arange(17) == 1, 0, 2))   # the low point: absent
    assert fitted_box(hidden, 640, 480)[3] < 97.2


def test_a_person_half_hidden_behind_another_for_20_frames_keeps_their_id():
    """Issue 40: A stands; B stands half behind A (boxes IoU ~0.36). For 20 frames B's near side is hidden: its
    keypoints there are occluded and doubtful and its pose quality drops to 0.45. B keeps one id through it and
    after, A keeps theirs, and B's doubtful poses start no third track (default tracker)."""
    rng = np.random.default_rng(3)
    tracker = Tracker()
    left = np.arange(17) % 2 == 1                                  # COCO's left-side keypoints
    ids = {"A": set(), "B": set()}
    for f in range(40):
        a = pose_of(STANDING + [100, 0] + rng.normal(0, 1, (17, 2)))
        b = pose_of(STANDING + [130, 0] + rng.normal(0, 1, (17, 2)))
        if 10 <= f < 30:                                           # half hidden behind A
            b = dataclasses.replace(b, pose_quality=0.45, visibility=np.where(left, 1, 2),
                                    keypoint_quality=np.where(left, 0.3, 0.9))
        people = [("B", b), ("A", a)] if f % 2 else [("A", a), ("B", b)]
        out = tracker.update([p for _, p in people], f / 15)
        for track_id, p in out:                                    # A stands about x = 160, B about x = 190
            ids["A" if np.mean(p.keypoints[:, 0]) < 175 else "B"].add(track_id)
        if f >= 30:
            assert len(out) == 2, f                                # both reported once B shows again
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]
    assert tracker.next_id == 3                                    # no third id was ever given


def test_a_flow_carried_pose_the_policy_rejects_on_a_detector_frame_is_rejected_too(monkeypatch):
    """Between detector frames the person policy decides on the poses optical flow carried, as on a detector
    frame's: a pose below the policy's pose quality, and a second pose of one person (two tracks the flow carried
    onto one walker), are dropped there, and their tracks miss this frame, as they would on a detector frame."""
    from types import SimpleNamespace

    from posecal.data.sources import Frame
    from posecal.inference.person_policy import DETECTED
    from posecal.tracking import pose_tracker
    from posecal.tracking.pose_tracker import TrackConfig, _tracked_people

    def detected(xy, quality, score):
        return replace(pose_of(xy, quality), box_origin=DETECTED, box_score=score, scores={"oks": quality})

    a, b, poor = detected(STANDING, 0.8, 0.9), detected(STANDING + [150, 0], 0.7, 0.8), \
        detected(STANDING + [300, 0], 0.2, 0.9)
    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_quality=0))
    assert [i for i, _ in tracker.update([a, b, poor], 0.0)] == [1, 2, 3]
    # the flow's output, by hand: A and the poor pose stay, B is carried onto A's walker
    carried = [a, replace(b, keypoints=STANDING + [2, 1], box=a.box + [2, 1, 0, 0]), poor]
    monkeypatch.setattr(pose_tracker, "carried_and_held",
                        lambda people, *_: ([replace(p) for p in carried], np.ones(len(carried))))
    # on a detector frame the policy keeps A alone: B's pose is A's person again, the poor pose is nobody
    assert [p.keypoints.tolist() for p in VIDEO.keep([replace(p) for p in carried], DETECTED, "oks")] \
        == [a.keypoints.tolist()]
    predictor = SimpleNamespace(pipeline=SimpleNamespace(policy=VIDEO, sure_factor=lambda bgr, origins: 1.0))
    flow, image = FrameFlow(), np.zeros((240, 480, 3), np.uint8)
    flow.advance(image)
    out = _tracked_people(Frame("f#1", None, image, 1), None, predictor, tracker, 25.0, TrackConfig([]), "oks",
                          flow=flow)
    assert [i for i, _ in out] == [1]
    assert [tr.misses for tr in tracker.tracks] == [0, 1, 1]
