"""Decide, then pose (PosePipeline.people with PersonPolicy.part_candidates / decided_parts): a box the detector is
unsure of lying inside a person already posed and ranked above it gets neither the verifier nor the pose network,
and the people reported are those the full decision (every box posed) reports, on drawn scenes."""
from dataclasses import replace

import numpy as np

from posecal.inference.person_policy import STILL, PersonPolicy
from posecal.inference.pipeline import PosePipeline

from conftest import STANDING, pose_of

IMAGE = np.zeros((300, 420, 3), np.uint8)


def pose_in(box, quality):
    """A whole standing pose fitted into `box` (x, y, w, h), reported with that box, as the estimator reports it."""
    xy = np.asarray(STANDING, float)
    lo, hi = xy.min(0), xy.max(0)
    x, y, w, h = box
    fitted = (xy - lo) / (hi - lo) * [w * 0.8, h * 0.8] + [x + 0.1 * w, y + 0.1 * h]
    person = pose_of(fitted, quality)
    person.box = np.asarray(box, float)
    person.scores = {"oks": quality}
    return person


class Scene:
    """Boxes with their detector scores, the verifier's p(person), and the pose each box gets (where the pose
    lies, its quality); records what the verifier and the network were asked."""

    def __init__(self, rows):
        self.boxes = np.array([r[0] for r in rows], float)
        self.scores = np.array([r[1] for r in rows], float)
        self.p = {tuple(r[0]): r[2] for r in rows}
        self.pose = {tuple(r[0]): (r[3], r[4]) for r in rows}
        self.verified, self.posed = [], []

    def verifier(self, image, boxes):
        self.verified += [tuple(b) for b in boxes.tolist()]
        return np.array([self.p[tuple(b)] for b in boxes.tolist()])

    def estimate(self, items):
        out = []
        for _, boxes, scores in items:
            self.posed += [tuple(b) for b in boxes.tolist()]
            people = []
            for b, s in zip(boxes.tolist(), scores):
                where, quality = self.pose[tuple(b)]
                person = pose_in(where, quality)
                person.box, person.box_score = np.asarray(b, float), float(s)
                people.append(person)
            out.append(people)
        return out

    def run(self, policy: PersonPolicy):
        pipeline = PosePipeline(self.estimate, lambda image: (self.boxes, self.scores), policy, self.verifier)
        return pipeline(IMAGE)


class Everything(PersonPolicy):
    """The full decision: every box waits for nothing and is posed."""

    def part_candidates(self, boxes, scores, origins, sure_factor=1.0):
        return np.zeros(len(scores), bool)


PERSON, UPPER_BODY = (20, 20, 80, 200), (25, 25, 60, 90)
TRIPOD, ON_TRIPOD = (200, 40, 60, 150), (205, 50, 40, 80)
WALKER, LOOSE = (300, 20, 80, 200), (290, 10, 105, 230)
SCENE = [
    (PERSON, 0.8, 0.9, PERSON, 0.8),               # a person the detector is sure of
    (UPPER_BODY, 0.2, 0.7, UPPER_BODY, 0.6),       # an unsure box on their upper body: a part
    (TRIPOD, 0.6, 0.05, TRIPOD, 0.5),              # a tripod: the verifier says nobody
    (ON_TRIPOD, 0.2, 0.7, ON_TRIPOD, 0.55),        # an unsure box inside the tripod's: no person holds it
    (WALKER, 0.7, 0.9, WALKER, 0.75),              # one walker in two boxes: a sure one ...
    (LOOSE, 0.2, 0.7, WALKER, 0.7),                # ... and a loose unsure one around it, posing the walker again
]


def kept(people):
    return sorted((tuple(np.round(p.box, 3)), round(float(p.pose_quality), 4)) for p in people)


