"""Tracking: One-Euro filter on known signals, association and hysteresis on synthetic people, and
`posecal track` end to end on a video the test writes (output contract, pycocotools loadRes, render size)."""
import dataclasses
from dataclasses import replace
import json
import math

import cv2
import numpy as np

import pytest

from posecal.inference.person_policy import VIDEO
from posecal.metrics.boxes import box_iou
from posecal.tracking.associate import similarity
from posecal.tracking.one_euro import OneEuroFilter, smoothing_factor
from posecal.tracking.tracker import Tracker, TrackerConfig, keypoint_cutoffs

from conftest import STANDING, pose_of, write_tiny_model, write_walking_video


def test_smoothing_factor_by_hand():
    # cutoff 1/(2 pi) Hz -> tau = 1 s; at dt = 1 s alpha = 1 / (1 + 1) = 0.5
    assert smoothing_factor(1 / (2 * math.pi), 1.0) == pytest.approx(0.5)
    assert smoothing_factor(1 / (2 * math.pi), 3.0) == pytest.approx(0.75)


def test_one_euro_step_and_constant_signal():
    f = OneEuroFilter(min_cutoff=1 / (2 * math.pi), beta=0.0)
    assert f(np.array([0.0]), 0.0)[0] == 0.0            # first sample passes through
    assert f(np.array([1.0]), 1.0)[0] == pytest.approx(0.5)
    assert f(np.array([1.0]), 2.0)[0] == pytest.approx(0.75)
    assert f(np.array([1.0]), 3.0)[0] == pytest.approx(0.875)
    g = OneEuroFilter(min_cutoff=2.0, beta=5.0)
    for t in range(10):
        assert g(np.full(3, 7.0), t * 0.1) == pytest.approx(np.full(3, 7.0))  # a constant stays put


def test_one_euro_noise_damped_and_fast_motion_followed():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 30.0
    noisy = 5 + rng.normal(0, 1, 200)
    f = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(noisy, t)])
    assert np.std(np.diff(out[50:])) < 0.25 * np.std(np.diff(noisy[50:]))  # jitter mostly gone
    ramp = 100 * t                                          # fast motion: beta raises the cutoff, less lag
    lag = {}
    for beta in (0.0, 0.5):
        f = OneEuroFilter(min_cutoff=0.5, beta=beta)
        out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(ramp, t)])
        lag[beta] = ramp[-1] - out[-1]
    assert lag[0.5] < 0.2 * lag[0.0]


def test_one_euro_per_element_cutoff_and_reset():
    f = OneEuroFilter(beta=0.0)
    f(np.zeros(3), 0.0)
    out = f(np.ones(3), 1.0, min_cutoff=np.array([1 / (2 * math.pi), 1e6, 1 / (2 * math.pi)]),
            reset=np.array([False, False, True]))
    assert out == pytest.approx([0.5, 1.0, 1.0], abs=1e-5)  # damped, follows at once, restarted from raw


def test_trusted_keypoints_follow_faster():
    cfg = TrackerConfig()
    cut = keypoint_cutoffs(np.array([1.0, 0.0, 1.0]), np.array([2, 2, 1]), cfg)
    assert cut[0] == pytest.approx(cfg.trusted_cutoff) and cut[1] == pytest.approx(cfg.doubtful_cutoff)
    assert cfg.doubtful_cutoff < cut[2] < cut[0]


def test_box_iou_by_hand():
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10], [20, 20, 5, 5]]), [[50 / 150, 0]])


def test_similarity_falls_back_to_box_iou_without_trusted_keypoints():
    a, b = pose_of(STANDING), pose_of(STANDING + [3, 0])
    trust_all, trust_none = np.ones((1, 17), bool), np.zeros((1, 17), bool)
    s = similarity(a.keypoints[None], trust_all, a.box[None], b.keypoints[None], trust_all, b.box[None])
    assert s[0, 0] == pytest.approx(0.902, abs=0.002)         # OKS of a 3 px shift, by hand: 15.339 / 17
    s = similarity(a.keypoints[None], trust_none, a.box[None], b.keypoints[None], trust_all, b.box[None])
    assert s[0, 0] == pytest.approx(box_iou(a.box, b.box)[0, 0])


