"""The tracker's re-pose cadence (TrackConfig.repose_after, tracking/pose_tracker.py): on a drawn scene of ten
still people, the pose network's crops are spread over the frames (a few a frame instead of ten on each detector
frame), every track is posed again within its period, a track whose carried keypoints the flow lost is posed first
and not confirmed by a detection, and the ids stay those of the ten people."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from posecal.data.sources import Frame
from posecal.inference.person_policy import VIDEO
from posecal.inference.pipeline import PosePipeline
from posecal.tracking import pose_tracker
from posecal.tracking.flow import FrameFlow
from posecal.tracking.pose_tracker import LOST_SHARE, TrackConfig, _tracked_people, repose_due
from posecal.tracking.tracker import Tracker, TrackerConfig

from conftest import STANDING, pose_of

IMAGE = np.zeros((300, 1200, 3), np.uint8)
BOXES = np.array([[20 + 115 * i, 40, 80, 200] for i in range(10)], float)


def pose_in(box, quality=0.8):
    xy = np.asarray(STANDING, float)
    lo, hi = xy.min(0), xy.max(0)
    x, y, w, h = box
    person = pose_of((xy - lo) / (hi - lo) * [w * 0.8, h * 0.8] + [x + 0.1 * w, y + 0.1 * h], quality)
    person.box, person.scores = np.asarray(box, float), {"oks": quality}
    return person


def run_scene(monkeypatch, frames: int, lost: dict | None = None, **settings):
    """Crops posed per frame, and the tracker, for `frames` frames of the ten still people (the detector every 3rd
    frame). lost: {frame: track index whose carried keypoints the flow loses there}."""
    crops = []

    def estimate(items):
        crops[-1] += sum(len(boxes) for _, boxes, _ in items)
        return [[replace(pose_in(b), box_score=float(s)) for b, s in zip(boxes, scores)] for _, boxes, scores in items]

    frame_no = [0]

    def carried(people, *_):
        held = np.ones(len(people))
        if lost and frame_no[0] in lost and lost[frame_no[0]] < len(people):
            held[lost[frame_no[0]]] = LOST_SHARE / 2
        return [replace(p, pose_source="carried") for p in people], held
    monkeypatch.setattr(pose_tracker, "carried_and_held", carried)
    predictor = SimpleNamespace(pipeline=PosePipeline(estimate, None, VIDEO), detector=object())
    cfg = TrackConfig([], **settings)
    tracker, flow = Tracker(TrackerConfig(smooth=False), policy=VIDEO), FrameFlow()
    for k in range(frames):
        frame_no[0] = k
        crops.append(0)
        detections = (BOXES, np.full(len(BOXES), 0.9)) if k % cfg.detect_every == 0 else None
        out = _tracked_people(Frame(f"f#{k}", None, IMAGE, k), detections, predictor, tracker, 25.0, cfg, "oks",
                              flow=flow)
        assert sorted(i for i, _ in out) == list(range(1, 11))      # the ten people keep their ids every frame
    return crops, tracker


def test_without_the_cadence_every_detector_frame_poses_everyone(monkeypatch):
    crops, _ = run_scene(monkeypatch, 12, repose_after=0)
    assert crops == [10, 0, 0] * 4


@pytest.mark.parametrize("repose_after", [6, 9])
def test_the_cadence_spreads_the_crops_and_poses_every_track_within_its_period(monkeypatch, repose_after):
    crops, tracker = run_scene(monkeypatch, 36, repose_after=repose_after)
    assert crops[0] == 10                     # births need a pose
    budget = int(np.ceil(10 / (repose_after * 2 / 3)))
    assert max(crops[1:]) <= budget           # 3 a frame at most (6), 2 (9), against 10 on each detector frame
    assert sum(crops[1:]) < 10 * 11           # fewer crops than posing everyone on each detector frame
    assert all(tr.since_pose < repose_after for tr in tracker.tracks)


def test_a_track_whose_flow_was_lost_is_posed_first_and_not_confirmed(monkeypatch):
    crops, tracker = run_scene(monkeypatch, 4, lost={1: 4, 3: 7}, repose_after=9)
    assert crops[1] == 1                       # frame 1 (between): track 5's flow lost, posed at once
    assert crops[3] == 1                       # frame 3 (detector): 9 confirmed, track 8 (flow lost) posed
    assert tracker.tracks[4].since_pose == 2 and tracker.tracks[7].since_pose == 0


def test_repose_due_orders_lost_then_oldest_then_least_trusted():
    tracks = [SimpleNamespace(since_pose=s, person=SimpleNamespace(pose_quality=q))
              for s, q in [(1, 0.9), (5, 0.9), (5, 0.4), (7, 0.9), (2, 0.9)]]
    cfg = TrackConfig([], repose_after=2)     # 5 tracks, 2 frames: 4 a frame between detector frames
    held = np.array([0.2, 1, 1, 1, 1])
    assert repose_due(tracks, held, cfg) == [0, 3, 2, 1]      # lost; oldest; of two as old, the less trusted
    assert repose_due(tracks, held, TrackConfig([], repose_after=0)) == []        # off