def test_decided_parts_get_no_verifier_and_no_pose_and_the_same_people_are_reported():
    scene = Scene(SCENE)
    fast = scene.run(STILL)
    assert UPPER_BODY not in scene.posed and UPPER_BODY not in scene.verified   # decided as a part of PERSON
    assert ON_TRIPOD in scene.posed          # its holder was no person: posed, in the second round
    assert LOOSE in scene.posed              # not inside a sure box (it holds one): posed, NMS decides
    assert TRIPOD not in scene.posed         # the verifier's screen, as before
    full_scene = Scene(SCENE)
    full = full_scene.run(Everything(**{f: getattr(STILL, f) for f in STILL.__dataclass_fields__}))
    assert UPPER_BODY in full_scene.posed
    assert kept(fast) == kept(full)
    assert {tuple(p.box) for p in fast} == {PERSON, ON_TRIPOD, WALKER}


def test_a_part_that_could_outrank_its_holder_is_posed():
    """The holder's evidence x pose quality must beat the box's score even were the box's pose perfect: a sure
    box (0.35) whose pose quality is poor (0.4: rank 0.14) does not decide a box scored 0.2; that box is posed."""
    rows = [(PERSON, 0.35, 0.9, PERSON, 0.4), (UPPER_BODY, 0.2, 0.7, UPPER_BODY, 0.9)]
    scene = Scene(rows)
    fast = scene.run(STILL)
    assert UPPER_BODY in scene.posed
    full = Scene(rows).run(Everything(**{f: getattr(STILL, f) for f in STILL.__dataclass_fields__}))
    assert kept(fast) == kept(full)


def test_part_candidates_and_decided_parts_by_hand():
    boxes = np.array([PERSON, UPPER_BODY, LOOSE], float)
    scores = np.array([0.8, 0.2, 0.2])
    assert STILL.part_candidates(boxes, scores, "detected").tolist() == [False, True, False]
    # the caller's boxes and a policy with no sure score never wait
    assert not STILL.part_candidates(boxes, scores, "given").any()
    assert not replace(STILL, sure_score=None).part_candidates(boxes, scores, "detected").any()
    holder = pose_in(PERSON, 0.8)
    holder.box_score, holder.box_origin = 0.8, "detected"
    # rank 0.8 x 0.8 = 0.64 > 0.2: decided; a holder whose pose says nobody (quality 0.2 < 0.3) decides nothing
    assert STILL.decided_parts(boxes[[1]], scores[[1]], [holder]).tolist() == [True]
    holder.pose_quality = 0.2
    assert STILL.decided_parts(boxes[[1]], scores[[1]], [holder]).tolist() == [False]
    holder.person_probability = 0.95      # ... unless the verifier is sure of it (rank 0.8 x 0.2 = 0.16 < 0.2)
    assert STILL.decided_parts(boxes[[1]], scores[[1]], [holder]).tolist() == [False]
    assert STILL.decided_parts(boxes[[1]], np.array([0.15]), [holder]).tolist() == [True]


def test_two_doubtful_boxes_apart_inside_one_person_are_both_posed():
    """A sure box holding two doubtful boxes that lie apart (the upper body of the man behind, the legs of the man in
    front: vtest's first frame) may frame two people: both are posed, so that the rules of place can see a box over
    two; one doubtful box, or two on one spot, is a part as before."""
    holder = pose_in(PERSON, 0.8)
    holder.box_score, holder.box_origin, holder.second_person = 0.8, "detected", 0.15
    x, y, w, h = PERSON
    upper, legs = [x, y, 0.7 * w, 0.45 * h], [x + 0.3 * w, y + 0.5 * h, 0.7 * w, 0.5 * h]
    boxes, scores = np.array([upper, legs], float), np.array([0.2, 0.2])
    assert STILL.decided_parts(boxes, scores, [holder]).tolist() == [False, False]
    holder.second_person = 0.05        # its heatmaps show one body: the two are parts, unposed
    assert STILL.decided_parts(boxes, scores, [holder]).tolist() == [True, True]
    holder.second_person = 0.15
    assert STILL.decided_parts(boxes[[0]], scores[[0]], [holder]).tolist() == [True]
    same_spot = np.array([upper, np.add(upper, [1, 1, 0, 0])], float)
    assert STILL.decided_parts(same_spot, scores, [holder]).tolist() == [True, True]
    assert replace(STILL, two_parts_iou=None).decided_parts(boxes, scores, [holder]).tolist() == [True, True]