def test_two_crossing_people_keep_their_ids():
    """A walks right, B walks left, B a little lower; they cross in the middle (boxes overlap for several
    frames), the detections come in a shuffled order, and A is missed for 3 frames just after the crossing."""
    rng = np.random.default_rng(1)
    tracker = Tracker(TrackerConfig(smooth=False))
    seen = {"A": set(), "B": set()}
    for f in range(30):
        a = pose_of(STANDING + [20 + 12 * f, 0] + rng.normal(0, 1, (17, 2)))
        b = pose_of(STANDING + [380 - 12 * f, 40] + rng.normal(0, 1, (17, 2)))
        people = [("B", b)] + ([] if 17 <= f <= 19 else [("A", a)])
        if rng.random() < 0.5:
            people.reverse()
        out = tracker.update([p for _, p in people], f / 10)
        ids = {id(p): n for n, p in people}
        for track_id, p in out:
            seen[ids[id(p)]].add(track_id)
    assert seen == {"A": {1}, "B": {2}} or seen == {"A": {2}, "B": {1}}


def test_births_and_deaths():
    """A pose the model trusts as a person starts a track with its id at once; a doubtful one starts none; a
    track lives through up to max_misses frames unmatched, then ends."""
    tracker = Tracker(TrackerConfig(smooth=False, max_misses=3), policy=replace(VIDEO, birth_quality=0.45))
    strong, weak = pose_of(STANDING), pose_of(STANDING + [200, 0], quality=0.2)
    assert [i for i, _ in tracker.update([strong, weak], 0.0)] == [1]    # strong: at once; weak: nobody
    assert [i for i, _ in tracker.update([weak], 0.1)] == []             # a doubtful pose never starts a track
    assert [i for i, _ in tracker.update([], 0.2)] == []
    assert [i for i, _ in tracker.update([strong], 0.3)] == [1]          # back within max_misses: same id
    for t in range(4):
        tracker.update([], 0.4 + t / 10)
    assert [i for i, _ in tracker.update([strong], 0.8)] == [2]          # gone > max_misses: a new id


def test_smoothing_reduces_jitter_on_a_still_person():
    rng = np.random.default_rng(2)
    raw, smooth = Tracker(TrackerConfig(smooth=False)), Tracker(TrackerConfig(smooth=True))
    tracks = {0: [], 1: []}
    for f in range(40):
        p = pose_of(STANDING + rng.normal(0, 2, (17, 2)))
        tracks[0].append(raw.update([p], f / 25)[0][1].keypoints)
        tracks[1].append(smooth.update([p], f / 25)[0][1].keypoints)
    jitter = [np.abs(np.diff(np.array(tracks[i]), 2, axis=0)).mean() for i in (0, 1)]
    assert jitter[1] < 0.5 * jitter[0]


