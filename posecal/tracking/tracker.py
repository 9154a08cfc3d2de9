"""Track life cycle: which poses of a frame continue which person, when a person is born and when they end.

Matching in two stages, each one-to-one by the Hungarian method: (1) tracks by pose similarity (OKS over the
keypoints both poses have, else box IoU) at the place their velocity predicts, colours (`associate.colour_histogram`)
breaking ties; (2) tracks lost up to `max_misses` frames re-identified by position, size and colours, within a
reach that grows with the frames missed.

A new pose starts a track when PersonPolicy.born says so. A track survives up to `max_misses` frames without a
match before it ends; one whose pose collapses under another person is held as occluded rather than handed that
pose. Reported keypoints are One-Euro smoothed with a cutoff that follows their trust, and their trust values say
what the smoothing cost (smoothed_trust).

The thresholds were chosen on the tracking benchmark's tuning scenes, and a rule stays only where its effect also
holds on the held-out scenes (docs/tracking.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from scipy.optimize import linear_sum_assignment

from posecal.inference.person_policy import VIDEO, PersonPolicy
from posecal.calibration.conformal import moved_radius
from posecal.metrics.boxes import box_iou, inside_shares
from posecal.metrics.oks import AREA_PER_BOX, moved_opks
from posecal.tracking.associate import appearance_similarity, colour_histogram, reid_scores, similarity, trusted
from posecal.tracking.identity import IdConfidence, MatchContext, box_growth, held_features, id_features
from posecal.tracking.one_euro import OneEuroFilter


@dataclass
class TrackerConfig:
    min_similarity: float = 0.3     # OKS (or box IoU) below which a pose does not continue a track
    max_misses: int = 30            # frames a track may go unmatched before it ends
    smooth: bool = True
    trusted_cutoff: float = 3.0     # One-Euro minimum cutoff (Hz) of a keypoint of quality 1 ...
    doubtful_cutoff: float = 0.3    # ... and of quality 0 (linear in between): doubtful keypoints are damped
    beta: float = 20.0              # cutoff rise per unit speed, speed in person heights per second: a walking
                                    # person's keypoints follow with little lag, a still one's are smoothed (20
                                    # chosen on the tracking bench's tuning scenes by keypoint error + jitter; held
                                    # out, error 0.057 -> 0.024 of a height for jitter 0.009 -> 0.010; docs/tracking.md)
    appearance_weight: float = 0.2  # colour similarity's weight beside the pose similarity (a tie-breaker)
    appearance_rate: float = 0.2    # running-mean rate of a track's colours
    reid: bool = True               # stage 2: a lost track is matched by position, size and colours
    reid_distance: float = 1.0      # ... within this many of its heights of where its velocity says it is
                                    # (1.0 chosen leave one world out over bench/track_worlds.py's 8 kinds: IDF1
                                    # 0.784 -> 0.817; CHANGELOG) ...
    reid_distance_growth: float = 0.05   # ... plus this much per missed frame ...
    reid_scale: float = 1.5         # ... with a height within this factor ...
    reid_appearance: float = 0.6    # ... and colours at least this similar (Bhattacharyya coefficient)
    collapse: float = 0.8           # a track whose matched pose has less than this share of its running
                                    # pose quality while its box overlaps another track's (IoU >= hold_overlap) is
                                    # held as occluded (it misses; its pose is not taken): 0 is off
    hold_overlap: float = 0.3
    report_hidden: int = 3          # a track unmatched while its predicted box overlaps a seen track's
                                    # (IoU >= hold_overlap) is reported for up to this many frames where its velocity
                                    # says it is, every keypoint occluded (visibility 1), its qualities x HELD_QUALITY


def keypoint_cutoffs(quality: np.ndarray, visibility: np.ndarray | None, cfg: TrackerConfig) -> np.ndarray:
    """(K,) One-Euro minimum cutoffs: trusted keypoints follow quickly, doubtful ones are damped, and an
    occluded one (visibility 1) counts as half as trusted as its quality says."""
    q = np.clip(np.nan_to_num(np.asarray(quality, float)), 0, 1)
    if visibility is not None:
        q = np.where(np.asarray(visibility) == 1, 0.5 * q, q)
    return cfg.doubtful_cutoff + (cfg.trusted_cutoff - cfg.doubtful_cutoff) * q


@dataclass
class Track:
    person: object                  # last raw PersonPose matched
    scale: float                    # person height (px) at birth: the One-Euro speed unit
    track_id: int                   # given at birth
    hits: int = 1
    misses: int = 0
    undetected: int = 0             # frames since a detector box (not one propagated from the track) held them
    since_pose: int = 0             # frames since the pose network last posed them (0: this frame)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))   # px per frame
    quality: float = 1.0            # running mean of the pose quality (set at birth)
    hist: np.ndarray | None = None  # colours (associate.colour_histogram), a running mean while seen alone
    filter: OneEuroFilter = field(default_factory=OneEuroFilter)
    id_features: np.ndarray | None = None   # how its last pose came to continue it (identity.id_features);
                                            # None at birth: the id has no previous record

    def predicted_shift(self) -> np.ndarray:
        """Where the person has moved since their last matched pose, at constant velocity: people who cross
        or come back after a few missed frames are looked for where they went, not where they were."""
        return self.velocity * (self.misses + 1)

    def shift_now(self) -> np.ndarray:
        """Where the person has moved since their last matched pose as of this frame (its misses counted)."""
        return self.velocity * self.misses

    @property
    def known_velocity(self) -> np.ndarray | None:
        """The velocity, None while the track has had one pose only (it starts at zero, not measured)."""
        return None if self.hits == 1 else self.velocity


class Tracker:
    """`update(people, t)` once per frame with its poses (PersonPose list) and time in seconds; returns the
    tracks' (track_id, smoothed PersonPose) seen in this frame (and hidden ones: report_hidden). Ids count up
    from `first_id`. With `id_confidence` (a fitted identity.IdConfidence) each reported pose that continues its
    id carries its id_confidence; the features behind it, per reported track id, are in `evidence` after each
    frame (None for an id born there). They rate the ids given, they change none."""

    def __init__(self, cfg: TrackerConfig | None = None, first_id: int = 1, policy: PersonPolicy = VIDEO,
                 id_confidence: IdConfidence | None = None):
        self.cfg, self.policy = cfg or TrackerConfig(), policy
        self.tracks: list[Track] = []
        self.next_id = first_id
        self.id_confidence = id_confidence
        self.evidence: dict[int, np.ndarray | None] = {}

    def live_people(self, max_misses: int | None = None, max_undetected: int | None = None) -> list:
        """The pose of every track still alive (with max_misses, only those unmatched for at most that many
        frames; with max_undetected, only those a detection held within that many frames), moved to where its
        velocity says the person is now: where to look next."""
        out = []
        for tr in self.tracks:
            if max_misses is not None and tr.misses > max_misses:
                continue
            if max_undetected is not None and tr.undetected > max_undetected:
                continue
            d = tr.predicted_shift()
            out.append(dataclasses.replace(tr.person, keypoints=np.asarray(tr.person.keypoints, float) + d,
                                           box=np.r_[np.asarray(tr.person.box[:2], float) + d, tr.person.box[2:]]))
        return out

    def update(self, people: list, t: float, detected: list[bool] | None = None,
               image: np.ndarray | None = None) -> list[tuple[int, object]]:
        """detected[i]: people[i] came from a detector box (default: all did), not from a box propagated from a
        track; the video loop stops propagating tracks no detection has held for a while (ghosts). `image` (the
        frame, BGR), when given, adds the people's colours (appearance) to the association."""
        detected = [True] * len(people) if detected is None else list(detected)
        hists = [colour_histogram(image, p.box) if image is not None else None for p in people]
        pairs, hidden, found = self._associate(people, hists)
        boxes = np.array([p.box for p in people], float).reshape(-1, 4)
        self._rate(pairs, people, hists, found)
        self._refresh(pairs, people, detected, hists, boxes)
        self._miss_unmatched({r for r, _ in pairs})
        self._give_birth(people, pairs, hidden, detected, hists, boxes)
        return self._reported(t)

    def _associate(self, people: list, hists: list
                   ) -> tuple[list[tuple[int, int]], set[int], set[tuple[int, int]]]:
        """(track, person) pairs, the people let go as occluded, and the pairs re-identification found: tracks by
        pose (OKS, or box IoU) where their velocity says they are, colours breaking ties; then, with
        re-identification, tracks still lost looked for by position, size and colours; then the occluded held
        (_hold_occluded)."""
        everyone = list(range(len(self.tracks)))
        free = list(range(len(people)))
        pairs = self._stage(everyone, free, people, hists, self._pose_stage)
        found: list[tuple[int, int]] = []
        if self.cfg.reid:
            lost = [i for i in everyone if i not in {r for r, _ in pairs}]
            found = self._stage(lost, [c for c in free if c not in {c for _, c in pairs}], people, hists,
                                self._reid_stage)
        kept, hidden = self._hold_occluded(pairs + found, people)
        return kept, hidden, set(found)

    def _match_context(self, people: list, hists: list | None) -> MatchContext:
        """What the association sees between every track (as it was before this frame) and the frame's poses
        (identity.MatchContext): the features of identity trust are read from it."""
        tracks = self.tracks
        sim = self._similarity(people)
        app = np.array([[appearance_similarity(tr.hist, None if hists is None else hists[c])
                         for c in range(len(people))] for tr in tracks]).reshape(sim.shape)
        boxes = np.array([p.box for p in people], float).reshape(-1, 4)
        pred = np.array([self._predicted_box(tr) for tr in tracks]).reshape(-1, 4)
        crowd = box_iou(boxes, boxes) - np.eye(len(boxes)) if len(boxes) > 1 else np.zeros((len(boxes), 1))
        return MatchContext(score=sim + self.cfg.appearance_weight * (app - 0.5), similarity=sim,
                            box_iou=box_iou(pred, boxes), appearance=app, crowd=crowd.max(1, initial=0.0),
                            gap=np.array([tr.misses for tr in tracks], float),
                            undetected=np.array([tr.undetected for tr in tracks], float),
                            growth=box_growth(pred, boxes), track_quality=np.array([tr.quality for tr in tracks]))

    def _rate(self, pairs: list[tuple[int, int]], people: list, hists: list | None,
              found: set[tuple[int, int]] = frozenset()) -> None:
        """Each matched track keeps the features of how its new pose came to continue it (identity.id_features),
        read before the track takes the pose; found: the pairs re-identification made."""
        if not pairs:
            return
        ctx = self._match_context(people, hists)
        for r, c in pairs:
            self.tracks[r].id_features = id_features(ctx, r, c, people[c], reid=(r, c) in found)

    def _refresh(self, pairs: list[tuple[int, int]], people: list, detected: list[bool], hists: list,
                 boxes: np.ndarray) -> None:
        """Each matched track takes its person: velocity, hits, running quality, and its colours where the
        person's box overlaps nobody else's (else they would be partly someone else's)."""
        cfg = self.cfg
        crowd = box_iou(boxes, boxes) - np.eye(len(boxes)) if len(boxes) else np.zeros((0, 0))
        for r, c in pairs:
            track = self.tracks[r]
            step = _step(track.person, people[c]) / (track.misses + 1)
            track.velocity = step if track.hits == 1 else 0.5 * (track.velocity + step)
            track.person, track.hits, track.misses = people[c], track.hits + 1, 0
            track.undetected = 0 if detected[c] else track.undetected + 1
            track.since_pose = 0 if people[c].pose_source == "detected" else track.since_pose + 1
            track.quality = 0.8 * track.quality + 0.2 * float(people[c].pose_quality)
            if hists[c] is not None and (len(boxes) < 2 or crowd[c].max() < 0.3):
                track.hist = hists[c] if track.hist is None else \
                    (1 - cfg.appearance_rate) * track.hist + cfg.appearance_rate * hists[c]

    def _miss_unmatched(self, matched: set[int]) -> None:
        """Tracks not matched this frame miss it; those missed more than max_misses frames end."""
        for r in range(len(self.tracks)):
            if r not in matched:
                self.tracks[r].misses += 1
                self.tracks[r].undetected += 1
        self.tracks = [tr for tr in self.tracks if tr.misses <= self.cfg.max_misses]

    def _give_birth(self, people: list, pairs: list[tuple[int, int]], hidden: set[int], detected: list[bool],
                    hists: list, boxes: np.ndarray) -> None:
        """New tracks for the people no track holds, the most trusted pose first, where the person policy says
        they are somebody new (not a doubtful pose, nor a second pose of a person a track already holds)."""
        held = [c for _, c in pairs]
        unmatched, born = set(range(len(people))) - {c for _, c in pairs} - hidden, []
        for c in sorted(unmatched, key=lambda c: (-people[c].pose_quality, c)):
            if not self.policy.born(people[c], inside_shares(boxes[c], boxes[held]).max() if held else 0.0):
                continue
            born.append(c)
            held.append(c)
        for c in sorted(born):
            p = people[c]
            self.tracks.append(Track(p, scale=max(float(p.box[3]), 1.0), track_id=self.next_id, hist=hists[c],
                                     quality=float(p.pose_quality), undetected=0 if detected[c] else 1))
            self.next_id += 1

    def seen(self) -> list[Track]:
        """The tracks matched in the last frame (those a flow can follow into the next one)."""
        return [tr for tr in self.tracks if tr.misses == 0]

    def follow(self, tracks: list[Track], poses: list, t: float) -> list[tuple[int, object]]:
        """A frame between detector frames: `tracks` (from seen()) continue with `poses`, their last poses carried
        into this frame (tracking/flow.py) or, for the tracks due a fresh pose (pose_tracker's re-pose cadence),
        posed afresh in their carried box; no association (no id can change hands between detector frames); the
        other tracks miss. Returns the reported tracks, as update() does. A carried pose changes no running
        quality or colours (it adds no evidence about the person); a fresh one updates the running quality."""
        carried = {id(tr) for tr in tracks}
        if tracks:
            ctx = self._match_context(list(poses), None)
            place = {id(tr): k for k, tr in enumerate(self.tracks)}
            for k, (tr, pose) in enumerate(zip(tracks, poses)):
                tr.id_features = id_features(ctx, place[id(tr)], k, pose)
        for tr, pose in zip(tracks, poses):
            step = _step(tr.person, pose)
            tr.velocity = step if tr.hits == 1 else 0.5 * (tr.velocity + step)
            tr.person, tr.undetected = pose, tr.undetected + 1
            if pose.pose_source == "detected":    # posed afresh: evidence about the person
                tr.quality, tr.since_pose = 0.8 * tr.quality + 0.2 * float(pose.pose_quality), 0
            else:
                tr.since_pose += 1
            tr.hits += 1
        for tr in self.tracks:
            if id(tr) not in carried:
                tr.misses += 1
                tr.undetected += 1
        self.tracks = [tr for tr in self.tracks if tr.misses <= self.cfg.max_misses]
        return self._reported(t)

    def _reported(self, t: float) -> list[tuple[int, object]]:
        cfg = self.cfg
        seen = [tr for tr in self.tracks if tr.misses == 0]
        out = [(tr.track_id, self._smoothed_pose(tr, tr.person, t)) for tr in seen]
        self.evidence = {tr.track_id: tr.id_features for tr in seen}
        if cfg.report_hidden:
            hidden = self._hidden(out)
            front = np.array([p.box for _, p in out], float).reshape(-1, 4)
            for tr in hidden:
                pose = self._smoothed_pose(tr, hidden_pose(tr), t)
                crowd = float(box_iou(np.asarray(pose.box, float)[None], front).max(initial=0.0))
                self.evidence[tr.track_id] = held_features(pose, crowd, tr.misses, tr.undetected)
                out.append((tr.track_id, pose))
        return sorted(((i, self._with_id_confidence(i, p)) for i, p in out), key=lambda item: item[0])

    def _with_id_confidence(self, track_id: int, pose):
        """The reported pose with its id_confidence (None: no fitted map, or the id was born with this pose)."""
        features = self.evidence.get(track_id)
        if self.id_confidence is None or features is None:
            return pose
        return dataclasses.replace(pose, id_confidence=float(self.id_confidence(features)[0]))

    def _hidden(self, seen: list) -> list[Track]:
        """Tracks unmatched for at most report_hidden frames whose box as it would be reported (hidden_pose: where
        their velocity says they are now) lies over the box of a person reported this frame: most likely behind
        them."""
        cfg = self.cfg
        lost = [tr for tr in self.tracks if 0 < tr.misses <= cfg.report_hidden]
        if not lost or not seen:
            return []
        front = np.array([p.box for _, p in seen], float)
        now = np.array([self._predicted_box(tr, tr.shift_now()) for tr in lost])
        behind = box_iou(now, front).max(1) >= cfg.hold_overlap
        return [tr for tr, b in zip(lost, behind) if b]

    def _hold_occluded(self, pairs: list[tuple[int, int]], people: list) -> tuple[list[tuple[int, int]], set[int]]:
        """A track whose matched pose is far less trusted than the track has been (pose quality below
        `collapse` x its running quality) while that pose's box overlaps another matched track's is held as
        occluded: its match is let go, so it misses and coasts at its velocity (and is looked for again there),
        instead of taking a pose that is mostly the person in front (a hidden person's pose falls onto the
        nearer one). The poses let go start no track. Returns the pairs kept and the poses let go."""
        cfg = self.cfg
        if cfg.collapse <= 0 or len(pairs) < 2:
            return pairs, set()
        boxes = np.array([people[c].box for _, c in pairs], float)
        overlap = box_iou(boxes, boxes) - np.eye(len(pairs))
        hold = {k for k, (r, c) in enumerate(pairs)
                if people[c].pose_quality < cfg.collapse * self.tracks[r].quality
                and overlap[k].max() >= cfg.hold_overlap}
        return [p for k, p in enumerate(pairs) if k not in hold], {pairs[k][1] for k in hold}

    def _stage(self, rows: list[int], cols: list[int], people: list, hists: list, score_fn) -> list[tuple[int, int]]:
        """Hungarian matching of tracks `rows` to people `cols` on score_fn's (score, allowed) matrices."""
        if not rows or not cols:
            return []
        score, ok = score_fn(rows, cols, people, hists)
        r, c = linear_sum_assignment(-np.where(ok, score, -1e6))
        return [(rows[i], cols[j]) for i, j in zip(r, c) if ok[i, j]]

    def _appearance(self, rows, cols, hists) -> np.ndarray:
        return np.array([[appearance_similarity(self.tracks[r].hist, hists[c]) for c in cols] for r in rows])

    def _pose_stage(self, rows, cols, people, hists):
        sim = self._similarity([people[c] for c in cols], rows)
        score = sim + self.cfg.appearance_weight * (self._appearance(rows, cols, hists) - 0.5)
        return score, sim >= self.cfg.min_similarity

    def _reid_stage(self, rows, cols, people, hists):
        cfg = self.cfg
        pred = np.array([self._predicted_box(self.tracks[r]) for r in rows]).reshape(-1, 4)
        reach = np.array([cfg.reid_distance + cfg.reid_distance_growth * self.tracks[r].misses for r in rows])
        near = reid_scores(pred, np.array([people[c].box for c in cols], float), reach, cfg.reid_scale)
        app = self._appearance(rows, cols, hists)
        known = np.array([[self.tracks[r].hist is not None and hists[c] is not None for c in cols] for r in rows])
        ok = np.isfinite(near) & (~known | (app >= cfg.reid_appearance))
        return np.where(ok, near, 0) + app, ok

    @staticmethod
    def _predicted_box(tr: Track, shift: np.ndarray | None = None) -> np.ndarray:
        """The track's last box moved by `shift` (default: where its velocity says to look next)."""
        d = tr.predicted_shift() if shift is None else shift
        return np.r_[np.asarray(tr.person.box[:2], float) + d, tr.person.box[2:]]

    def _similarity(self, people: list, rows: list[int] | None = None) -> np.ndarray:
        tracks = self.tracks if rows is None else [self.tracks[r] for r in rows]
        old = [tr.person for tr in tracks]
        if not old or not people:
            return np.zeros((len(old), len(people)))
        xy, trust, boxes = _arrays(old)
        shift = np.array([tr.predicted_shift() for tr in tracks])
        boxes = np.concatenate([boxes[:, :2] + shift, boxes[:, 2:]], 1)
        return similarity(xy + shift[:, None], trust, boxes, *_arrays(people))

    def _smoothed_pose(self, tr: Track, p, t: float):
        if not self.cfg.smooth:
            return p
        cut = keypoint_cutoffs(p.keypoint_quality, p.visibility, self.cfg)
        absent = np.zeros(len(cut), bool) if p.visibility is None else np.asarray(p.visibility) == 0
        tr.filter.beta = self.cfg.beta
        xy = tr.filter(np.asarray(p.keypoints, float) / tr.scale, t, min_cutoff=cut[:, None],
                       reset=absent[:, None]) * tr.scale
        return smoothed_trust(p, xy)


