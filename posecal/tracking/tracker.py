"""Track life cycle: which poses of a frame continue which person, when a person is born and when they end.

Hysteresis both ways, so that one bad frame neither invents a person nor ends one: a new pose starts a
tentative track, confirmed (and given an id) at once when its pose quality is high, else after `birth_hits`
frames matched in a row; a tentative track that misses a frame is dropped; a confirmed track survives up to
`max_misses` frames without a match (occlusion, a missed detection) before it ends. Only confirmed tracks
are reported. Keypoints of reported poses are One-Euro smoothed with a cutoff that follows their trust.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from posecal.tracking.associate import match, similarity, trusted
from posecal.tracking.one_euro import OneEuroFilter


@dataclass
class TrackerConfig:
    min_similarity: float = 0.3     # OKS (or box IoU) below which a pose does not continue a track
    trust_quality: float = 0.3      # keypoint quality from which a keypoint counts in the association
    birth_quality: float = 0.5      # pose quality that confirms a new track at once
    birth_hits: int = 2             # otherwise: frames matched in a row before a track is confirmed
    max_misses: int = 10            # frames a confirmed track may go unmatched before it ends
    smooth: bool = True
    trusted_cutoff: float = 3.0     # One-Euro minimum cutoff (Hz) of a keypoint of quality 1 ...
    doubtful_cutoff: float = 0.3    # ... and of quality 0 (linear in between): doubtful keypoints are damped
    beta: float = 1.0               # cutoff rise per unit speed, speed in person heights per second


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
    track_id: int | None = None     # given on confirmation
    hits: int = 1
    misses: int = 0
    undetected: int = 0             # frames since a detector box (not one propagated from the track) held them
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))   # px per frame
    filter: OneEuroFilter = field(default_factory=OneEuroFilter)

    def predicted_shift(self) -> np.ndarray:
        """Where the person has moved since their last matched pose, at constant velocity: people who cross
        or come back after a few missed frames are looked for where they went, not where they were."""
        return self.velocity * (self.misses + 1)


class Tracker:
    """`update(people, t)` once per frame with its poses (PersonPose list) and time in seconds; returns the
    confirmed tracks' (track_id, smoothed PersonPose) in this frame. Ids count up from `first_id`."""

    def __init__(self, cfg: TrackerConfig | None = None, first_id: int = 1):
        self.cfg = cfg or TrackerConfig()
        self.tracks: list[Track] = []
        self.next_id = first_id

    def live_people(self, max_misses: int | None = None, max_undetected: int | None = None) -> list:
        """The pose of every track still alive (tentative ones too; with max_misses, only those unmatched for at
        most that many frames; with max_undetected, only those a detection held within that many frames), moved
        to where its velocity says the person is now: where to look next."""
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

    def update(self, people: list, t: float, detected: list[bool] | None = None) -> list[tuple[int, object]]:
        """detected[i]: people[i] came from a detector box (default: all did), not from a box propagated from a
        track; the video loop stops propagating tracks no detection has held for a while (ghosts)."""
        cfg = self.cfg
        detected = [True] * len(people) if detected is None else list(detected)
        sim = self._similarity(people)
        pairs, lost, new = match(sim, cfg.min_similarity)
        for r, c in pairs:
            track = self.tracks[r]
            step = _step(track.person, people[c]) / (track.misses + 1)
            track.velocity = step if track.hits == 1 else 0.5 * (track.velocity + step)
            track.person, track.hits, track.misses = people[c], track.hits + 1, 0
            track.undetected = 0 if detected[c] else track.undetected + 1
        for r in lost:
            self.tracks[r].misses += 1
            self.tracks[r].undetected += 1
        self.tracks = [tr for tr in self.tracks
                       if tr.misses == 0 or (tr.track_id is not None and tr.misses <= cfg.max_misses)]
        for c in new:
            p = people[c]
            self.tracks.append(Track(p, scale=max(float(p.box[3]), 1.0), undetected=0 if detected[c] else 1))
        out = []
        for tr in self.tracks:
            if tr.track_id is None and (tr.hits >= cfg.birth_hits or tr.person.pose_quality >= cfg.birth_quality):
                tr.track_id, self.next_id = self.next_id, self.next_id + 1
            if tr.track_id is not None and tr.misses == 0:
                out.append((tr.track_id, self._smoothed(tr, t)))
        return sorted(out, key=lambda item: item[0])

    def _similarity(self, people: list) -> np.ndarray:
        q = self.cfg.trust_quality

        def arrays(persons):
            xy = np.array([p.keypoints for p in persons], float).reshape(len(persons), -1, 2)
            trust = np.array([trusted(p.keypoint_quality, p.visibility, q) for p in persons], bool)
            boxes = np.array([p.box for p in persons], float).reshape(-1, 4)
            return xy, trust.reshape(len(persons), xy.shape[1]), boxes

        old = [tr.person for tr in self.tracks]
        if not old or not people:
            return np.zeros((len(old), len(people)))
        xy, trust, boxes = arrays(old)
        shift = np.array([tr.predicted_shift() for tr in self.tracks])
        boxes = np.concatenate([boxes[:, :2] + shift, boxes[:, 2:]], 1)
        return similarity(xy + shift[:, None], trust, boxes, *arrays(people))

    def _smoothed(self, tr: Track, t: float):
        p = tr.person
        if not self.cfg.smooth:
            return p
        cut = keypoint_cutoffs(p.keypoint_quality, p.visibility, self.cfg)
        absent = np.zeros(len(cut), bool) if p.visibility is None else np.asarray(p.visibility) == 0
        tr.filter.beta = self.cfg.beta
        xy = tr.filter(np.asarray(p.keypoints, float) / tr.scale, t, min_cutoff=cut[:, None],
                       reset=absent[:, None]) * tr.scale
        return dataclasses.replace(p, keypoints=xy)


def _step(old, new) -> np.ndarray:
    """How far a person moved between two matched poses: the median keypoint displacement (keypoints are
    steadier than boxes, whose size changes with their source, and the median ignores a few wrong joints)."""
    d = np.asarray(new.keypoints, float) - np.asarray(old.keypoints, float)
    d = d[np.isfinite(d).all(1)]
    return np.median(d, 0) if len(d) else np.zeros(2)