@pytest.mark.slow
def test_track_cli_output_contract_loadres_and_render_size(tmp_path, capsys):
    from pycocotools.coco import COCO

    from posecal.cli.main import main


    video = tmp_path / "walk.mp4"
    write_walking_video(video)
    out, render = tmp_path / "tracks.json", tmp_path / "walk_tracked.mp4"
    assert main(["track", str(video), "--out", str(out), "--render", str(render), "--detector", "none",
                 "--model", str(_tiny(tmp_path)), "--backend", "torch", "--no-progress",
                 "--min-birth-quality", "0", "--min-pose-quality", "0"]) == 0   # the untrained tiny
    # model's poses are doubtful (the person rule calls them nobody): track them
    assert "track(s)" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results, "the whole-frame person should be tracked"
    for r in results:
        assert isinstance(r["track_id"], int) and r["file_name"] == f"walk.mp4#{r['image_id']}"
        assert {"keypoints", "score", "bbox", "pose_quality", "keypoint_quality", "visibility",
                "visibility_probs", "box_score", "category_id"} <= set(r)
    assert len({(r["image_id"], r["track_id"]) for r in results}) == len(results)
    first = {}                                                  # identity trust: null where a track starts
    for r in sorted(results, key=lambda r: r["image_id"]):
        assert "id_confidence" in r
        starts = first.setdefault(r["track_id"], r["image_id"]) == r["image_id"]
        assert (r["id_confidence"] is None) if starts else (0 <= r["id_confidence"] <= 1)
    gt = {"images": [{"id": i, "file_name": f"walk.mp4#{i}", "width": 160, "height": 120} for i in range(8)],
          "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    loaded = COCO(str(tmp_path / "gt.json")).loadRes(str(out))
    assert len(loaded.getAnnIds()) == len(results)
    cap = cv2.VideoCapture(str(render))
    n, shapes = 0, set()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shapes = n + 1, shapes | {frame.shape}
    assert n == 8 and shapes == {(120, 160, 3)}               # the render keeps the input's size


def _tiny(tmp_path):
    return write_tiny_model(tmp_path / "tiny.pt")


def test_track_refuses_images_and_bad_options(tmp_path, capsys):
    from posecal.cli.main import main

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10, 3), np.uint8))
    assert main(["track", str(tmp_path / "a.png"), "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "a.png: not a video" in err and "nothing to do" in err
    with pytest.raises(SystemExit):
        main(["track", "x.mp4", "--detect-every", "0"])


def test_a_track_no_detection_holds_stops_propagating():
    """Ghosts end: a track seen only in boxes propagated from its own pose is looked for until it has missed the
    detector on more than missed_detections detector frames in a row (detector every 2nd frame at frames 0, 2, 4;
    1 miss allowed: missed at 2, still looked for at 4, and after missing there too, no more)."""
    from posecal.tracking.pose_tracker import frame_boxes

    frame = np.zeros((480, 640, 3), np.uint8)
    tracker = Tracker(TrackerConfig(smooth=False))
    tracker.update([pose_of(STANDING, quality=0.8)], 0.0)                       # detected: undetected 0
    sizes = []
    for t in range(1, 6):
        boxes, _, propagated = frame_boxes(frame, None, tracker, detect_every=2, missed_detections=1)
        sizes.append(len(boxes))
        tracker.update([pose_of(STANDING, quality=0.8)] if len(boxes) else [], t / 10, detected=[False] * len(boxes))
    assert sizes == [1, 1, 1, 1, 0] and tracker.tracks[0].undetected == 5
    tracker.update([pose_of(STANDING, quality=0.8)], 0.6)                       # the detector finds them again
    assert tracker.tracks[0].undetected == 0
    assert len(frame_boxes(frame, None, tracker, detect_every=2, missed_detections=1)[0]) == 1


def test_one_propagated_box_per_place():
    from posecal.tracking.pose_tracker import boxes_from_pose, frame_boxes, one_box_per_place

    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10], [0, 5, 10, 10]], float)
    # IoU(0, 1) = 81 / 119 = 0.68 and IoU(1, 3) = 54 / 146 = 0.37, IoU(0, 3) = 50 / 150 = 0.33
    assert one_box_per_place(boxes, np.array([0.2, 0.9, 0.5, 0.3])).tolist() == [1, 2, 3]
    assert one_box_per_place(boxes, np.array([0.2, 0.9, 0.5, 0.3]), max_iou=0.3).tolist() == [1, 2]
    # Two tracks that drifted onto one person get one box between them (the more trusted track's), on a frame
    # without detections; a third track elsewhere keeps its own.
    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_quality=0))
    here, also_here, there = (pose_of(STANDING, quality=0.4), pose_of(STANDING + [2, 1], quality=0.8),
                              pose_of(STANDING + [200, 0], quality=0.6))
    here.box_score, also_here.box_score, there.box_score = 0.3, 0.9, 0.6
    tracker.update([here, there], 0.0)
    tracker.tracks[0].person = also_here          # the first track has drifted onto the same person
    tracker.tracks.insert(0, dataclasses.replace(tracker.tracks[0], person=here))
    out, scores, propagated = frame_boxes(np.zeros((480, 640, 3), np.uint8), None, tracker)
    assert len(out) == 2 and propagated.all() and scores.tolist() == [0.9, 0.6]   # each its track's last score
    np.testing.assert_allclose(out[0], boxes_from_pose(also_here), atol=1e-6)