# Pose scores that are trust values (scoring.SCORE_MODES; the heatmap ones say nothing about where a keypoint is).
QUALITY_SCORES = ("oks", "opks")


def smoothed_trust(p, xy: np.ndarray):
    """Pose p with its keypoints moved to xy (smoothed) and its trust values for where they are now: each keypoint's
    quality as metrics.oks.moved_opks says (the person's area from its box), the pose quality and the quality-based
    pose scores by the same factor as the mean quality of its present keypoints, and each radius grown so that it
    holds the true keypoint as often around the new place (calibration.conformal.moved_radius)."""
    raw = np.asarray(p.keypoints, float)
    moved2 = np.nan_to_num(((xy - raw) ** 2).sum(-1))
    if not moved2.any():
        return dataclasses.replace(p, keypoints=xy)
    area = AREA_PER_BOX * max(float(p.box[2]) * float(p.box[3]), 1.0)
    before = np.asarray(p.keypoint_quality, float)
    after = moved_opks(before, moved2, area)
    present = np.ones(len(before), bool) if p.visibility is None else np.asarray(p.visibility) > 0
    if not present.any():
        present[:] = True
    factor = float(after[present].sum() / max(before[present].sum(), 1e-9))
    scores = {k: v * factor if k in QUALITY_SCORES else v for k, v in p.scores.items()}
    radius = None if p.keypoint_radius is None else moved_radius(p.keypoint_radius, np.sqrt(moved2))
    return dataclasses.replace(p, keypoints=xy, keypoint_quality=after, pose_quality=float(p.pose_quality) * factor,
                               scores=scores, keypoint_radius=radius)


