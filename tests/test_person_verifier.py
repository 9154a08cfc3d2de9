"""p(person) (posecal/calibration/person.py): its features by hand, its fit and calibration, its storage with a
model's calibration, and the decisions that read it (the person rule, track births)."""
import dataclasses

import numpy as np

from posecal.calibration.person import FEATURES, PersonVerifier, fit_person_score, fit_person_verifier, person_features
from posecal.inference.pipeline import DETECTOR, PersonRule
from posecal.tracking.tracker import Tracker, TrackerConfig, born_as_person

from conftest import STANDING, pose_of


def test_features_by_hand():
    p = pose_of(STANDING, quality=0.8, vis=2)           # box 10 px around the keypoints: x 28..92, y 16..162
    p.visibility[:5] = 1
    p.visibility_probs = np.tile([0.1, 0.2, 0.7], (17, 1))
    p.heatmap_scores = np.linspace(0.0, 0.8, 17)
    f = dict(zip(FEATURES, person_features([p])[0]))
    assert np.isclose(f["logit pose quality"], np.log(0.8 / 0.2))
    assert np.isclose(f["mean p(visible)"], 0.7) and np.isclose(f["max p(visible)"], 0.7)
    assert np.isclose(f["share called visible"], 12 / 17) and np.isclose(f["mean p(absent)"], 0.1)
    assert np.isclose(f["top-5 heatmap score"], np.linspace(0.0, 0.8, 17)[-5:].mean())
    assert np.isclose(f["log box aspect h/w"], np.log(146 / 64))
    # nothing of the box's size or place (the crops it is fitted on are cut around their person): a person ten
    # times as large, elsewhere, reads the same
    big = dataclasses.replace(p, box=p.box * 10 + [500, 300, 0, 0], keypoints=p.keypoints * 10 + [500, 300])
    assert np.allclose(person_features([big]), person_features([p]))


def synthetic(n, rng):
    """Poses of people (high quality, many keypoints seen) and of things (low, few), overlapping a little."""
    people, labels = [], []
    for i in range(n):
        person = i % 2 == 0
        q = np.clip(rng.normal(0.75 if person else 0.4, 0.12), 0.01, 0.99)
        p = pose_of(STANDING + rng.normal(0, 3, STANDING.shape), quality=q, kq=q)
        seen = rng.random(17) < (0.7 if person else 0.2)
        p.visibility = np.where(seen, 2, 0)
        p.visibility_probs = np.where(seen[:, None], [0.1, 0.1, 0.8], [0.7, 0.1, 0.2])
        p.heatmap_scores = np.full(17, q)
        people.append(p)
        labels.append(int(person))
    return people, np.array(labels)


def test_fit_separates_and_calibrates_and_round_trips():
    rng = np.random.default_rng(0)
    train, y_train = synthetic(400, rng)
    cal, y_cal = synthetic(400, rng)
    score = fit_person_score(person_features(train), y_train)
    verifier = fit_person_verifier(score, person_features(cal), y_cal, {"source": "test"})
    test, y_test = synthetic(400, rng)
    p = verifier(test)
    assert p[y_test == 1].mean() > 0.8 and p[y_test == 0].mean() < 0.2
    assert abs(p.mean() - y_test.mean()) < 0.05                  # calibrated on average
    again = PersonVerifier.from_dict(verifier.to_dict())
    assert np.allclose(again(test), p) and again.fit_info == {"source": "test"}


def test_stored_with_the_quality_calibration():
    from posecal.calibration.conformal import ConformalRadii
    from posecal.calibration.maps import IsotonicMap
    from posecal.calibration.quality import QualityCalibration

    rng = np.random.default_rng(1)
    people, y = synthetic(200, rng)
    verifier = fit_person_verifier(fit_person_score(person_features(people), y),
                                   person_features(people), y)
    maps = [IsotonicMap(np.array([0.0, 1.0]), np.array([0.0, 1.0])) for _ in range(17)]
    cal = QualityCalibration(maps, maps[0], np.ones(17), ConformalRadii(0.9, np.zeros((17, 1)), np.ones((17, 2))),
                             {}, person=verifier)
    back = QualityCalibration.from_dict(cal.to_dict())
    assert np.allclose(back.person(people), verifier(people))
    assert QualityCalibration.from_dict({k: v for k, v in cal.to_dict().items() if k != "person"}).person is None


def test_the_person_rule_and_births_read_p_person():
    thing, person = pose_of(STANDING, 0.6), pose_of(STANDING + [200, 0], 0.6)
    for p in (thing, person):
        p.scores = {"oks": 0.6}
        p.box_score = 0.6                                        # the detector is sure of both
    thing.person_probability, person.person_probability = 0.1, 0.9
    assert PersonRule().keep([thing, person], DETECTOR) == [thing, person]   # by default the pose rules decide
    assert PersonRule(min_person=0.5).keep([thing, person], DETECTOR) == [person]
    # an unsure box needs confirm_person
    person.box_score = 0.2
    rule = PersonRule(sure_score=0.3, confirm_person=0.95)
    assert rule.keep([person], DETECTOR) == []
    assert PersonRule(sure_score=0.3, confirm_person=0.8).keep([person], DETECTOR) == [person]
    # a person seen from behind: most joints occluded, a good p(person): a track is born
    back = pose_of(STANDING, 0.6, vis=1)
    back.visibility[[5, 6]] = 2
    cfg = TrackerConfig(min_birth_person=0.5)
    assert not born_as_person(back, cfg)                      # without p(person): fewer than 3 visible joints
    back.person_probability = 0.8
    assert born_as_person(back, cfg)
    tracker = Tracker(cfg)
    assert len(tracker.update([back], 0.0, [True])) == 1
    back.person_probability = 0.2
    assert not born_as_person(back, cfg)
    back.visibility[7] = 2                                    # by default three visible joints make a person
    assert born_as_person(back, TrackerConfig()) and not born_as_person(back, cfg)