def test_a_carried_box_keeps_its_tracks_detection_score_on_detector_frames_and_between(monkeypatch):
    """A record's box_score is the score of the detection its track was last held by, on every frame: two people,
    the detector (every 3rd frame) scores them 0.9 and 0.7 and misses the second at frame 3, where its box is
    carried from its track and posed there; between detector frames the flow carries both. The second's box_score
    stays 0.7 (it read 0.0 on the detector frame that missed it, 0.7 again between)."""
    from types import SimpleNamespace

    from posecal.data.sources import Frame
    from posecal.inference.pipeline import PosePipeline
    from posecal.tracking import pose_tracker
    from posecal.tracking.flow import FrameFlow
    from posecal.tracking.pose_tracker import TrackConfig, _tracked_people
    from test_repose_cadence import pose_in

    boxes, image = np.array([[20, 40, 80, 200], [300, 40, 80, 200]], float), np.zeros((300, 500, 3), np.uint8)

    def estimate(items):
        return [[replace(pose_in(b), box_score=float(s)) for b, s in zip(bs, ss)] for _, bs, ss in items]
    monkeypatch.setattr(pose_tracker, "carried_and_held",
                        lambda people, *_: ([replace(p, pose_source="carried") for p in people], np.ones(len(people))))
    predictor = SimpleNamespace(pipeline=PosePipeline(estimate, None, VIDEO), detector=object())
    cfg, tracker = TrackConfig([], repose_after=0), Tracker(TrackerConfig(smooth=False), policy=VIDEO)
    flow = FrameFlow()
    second = []
    for k in range(8):
        detections = None if k % 3 else (boxes, np.array([0.9, 0.7])) if k != 3 else (boxes[:1], np.array([0.9]))
        out = dict(_tracked_people(Frame(f"f#{k}", None, image, k), detections, predictor, tracker, 25.0, cfg, "oks",
                                   flow=flow))
        assert sorted(out) == [1, 2]
        second.append((out[2].box_origin, out[2].pose_source, out[2].box_score))
    assert second[3] == ("carried", "detected", 0.7)            # posed in its carried box on a detector frame
    assert [s for _, _, s in second] == [0.7] * 8


def test_only_tracks_seen_in_the_last_frame_propagate_a_box():
    from posecal.tracking.pose_tracker import frame_boxes

    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_quality=0))
    tracker.update([pose_of(STANDING, quality=0.8), pose_of(STANDING + [200, 0], quality=0.8)], 0.0)
    tracker.update([pose_of(STANDING + [1, 0], quality=0.8)], 0.1)      # the second person is missed here
    assert [tr.misses for tr in tracker.tracks] == [0, 1]
    assert len(tracker.live_people()) == 2 and len(tracker.live_people(max_misses=0)) == 1
    boxes, _, propagated = frame_boxes(np.zeros((480, 640, 3), np.uint8), None, tracker)
    assert len(boxes) == 1 and propagated.all() and boxes[0][0] < 150   # the first person's box only
    # with the detector every 3rd frame, a track lost for up to 2 frames is still looked for between detections
    boxes, _, _ = frame_boxes(np.zeros((480, 640, 3), np.uint8), None, tracker, detect_every=3)
    assert len(boxes) == 2


def _box_image(people_colours, size=(480, 900)):
    """A dark frame with each (pose, BGR colour) person's box filled with its colour (what colour_histogram sees)."""
    img = np.full((*size, 3), 30, np.uint8)
    for p, colour in people_colours:
        x, y, w, h = (int(round(v)) for v in p.box)
        img[max(y, 0):y + h, max(x, 0):x + w] = colour
    return img


def test_a_lost_person_is_found_again_by_position_and_size():
    """Walking right at 12 px a frame, hidden for 15 frames, and slower while hidden: they come out 60 px short
    of where their velocity says (too far for OKS), but within re-identification's reach: the same id."""
    def run(cfg):
        tracker, ids = Tracker(cfg), []
        for f in range(40):
            x = 12 * f if f < 10 else 12 * f - 60
            people = [] if 10 <= f < 25 else [pose_of(STANDING + [x, 0])]
            ids += [i for i, _ in tracker.update(people, f / 10)]
        return set(ids)

    assert run(TrackerConfig(smooth=False, max_misses=30)) == {1}
    assert run(TrackerConfig(smooth=False, max_misses=30, reid=False)) == {1, 2}
    assert run(TrackerConfig(smooth=False, max_misses=10)) == {1, 2}          # ended before they came back


def test_colours_tell_two_lost_people_apart():
    """A (red) and B (blue), side by side, both lost for 5 frames; they come back each nearer the other's
    predicted place (a swap by position alone): their colours keep their ids."""
    red, blue = (0, 0, 230), (230, 60, 0)
    cfg = TrackerConfig(smooth=False, max_misses=30)
    for use_colours, expect_swap in ((True, False), (False, True)):
        tracker = Tracker(cfg)
        for f in range(5):
            a, b = pose_of(STANDING + [100, 0]), pose_of(STANDING + [260, 0])
            tracker.update([a, b], f / 10, image=_box_image([(a, red), (b, blue)]) if use_colours else None)
        for f in range(5, 10):
            tracker.update([], f / 10)
        a, b = pose_of(STANDING + [200, 0]), pose_of(STANDING + [160, 0])   # A now nearer B's place and B nearer A's
        out = dict((id(p), i) for i, p in tracker.update([a, b], 1.0, image=_box_image([(a, red), (b, blue)])
                                                           if use_colours else None))
        assert (out[id(a)], out[id(b)]) == ((2, 1) if expect_swap else (1, 2))


