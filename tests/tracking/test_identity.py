"""Identity trust (posecal/tracking/identity.py): its features by hand, the fitted map's file, and id_confidence
where two drawn people cross (an id handed over) against a lone walker."""
import json

import numpy as np
import pytest

from posecal.calibration.maps import LogisticScore
from posecal.errors import PosecalInputError
from posecal.tracking.identity import (FEATURES, ID_CONFIDENCE_FILE, IdConfidence, MatchContext, box_growth,
                                       id_features, load_id_confidence, margin, quality_drop, save_id_confidence)
from posecal.tracking.tracker import Tracker, TrackerConfig

from conftest import STANDING, pose_of


def test_margin_and_features_by_hand():
    score = np.array([[0.9, 0.2], [0.3, 0.8]])
    assert margin(score, 0, 0) == pytest.approx(0.6)           # 0.9 - max(0.2 in its row, 0.3 in its column)
    assert margin(score[:1, :1], 0, 0) == 1.0                   # nobody else: no alternative
    ctx = MatchContext(score=score, similarity=score - 0.05, box_iou=np.array([[0.7, 0.1], [0.4, 0.6]]),
                       appearance=np.full((2, 2), 0.5), crowd=np.array([0.2, 0.2]), gap=np.array([0.0, 2.0]),
                       undetected=np.array([1.0, 0.0]), growth=np.array([[0.3, 0.0], [0.0, 0.0]]),
                       track_quality=np.array([0.875, 0.9]))
    f = dict(zip(FEATURES, id_features(ctx, 0, 0, pose_of(STANDING, quality=0.7))))
    assert f == pytest.approx({"similarity": 0.85, "margin": 0.6, "box_iou": 0.7, "appearance": 0.5, "crowd": 0.2,
                               "crossing": 0.4, "gap": 0.0, "undetected": np.log1p(1.0), "pose_quality": 0.7,
                               "carried": 0.0, "held": 0.0, "reid": 0.0, "quality_drop": 0.2, "box_growth": 0.3})


def test_quality_drop_and_box_growth_by_hand():
    assert quality_drop(0.4, 0.8) == pytest.approx(0.5)         # half as trusted as the person has been
    assert quality_drop(0.9, 0.8) == 0.0 and quality_drop(0.5, 0.0) == 0.0
    predicted = np.array([[0, 0, 10, 20], [100, 0, 40, 40]], float)
    boxes = np.array([[5, 5, 20, 20], [0, 0, 5, 10], [0, 0, 40, 40]], float)
    assert box_growth(predicted, boxes) == pytest.approx(np.array([[np.log(2), 0.0, np.log(8)],
                                                                   [0.0, 0.0, 0.0]]))   # only growth counts


def test_tracker_features_of_two_people_far_apart():
    """Two still people far apart: each continues its track with OKS 1, its predicted box exactly, and a margin
    of 1 (the other person is nothing like it); a new id has no features."""
    tracker = Tracker(TrackerConfig(smooth=False))
    a, b = pose_of(STANDING), pose_of(STANDING + [300, 0])
    tracker.update([a, b], 0.0)
    assert tracker.evidence == {1: None, 2: None}
    tracker.update([b, a], 0.1)
    f = dict(zip(FEATURES, tracker.evidence[1]))
    assert f["similarity"] == pytest.approx(1.0) and f["box_iou"] == pytest.approx(1.0)
    assert f["margin"] == pytest.approx(1.0) and f["crowd"] == 0.0 and f["crossing"] == 0.0 and f["gap"] == 0.0


def _map() -> IdConfidence:
    model = load_id_confidence()
    if model is None:
        pytest.skip(f"{ID_CONFIDENCE_FILE.name} is not there (python tools/fit_id_confidence.py)")
    return model


def test_map_file_round_trip_and_damaged_files_refused(tmp_path):
    model = IdConfidence(LogisticScore(np.zeros(len(FEATURES)), np.ones(len(FEATURES)),
                                       np.linspace(-1, 1, len(FEATURES)), 2.0), {"note": "by hand"})
    path = tmp_path / "id_confidence.json"
    save_id_confidence(model, path)
    back = load_id_confidence(path)
    x = np.random.default_rng(0).random((5, len(FEATURES)))
    assert back.fit_info == {"note": "by hand"} and back(x) == pytest.approx(model(x))
    assert load_id_confidence(tmp_path / "none.json") is None        # no file: no id_confidence, no made-up one
    path.write_text(path.read_text()[:40])
    with pytest.raises(PosecalInputError, match="damaged id_confidence map") as e:
        load_id_confidence(path)
    assert "\n" not in str(e.value)
    d = model.to_dict()
    path.write_text(json.dumps(d | {"features": d["features"][:-1]}))
    with pytest.raises(PosecalInputError, match="refit it"):
        load_id_confidence(path)
    d["logistic"]["weights"] = d["logistic"]["weights"][:-1]
    path.write_text(json.dumps(d))
    with pytest.raises(PosecalInputError, match="damaged"):
        load_id_confidence(path)


def test_shipped_map_says_how_it_was_judged():
    info = _map().fit_info
    assert info["tuning"] and info["held_out"] and not set(info["tuning"]) & set(info["held_out"])
    assert info["judged"]["held-out, pooled"]["records"] > 0


