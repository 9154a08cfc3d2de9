"""Who is a person, and which one: every decision posecal makes about it, in one place that every path calls.

The API (`Predictor`), `posecal predict`, `PoseTracker` and `posecal track` all ask this module, so a person found
or dropped in one is found or dropped in the others. The decisions, in the order a picture meets them:

1. **Before the pose network** (`PersonPolicy.screen`): every box that is not the caller's is judged by the person
   verifier (posecal/detect/verifier.py), p(person | box, picture), which looks at the picture itself. A detector box
   needs p(person) >= `min_person` however sure the detector is (a tripod is not a person, whatever its detector
   score); a box the detector is unsure of (score below `sure_score`; the detector runs at `detector_floor` so
   that such boxes exist) needs `unsure_person`; a box carried from a track (no detection behind it, so no detector
   score) needs `carried_person`. Boxes that fail cost no pose.
2. **After it** (`PersonPolicy.keep`): a person the caller gave is reported (below); on any other box a pose with
   no keypoint called visible (unless its pose quality reaches `unseen_quality`), or of pose quality below
   `min_pose_quality`, is nobody, unless the verifier is sure of its box (`sure_person`): then nothing the pose
   says changes its mind (a person lying, curled or mostly hidden gets a poor pose, not no person; where p(person)
   and visibility disagree the verifier was right far more often: CHANGELOG). Two doubtful boxes apart inside one
   sure box whose heatmaps show a second body are both posed (`two_parts_iou`, `two_people_evidence`): the sure box
   may frame two people, a part of each, and only their poses can tell it. Poses that agree on the keypoints both
   see are one person (pose NMS at `duplicate_oks`, ranked by `duplicate_rank`, STILL's `duplicate_margin`), and so
   are poses that put `same_keypoints` keypoints on one spot; a pose lying so on two people is a merge of both, and
   is dropped; a doubtful box lying mostly (`part_inside`) inside a kept person's box is a part of that person. A
   carried pose also needs `carried_quality`. Poses optical flow carries between detector frames are decided by
   this same rule (tracking/pose_tracker.py carried_people).
3. **Tracks** (`PersonPolicy.born`): a pose starts a track when p(person) >= `birth_person` and its pose quality
   >= `birth_quality`.

Boxes carry their origin: GIVEN (the caller's boxes), DETECTED (a detector's, tiles of the second look included),
CARRIED (a track's box moved into this frame), WHOLE (no detector: the caller says the whole picture is one person).
A person the caller gave, as boxes or as the whole picture, is never judged: it is reported, however poor its pose
(its pose quality says how poor), and never merged with another (`given`); in a video it still starts a track
only by rule 3. Without a verifier (`verifier=None`) an unsure detection needs pose quality >= `unsure_quality`.

`STILL` is the preset for independent pictures, `VIDEO` the one for tracked frames; their numbers were chosen on
tuning sets with and without people and judged on held-out sets (MODEL_CARD.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# NMS_MODES is re-exported: jobs and the CLI take it from the policy, not from the detector's package
from posecal.detect.nms import NMS_MODES, merged_poses, pose_nms  # noqa: F401 - NMS_MODES re-exported
from posecal.detect.verifier import remapped
from posecal.metrics.boxes import box_iou, inside_share, inside_shares

GIVEN, DETECTED, CARRIED, WHOLE = "given", "detected", "carried", "whole"
# the shipped SSD's working threshold: a detection scored at least this is "sure" (detect/union.py uses its scale)
SURE_SCORE = 0.3
# the detector runs this permissively so that people it is unsure of are judged rather than dropped
DETECTOR_FLOOR = 0.15
# a pose with fewer keypoints called visible is nobody (a person seen from behind shows several)
MIN_VISIBLE = 1
# a pose below this predicted OKS is nobody (a detected or carried box, never a given one; CHANGELOG)
MIN_POSE_QUALITY = 0.3
# ... and one at least this trusted is somebody though it calls no keypoint visible: an athlete lying or upside
# down whose plainly visible joints the trust model calls occluded, its pose right (LSPET, CHANGELOG); set before
# the held-out worlds judged it, not tuned on them
UNSEEN_QUALITY = 0.7
# a pose whose crop's heatmaps show a second body at least this strongly (PersonPose.second_person: the mean over
# keypoints of each joint's peak away from the one taken) may lie over two people: about 0.02-0.05 for a walker
# alone, 0.13-0.15 on vtest's boxes over two walkers; on COCO val's confident poses the 70th percentile, holding 24
# of their 28 merges (CHANGELOG). Where it is weaker, two doubtful boxes inside a sure box are parts, unposed
TWO_PEOPLE_EVIDENCE = 0.1
# two poses are one person when their OKS over the keypoints both see is above this (detect/nms.py) ...
DUPLICATE_OKS = 0.6
# ... or when this many keypoints both call present lie on one spot (a second box agreeing on head and shoulders)
SAME_KEYPOINTS = 4
# the p(person) thresholds: on a verifier's own scale, moved through its graph's map (PersonPolicy.on_scale)
P_PERSON_FIELDS = ("min_person", "unsure_person", "sure_person", "carried_person", "birth_person")


@dataclass(frozen=True)
class PersonPolicy:
    """The numbers of every person decision (module docstring). `None` thresholds are off."""

    sure_score: float | None = SURE_SCORE
    detector_floor: float = DETECTOR_FLOOR
    # p(person) thresholds (P_PERSON_FIELDS) are on a verifier's own scale; Predictor moves them through the map a
    # verifier's graph records (on_scale), so the same boxes are kept with the shipped or a custom verifier
    min_person: float = 0.2
    unsure_person: float = 0.6
    sure_person: float | None = None     # a detected box the verifier gives at least this is a person whatever its
                                         # pose says (None: the pose rules judge every box)
    carried_person: float = 0.1
    min_pose_quality: float = MIN_POSE_QUALITY
    unsure_quality: float = 0.5          # without a verifier: the pose quality an unsure detection needs ...
    unsure_min_height: float = 64.0      # ... and the pixels it must be tall
    min_visible: int = MIN_VISIBLE
    unseen_quality: float | None = UNSEEN_QUALITY   # a pose this trusted is somebody with fewer than min_visible
                                         # keypoints called visible (None: off)
    nms: str = "oks"                     # one of NMS_MODES: pose NMS by OKS, soft-OKS, or none
    duplicate_oks: float = DUPLICATE_OKS
    same_keypoints: int | None = SAME_KEYPOINTS   # None: mean agreement alone decides (and no merge is told)
    duplicate_evidence: float = 1.0      # pose NMS keeps the highest quality x evidence ** this (0: quality alone)
    duplicate_margin: float | None = None   # ... unless another pose of that person is better by more than this
                                         # in quality, on a box not inside the best-scored one's (None: off)
    part_inside: float = 0.7
    two_parts_iou: float | None = 0.5    # two doubtful boxes inside one sure box, overlapping by IoU below this, are
                                         # both posed (decided_parts) where the sure box's look shows a second body
                                         # (second_person >= two_people_evidence; a staged crop's look only), so that
                                         # a box over two people (a part of each) can be told by the rules of place
                                         # (None: off)
    two_people_evidence: float = TWO_PEOPLE_EVIDENCE
    part_height: float = 0.6             # a tracked part is at most this share of its person's height
    carried_quality: float = 0.15
    carried_evidence: float | None = None   # how sure a detection a carried box counts as where duplicates are
                                         # ranked and parts told (None: detector_floor, the least sure), so a
                                         # fresh detection of the same person usually wins (evidence)
    birth_person: float = 0.5
    birth_quality: float = 0.45
    birth_visible: int = 3               # without a verifier: keypoints called visible a new track needs
    birth_overlap: float = 0.6           # no track is born from a box lying more than this share inside a box a
                                         # track holds this frame (a second pose of that person; 1: off)
    pictures: str = "still"              # "still" or "video": a reported-pose map fitted on one kind
                                         # (calibration/reported.py FITTED) is applied to that kind only
    group_inside: float | None = None    # a box holding two other people, each with at least this share of their
                                         # box inside it, is a box of two people (_without_groups; None: off;
                                         # judged on the tracking worlds only, so VIDEO's alone: CHANGELOG)
    group_apart_iou: float = 0.5         # ... the two not one another: their boxes overlap by IoU below this
    # which tracks' boxes are carried into a frame to be looked in (tracking/pose_tracker.py frame_boxes)
    carried_min_px: float = 4.0          # a carried box narrower or shorter than this inside the frame is not
                                         # looked in (its person left the picture)
    carried_detected_iou: float = 0.3    # a carried box overlapping a detection by IoU at least this is that
                                         # detection's person, looked for in the detection's box alone
    carried_apart_iou: float = 0.5       # two carried boxes overlapping by IoU above this are one place: only the
                                         # track of the better pose quality looks there (one_box_per_place)

    def on_scale(self, a: float, b: float) -> PersonPolicy:
        """This policy for a verifier whose p(person) is its own moved through logit' = a * logit(p) + b: every
        p(person) threshold moved alike, so the same boxes are kept (a monotone map). (1, 0): this policy."""
        if (a, b) == (1.0, 0.0):
            return self
        return replace(self, **{f: float(remapped(getattr(self, f), a, b)) for f in P_PERSON_FIELDS
                                if getattr(self, f) is not None})

    def screen(self, origins, scores: np.ndarray, p_person: np.ndarray | None, sure_factor: float = 1.0) -> np.ndarray:
        """(N,) bool: which boxes get a pose. `p_person` None: no verifier (every box goes on to the pose rules).
        `sure_factor` scales sure_score as the detector scaled its threshold for this picture (a grey picture)."""
        origins = np.broadcast_to(np.asarray(origins, object), (len(scores),))
        keep = np.ones(len(scores), bool)
        if p_person is None:
            return keep
        p = np.asarray(p_person, float)
        sure = self.is_sure(scores, sure_factor)
        detected = origins == DETECTED
        keep[detected] = p[detected] >= np.where(sure[detected], self.min_person, self.unsure_person)
        carried = origins == CARRIED
        keep[carried] = p[carried] >= self.carried_person
        return keep

    def part_candidates(self, boxes: np.ndarray, scores: np.ndarray, origins, sure_factor: float = 1.0) -> np.ndarray:
        """(N,) bool: the boxes whose fate may be decided without posing them (PosePipeline.people: decide, then
        pose): detected boxes the detector is unsure of lying at least `part_inside` inside a detected box it is
        sure of. Once that sure box's person is posed, decided_parts says which of them _without_parts would drop
        as a part whatever their own pose."""
        origins = np.broadcast_to(np.asarray(origins, object), (len(scores),))
        detected = origins == DETECTED
        sure = self.is_sure(scores, sure_factor) & detected
        doubtful = detected & ~sure
        if self.sure_score is None or not sure.any() or not doubtful.any():
            return np.zeros(len(scores), bool)
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        inside = np.array([inside_shares(b, boxes[sure]).max() if d else 0.0 for b, d in zip(boxes, doubtful)])
        return doubtful & (inside >= self.part_inside)

    def decided_parts(self, boxes: np.ndarray, scores: np.ndarray, posed: list, sure_factor: float = 1.0) -> np.ndarray:
        """(M,) bool: which doubtful boxes (part_candidates) are parts of a person already posed, as _without_parts
        rules: a sure detected person whose pose the nobody test keeps, holding the box by `part_inside`, and
        ranked above the box even were its pose perfect (its evidence x pose quality above the box's score, pose
        quality being at most 1). Such a box is dropped whatever its verifier and pose say, so neither is run. What
        posing it could still change is the rest's fate through it (a pose it duplicates, a merge it helps tell),
        which the benches judge (docs/speed.md)."""
        boxes, scores = np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
        holders = [p for p in posed if getattr(p, "box_origin", None) == DETECTED
                   and self.is_sure([p.box_score], sure_factor)[0] and self.person_kept_alone(p)]
        if not holders or not len(boxes):
            return np.zeros(len(boxes), bool)
        held = np.array([np.asarray(p.box, float) for p in holders]).reshape(-1, 4)
        rank = np.array([self.rank(p) for p in holders])
        inside = np.array([inside_shares(b, held) >= self.part_inside for b in boxes]).reshape(len(boxes), -1)
        decided = np.any(inside & (rank[None] > scores[:, None]), 1)
        if self.two_parts_iou is not None:   # a holder of two boxes apart that shows a second body: pose both
            two = np.array([(p.second_person or 0.0) >= self.two_people_evidence for p in holders])
            shared = ((inside & two[None]).astype(int) @ inside.T.astype(int)) > 0
            decided &= ~np.any((box_iou(boxes, boxes) < self.two_parts_iou) & shared, 1)
        return decided

    def person_kept_alone(self, person) -> bool:
        """Does a detected pose pass the rules that judge it alone (keep's nobody test, or the verifier sure of its
        box)? The rules of place (duplicates, merges, parts) then judge it among the others."""
        return self.verified(person) or self.someone_there(person, self.min_pose_quality)

    def verified(self, person) -> bool:
        """Is the verifier sure (`sure_person`) that the box frames a person, whatever its pose says?"""
        return (self.sure_person is not None and person.person_probability is not None
                and person.person_probability >= self.sure_person)

    def is_sure(self, scores, sure_factor: float = 1.0) -> np.ndarray:
        scores = np.asarray(scores, float)
        return np.ones(len(scores), bool) if self.sure_score is None else scores >= self.sure_score * sure_factor

    def someone_there(self, person, min_quality: float | None = None) -> bool:
        """Do the pose's visible keypoints and quality say a person is there? min_pose_quality 0 keeps all."""
        floor = self.min_pose_quality if min_quality is None else min_quality
        if floor <= 0:
            return True
        seen = self.something_seen(person) or (self.unseen_quality is not None
                                               and person.pose_quality >= self.unseen_quality)
        return seen and not person.pose_quality < floor

    def something_seen(self, person) -> bool:
        """Does the pose call at least min_visible keypoints visible (a model without visibility: yes)?"""
        return person.visibility is None or int((np.asarray(person.visibility) == 2).sum()) >= self.min_visible

    def keep(self, people: list, origins, mode: str | None = None, sure_factor: float = 1.0) -> list:
        """The people of one picture reported, from their poses (each with `box_score` and, with a verifier,
        `person_probability`) and their boxes' origins (one, or one per pose). Order kept: who is somebody by
        their own pose and box (`somebody`), then the rules of place among those (each person once)."""
        origins = list(np.broadcast_to(np.asarray(origins, object), (len(people),)))
        alone = {id(p) for p in self.somebody(people, origins, sure_factor)}
        kept = {id(p) for p, o in zip(people, origins) if self.given(o)}
        boxed = [p for p, o in zip(people, origins) if id(p) in alone and not self.given(o)]
        if len(boxed) > 1:                   # each person once
            mode = mode or ("oks" if boxed[0].visibility is not None else "heatmap")
            boxed = self._without_merges(boxed)
            boxed = pose_nms(boxed, self.nms, self.duplicate_oks, mode, rank=self.duplicate_rank,
                             same_keypoints=self.same_keypoints, margin=self.duplicate_margin)
            boxed = self._without_parts(self._without_groups(boxed), sure_factor)
        kept |= {id(p) for p in boxed}
        return [p for p in people if id(p) in kept]

    def somebody(self, people: list, origins, sure_factor: float = 1.0) -> list:
        """The people who are somebody by their own pose and box alone (keep's first decision, before the rules of
        place): the caller's, verified boxes, and poses of enough quality with a keypoint seen. Order kept. A staged
        pipeline asks it of looks, so that only these pay for the refinement (inference/pipeline.py)."""
        origins = list(np.broadcast_to(np.asarray(origins, object), (len(people),)))
        out = []
        for p, o in zip(people, origins):
            if self.given(o):
                out.append(p)
                continue
            floor = self.min_pose_quality
            if floor > 0 and o == CARRIED:
                floor = max(floor, self.carried_quality)
            elif o == DETECTED and p.person_probability is None and not self.is_sure([p.box_score], sure_factor)[0]:
                # no verifier judged this unsure box: its pose must confirm it, and a box of a few dozen pixels
                # is not judged (the trust model reading a crop blown up from it calls people everywhere)
                if p.box[3] < self.unsure_min_height:
                    continue
                floor = max(floor, self.unsure_quality)
            verified = o == DETECTED and self.verified(p)
            if verified or self.someone_there(p, floor):
                out.append(p)
        return out

    @staticmethod
    def given(origin) -> bool:
        """Did the caller give this person (its box, or the whole picture with no detector: "each image is one
        person")? Then it is reported as given: the caller asserted a person there, and a poor pose is told by its
        pose quality, not by dropping the person."""
        return origin in (GIVEN, WHOLE)

    def evidence(self, person) -> float:
        """How sure the detector is that a box frames a person, for ranking duplicates and telling parts: its score
        (a tight box scores higher than a loose one; the verifier, which reads context, ranked looser boxes first:
        CHANGELOG), a carried box counting as `carried_evidence`, so that a fresh detection of the same person is
        kept over it where their pose qualities are near."""
        if getattr(person, "box_origin", None) == CARRIED:
            return float(self.detector_floor if self.carried_evidence is None else self.carried_evidence)
        return float(person.box_score)

    def duplicate_rank(self, person) -> float:
        """What a pose's quality is multiplied by where pose NMS picks one of a person's poses: the box's evidence
        to the power `duplicate_evidence`. Of two boxes on one person the surer one frames them better, but which
        pose is right is the trust model's call (why STILL adds duplicate_margin: CHANGELOG)."""
        return self.evidence(person) ** self.duplicate_evidence

    def rank(self, person) -> float:
        """Who of two boxes on one person is that person, the other a part: evidence x pose quality."""
        return self.evidence(person) * float(person.pose_quality)

    def _without_merges(self, people: list) -> list:
        """Less the poses that lie on two people: each of `same_keypoints` keypoints or more on one spot with one
        of two other poses that are not one person (detect/nms.py merged_poses: a box over two walkers, its head
        on one and its legs on the other). Those two are reported; the pose over both is not."""
        if self.same_keypoints is None or len(people) < 3 or any(p.visibility is None for p in people):
            return people
        kps = np.stack([np.asarray(p.keypoints, float) for p in people])
        areas = np.array([float(p.box[2] * p.box[3]) for p in people])
        present = np.stack([np.asarray(p.visibility) >= 1 for p in people])
        merged = merged_poses(kps, areas, present, self.same_keypoints)
        return [p for p, m in zip(people, merged) if not m]

    def _without_parts(self, people: list, sure_factor: float = 1.0) -> list:
        """A doubtful box (evidence below the sure score) lying mostly inside the box of a person ranked higher:
        a part of that person (an upper body, a leg), whose pose NMS does not match to the whole person's."""
        doubt = (self.sure_score or 0.0) * sure_factor
        by_rank = sorted(people, key=lambda p: -self.rank(p))
        kept: list = []
        for p in by_rank:
            if self.evidence(p) < doubt and any(inside_share(p.box, o.box) >= self.part_inside for o in kept):
                continue
            kept.append(p)
        ids = {id(p) for p in kept}
        return [p for p in people if id(p) in ids]

    def _without_groups(self, people: list) -> list:
        """A box that two other people fill (each with group_inside of their box inside it, each as tall as a
        whole person: part_height of its height or more, the two not one another) while its pose is less trusted
        than either of theirs: the detector framed two people walking together as one, and its pose spans both
        (seen in vtest's first seconds). Its two people are reported; the box of both is not."""
        if self.group_inside is None or len(people) < 3:
            return people
        boxes = np.array([np.asarray(p.box, float) for p in people])
        quality = np.array([float(p.pose_quality) for p in people])
        groups = set()
        for g, box in enumerate(boxes):
            inside = [inside_share(b, box) for b in boxes]
            members = [i for i in range(len(people)) if i != g and inside[i] >= self.group_inside
                       and boxes[i, 3] >= self.part_height * box[3] and quality[i] > quality[g]]
            if any(box_iou(boxes[[a]], boxes[[b]])[0, 0] < self.group_apart_iou
                   for k, a in enumerate(members) for b in members[k + 1:]):
                groups.add(g)
        return [p for i, p in enumerate(people) if i not in groups]

    def without_tracked_parts(self, people: list) -> list:
        """Tracked people as reported, less those that are a part of another: a box lying mostly (part_inside of
        its area) inside another's and at most `part_height` of its height (a track left on a walker's legs after
        the walker's id changed). Only what is reported changes: the track lives on, and may hold its person
        again."""
        boxes = np.array([np.asarray(p.box, float) for p in people]).reshape(-1, 4)
        return [p for i, p in enumerate(people)
                if not any(j != i and boxes[i, 3] <= self.part_height * boxes[j, 3]
                           and inside_share(boxes[i], boxes[j]) >= self.part_inside for j in range(len(people)))]

    def born(self, person, inside_held: float = 0.0) -> bool:
        """May this pose start a track? p(person) where the verifier judged it, else its visible keypoints; and
        its pose quality either way. `inside_held`: the largest share of its box inside a box a track holds this
        frame: above birth_overlap it is a second pose of that person, unless the verifier is as sure of it as
        the still-picture policy must be to keep a box lying inside another (the same people on a first frame as
        in a picture)."""
        if person.pose_quality < self.birth_quality:
            return False
        if inside_held > self.birth_overlap and (person.person_probability is None
                                                 or person.person_probability < self.unsure_person):
            return False
        if person.person_probability is not None:
            return person.person_probability >= self.birth_person
        return person.visibility is None or int((np.asarray(person.visibility) == 2).sum()) >= self.birth_visible


# the preset for independent pictures (the API, `posecal predict`, eval and audit with a detector): unsure_person
# and sure_person chosen on the verifier's own scale for the most people found minus people invented;
# duplicate_margin so that a pose spanning two walkers loses to the walker behind (stills only: CHANGELOG)
STILL = PersonPolicy(sure_person=0.8, duplicate_margin=0.1)
# the preset for tracked frames (PoseTracker, `posecal track`): the detector at its sure score, every box judged by
# the verifier, since across frames births and continuations do what unsure boxes do in a picture; birth_person
# chosen leave one world out on the tracking worlds; sure_person as in stills, so one rule decides a frame's
# people; group_inside ends vtest's box over two walkers at a stated IDF1 cost (CHANGELOG)
VIDEO = PersonPolicy(detector_floor=SURE_SCORE, sure_person=0.8, birth_person=0.3, group_inside=0.6,
                     pictures="video")