def test_no_birth_inside_a_held_person_nor_from_a_doubtful_pose():
    whole = pose_of(STANDING)
    upper = dataclasses.replace(pose_of(STANDING + [0, 2]), box=np.array([28.0, 16, 64, 80]))   # a second pose, upper box
    for overlap, tracks in ((0.6, {1}), (1.0, {1, 2})):
        tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_overlap=overlap))
        ids = set()
        for f in range(4):
            ids |= {i for i, _ in tracker.update([whole, upper], f / 10)}
        assert ids == tracks
    tracker = Tracker(TrackerConfig(smooth=False), policy=replace(VIDEO, birth_quality=0.35))
    tripod = pose_of(STANDING + [300, 0], quality=0.3)         # a thing the detector takes for a person, every frame
    assert all(tracker.update([tripod], f / 10) == [] for f in range(6))


@pytest.mark.parametrize("fps", [10, 25])
def test_a_person_walking_behind_another_for_a_second_keeps_their_id(fps):
    """A walks right at 120 px/s behind B, who stands still, and is unseen for 1.17 s (from x 230 to 370); when A
    comes out on the other side the tracker gives them their id back (their track coasts at its velocity and is
    matched again), and nobody else gets a new one."""
    tracker = Tracker(TrackerConfig(), policy=VIDEO)
    seen, hidden_frames = set(), 0
    for f in range(3 * fps):
        t = f / fps
        xa = 50 + 120 * t
        people = [pose_of(STANDING + [300, 0])]
        if 230 < xa < 370:
            hidden_frames += 1
        else:
            people.append(pose_of(STANDING + [xa, 0]))
        for p in people:
            p.person_probability = 0.9
        last = {i for i, _ in tracker.update(people, t)}
        seen |= last
    assert hidden_frames >= fps and seen == {1, 2} and last == {1, 2}   # A out again under id 2


def test_smoothed_keypoints_report_what_the_lag_costs():
    """A person walking right at 60 px/s: the smoothed keypoints lag behind what the trust model judged, and their
    reported quality falls by what moving a keypoint that far costs (metrics.oks.moved_opks); standing still, the
    smoothed pose keeps its trust values."""
    from posecal.metrics.oks import AREA_PER_BOX, moved_opks
    from posecal.tracking.tracker import smoothed_trust

    tracker = Tracker(TrackerConfig(smooth=True))
    for f in range(10):
        p = pose_of(STANDING + [60.0 * f / 25, 0.0], kq=0.9)
        p.scores.update({"oks": 0.8, "heatmap": 0.6})
        out = tracker.update([p], f / 25)[0][1]
    lag = np.abs(out.keypoints - p.keypoints).sum(1)
    assert (lag > 0.3).all()
    area = AREA_PER_BOX * p.box[2] * p.box[3]
    expected = moved_opks(p.keypoint_quality, ((out.keypoints - p.keypoints) ** 2).sum(1), area)
    np.testing.assert_allclose(out.keypoint_quality, expected)
    assert (out.keypoint_quality < 0.9).all()
    factor = expected.mean() / 0.9
    assert out.pose_quality == pytest.approx(p.pose_quality * factor)
    assert out.scores["oks"] == pytest.approx(0.8 * factor) and out.scores["heatmap"] == 0.6   # heatmaps: unchanged
    # nothing moved: the very same values
    still = smoothed_trust(p, np.asarray(p.keypoints, float).copy())
    np.testing.assert_array_equal(still.keypoint_quality, p.keypoint_quality)
    assert still.pose_quality == p.pose_quality
    # a radius grows with the distance moved, as calibration.conformal.moved_radius says
    from posecal.calibration.conformal import moved_radius
    radius = smoothed_trust(replace(p, keypoint_radius=np.full(17, 5.0)), p.keypoints + [3.0, 4.0])
    np.testing.assert_allclose(radius.keypoint_radius, moved_radius(np.full(17, 5.0), np.full(17, 5.0)))
    assert (radius.keypoint_radius > 5.0).all() and (radius.keypoint_radius < 10.0).all()