def _arrays(persons: list):
    """Keypoints (P, K, 2), trusted keypoints (P, K) and boxes (P, 4) of poses, as associate.similarity takes them."""
    xy = np.array([p.keypoints for p in persons], float).reshape(len(persons), -1, 2)
    trust = np.array([trusted(p.keypoint_quality, p.visibility) for p in persons], bool)
    boxes = np.array([p.box for p in persons], float).reshape(-1, 4)
    return xy, trust.reshape(len(persons), xy.shape[1]), boxes


# what a held pose keeps of its last pose's keypoint and pose quality: a person hidden for a frame or three has
# mostly not moved off their velocity, so halving it would say far less than the truth. Chosen by keypoint
# ECE on the video trust bench's tuning scenes 0-8 and judged on scenes it did not see (CHANGELOG).
HELD_QUALITY = 0.8


def hidden_pose(tr: Track):
    """A hidden track's pose as reported: its last pose where its velocity says the person is now, every keypoint
    it had occluded (visibility 1; absent ones stay absent), its keypoint and pose quality and its scores x
    HELD_QUALITY: a guess, said so."""
    p, d = tr.person, tr.shift_now()                               # moved by the frames missed so far
    vis = None if p.visibility is None else np.where(np.asarray(p.visibility) > 0, 1, 0)
    return dataclasses.replace(p, keypoints=np.asarray(p.keypoints, float) + d,
                               box=Tracker._predicted_box(tr, d), visibility=vis,
                               keypoint_quality=HELD_QUALITY * np.asarray(p.keypoint_quality),
                               pose_quality=HELD_QUALITY * float(p.pose_quality),
                               scores={k: HELD_QUALITY * v for k, v in p.scores.items()}, pose_source="held")


def _step(old, new) -> np.ndarray:
    """How far a person moved between two matched poses: the median keypoint displacement (keypoints are
    steadier than boxes, whose size changes with their source, and the median ignores a few wrong joints)."""
    d = np.asarray(new.keypoints, float) - np.asarray(old.keypoints, float)
    d = d[np.isfinite(d).all(1)]
    return np.median(d, 0) if len(d) else np.zeros(2)