def _walk(tracker: Tracker, frames: int, *paths) -> list[dict[int, tuple[int, float | None]]]:
    """Each frame's {track id: (which path its pose is, id_confidence)} of people walking `paths` (functions of
    the frame -> offset of STANDING)."""
    out = []
    for f in range(frames):
        people = [pose_of(STANDING + path(f)) for path in paths]
        boxes = np.array([p.box for p in people])
        out.append({i: (int(np.abs(boxes - p.box).sum(1).argmin()), p.id_confidence)
                    for i, p in tracker.update(people, f / 10)})
    return out


def test_crossing_with_a_hand_over_is_rated_low_and_a_lone_walker_high():
    """Two people walk towards each other, meet at frame 15 and both turn back: the tracker, expecting them to walk
    on, hands each id to the other person at frame 16 (a known hand-over). Those two records are the least trusted
    of the run, well under a lone walker's, who is sure all the way."""
    model = _map()
    lone = _walk(Tracker(TrackerConfig(smooth=False), id_confidence=model), 30, lambda f: [20 + 8 * f, 0])
    assert lone[0] == {1: (0, None)}                              # a new id has no previous record
    lone_low = min(c for frame in lone[1:] for _, c in frame.values())
    assert lone_low > 0.98
    there_and_back = lambda f, start, step: [start + step * (min(f, 15) - max(f - 15, 0)), 0]  # noqa: E731
    frames = _walk(Tracker(TrackerConfig(smooth=False), id_confidence=model), 26,
                   lambda f: there_and_back(f, 20, 12), lambda f: there_and_back(f, 380, -12) + np.r_[0, 20])
    owner = {i: who for i, (who, _) in frames[15].items()}
    handed = {i: c for i, (who, c) in frames[16].items() if who != owner[i]}
    assert len(handed) == 2                                       # both ids passed to the other person
    rated = [c for frame in frames[1:] for _, c in frame.values()]
    assert max(handed.values()) == pytest.approx(min(rated))      # the least trusted records of the run ...
    assert max(handed.values()) < lone_low - 0.03                 # ... and well under a lone walker's


OVER_TWO_AT = 10


def _through_a_box_over_two(merged: bool) -> tuple[Tracker, list[dict[int, object]]]:
    """A walker (8 px a frame) tracked alone, a second person hidden behind them; at frame OVER_TWO_AT (merged) one
    pose over both: the walker's right-side joints and the other person's left-side ones (40 px right, 12 down),
    half as trusted, in a box over both, after which the id stays on the other person; else the walker goes on."""
    tracker = Tracker(TrackerConfig(smooth=False), id_confidence=load_id_confidence())
    other, frames = STANDING + [40, 12], []
    for f in range(OVER_TWO_AT + 3):
        walker = STANDING + [8 * f, 0]
        if merged and f == OVER_TWO_AT:
            pose = pose_of(np.where((np.arange(len(STANDING)) % 2 == 0)[:, None], walker, other), quality=0.4)
        elif merged and f > OVER_TWO_AT:
            pose = pose_of(other + [8 * (f - OVER_TWO_AT), 0])
        else:
            pose = pose_of(walker)
        frames.append(dict(tracker.update([pose], f / 10)))
        frames[-1]["evidence"] = tracker.evidence.get(1)
    return tracker, frames


def test_a_pose_over_two_people_carries_its_quality_drop_and_box_growth():
    """The record over two people: its quality fell from the walker's 0.8 to 0.4, and its box (the joints of both)
    is larger than the walker's box moved on by its velocity, by the log of their areas' ratio."""
    _, frames = _through_a_box_over_two(merged=True)
    f = dict(zip(FEATURES, frames[OVER_TWO_AT]["evidence"]))
    over_two = frames[OVER_TWO_AT][1].box
    walker_box = pose_of(STANDING).box
    assert f["quality_drop"] == pytest.approx(0.5)
    assert f["box_growth"] == pytest.approx(np.log(over_two[2] * over_two[3] / (walker_box[2] * walker_box[3])))
    right = dict(zip(FEATURES, _through_a_box_over_two(merged=False)[1][OVER_TWO_AT]["evidence"]))
    assert right["quality_drop"] == pytest.approx(0.0) and right["box_growth"] == 0.0


def test_a_hand_off_through_a_box_over_two_people_is_rated_under_its_right_continuation():
    """Under the shipped map the record over two people is the least trusted of its run and under the same frame
    where the walker simply goes on by more than the run's other records vary."""
    _map()
    _, merged = _through_a_box_over_two(merged=True)
    _, right = _through_a_box_over_two(merged=False)
    over_two = merged[OVER_TWO_AT][1].id_confidence
    rated = [frame[1].id_confidence for frame in merged[1:]]
    assert over_two == pytest.approx(min(rated))
    assert over_two < right[OVER_TWO_AT][1].id_confidence - 0.03


def test_overlay_draws_an_unsure_identity_dashed():
    import dataclasses

    from posecal.overlay import UNSURE_IDENTITY, render_people

    person = pose_of(STANDING + [20, 10])
    black = np.zeros((200, 140, 3), np.uint8)
    x, y = (int(round(v)) for v in person.box[:2])

    def top_edge(confidence):
        drawn = render_people(black, [dataclasses.replace(person, id_confidence=confidence)], legend=False)
        return (drawn[y, x + 5:x + int(person.box[2]) - 5].max(1) > 0).mean()

    sure, unsure = top_edge(UNSURE_IDENTITY + 0.3), top_edge(UNSURE_IDENTITY - 0.3)
    assert sure == 1.0 and 0.2 < unsure < 0.9                     # solid, against dashes with gaps
    assert top_edge(None) == 1.0                                  # a picture's person: solid
