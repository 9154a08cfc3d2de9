"""Which pose sources get a video map: each judged leave-one-world-out against no map (issue 53).

Why: maps fitted in one room learn that room's offset, and elsewhere they can make the reported trust worse
than the image calibration alone. So a candidate map (calibration/video.py's design) is judged the way it will
be used, on a kind of world it never saw: for every world kind W in turn (a background, a person size, a
compression...: whatever the caller groups its tracked videos by), the map is fitted on the other kinds' pairs
and W's records go through it; it must have a lower keypoint ECE and a lower pose ECE there than the records as
written without a map. A pose source ships the map fitted on every world only if it wins on every world kind
judged (and at least MIN_WORLDS were); otherwise the source gets no map, and its values stay as the image
calibration reports them. A world with fewer than MIN_PAIRS poses of a source is not judged for it.
`keep_judged` applies the same rule to maps already fitted (a model file's), on worlds they were not fitted on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from posecal.calibration.video import (MIN_PAIRS, SHRINK_PAIRS, SOURCES, SourceMaps, VideoCalibration, by_source,
                                       fit_source_maps, record_truth)
from posecal.metrics.calibration import ece

MIN_WORLDS = 2     # a map judged on fewer world kinds than this has shown nothing: it is refused


@dataclass
class WorldJudgement:
    """One pose source's map on one world kind it was not fitted on, beside no map there."""

    world: str
    poses: int
    keypoint_ece: float          # the records through the map fitted without this world
    keypoint_ece_none: float     # the records as written, no map
    pose_ece: float
    pose_ece_none: float

    @property
    def better(self) -> bool:
        return self.keypoint_ece < self.keypoint_ece_none and self.pose_ece < self.pose_ece_none


def trust_eces(pairs: list[tuple[dict, dict]], maps: SourceMaps | None = None) -> tuple[float, float]:
    """(keypoint ECE, pose ECE) of the records' keypoint and pose quality against the true OPKS and OKS, through
    maps (None: as written); the ECE the conditions bench reports for video."""
    t = record_truth(pairs)
    kq, pq = t["quality"], t["pose_quality"]
    if maps is not None:
        kq = np.stack([maps.keypoint_quality(q) for q in kq])
        pq = maps.pose_map(pq)
    lab, has = t["labelled"], np.isfinite(t["oks"])
    return ece(kq[lab], t["opks"][lab]), ece(np.clip(pq[has], 0, 1), t["oks"][has])


def judged_on(world: str, pairs: list[tuple[dict, dict]], maps: SourceMaps) -> WorldJudgement:
    """maps on one world's pairs, beside no map there."""
    kp, pose = trust_eces(pairs, maps)
    kp_none, pose_none = trust_eces(pairs)
    return WorldJudgement(world, len(pairs), kp, kp_none, pose, pose_none)


def judge_source(worlds: dict[str, list[tuple[dict, dict]]], target: float = 0.9, shrink: float = SHRINK_PAIRS,
                 family: dict[str, str] | None = None) -> list[WorldJudgement]:
    """One pose source's pairs per world kind -> its map, fitted without each world in turn, judged there.
    family: world kind -> its family (e.g. the room it was filmed in); a held-out kind's whole family is left
    out of its fit (default: each kind alone), so that a room's degraded copies do not vouch for it."""
    family = family or {}
    out = []
    for held, pairs in worlds.items():
        mine = family.get(held, held)
        rest = [p for w, some in worlds.items() if family.get(w, w) != mine for p in some]
        if len(pairs) >= MIN_PAIRS and len(rest) >= MIN_PAIRS:
            out.append(judged_on(held, pairs, fit_source_maps(rest, target, shrink)))
    return out


def verdict(judged: list[WorldJudgement], pairs: int) -> dict:
    """Whether a source's map ships, with its judgement per world (as fit_info keeps it) and why."""
    ships = len(judged) >= MIN_WORLDS and all(j.better for j in judged)
    why = ("beats no map on every world kind it did not see" if ships else
           f"judged on {len(judged)} world kinds (< {MIN_WORLDS})" if len(judged) < MIN_WORLDS else
           "worse than no map on " + ", ".join(j.world for j in judged if not j.better))
    return {"pairs": pairs, "ships": ships, "worlds": [asdict(j) | {"better": j.better} for j in judged], "why": why}


def choose_video_calibration(worlds: dict[str, list[tuple[dict, dict]]], target: float = 0.9, source: str = "",
                             shrink: float = SHRINK_PAIRS, family: dict[str, str] | None = None) -> VideoCalibration:
    """(truth annotation, record written without a video calibration) pairs per world kind -> the video
    calibration that ships: per pose source the map fitted on every world where it beat no map on every world
    kind left out (with its family: judge_source), no map otherwise. fit_info keeps each source's judgement (and
    why a source has no map)."""
    split = {w: by_source(pairs) for w, pairs in worlds.items()}
    chosen, verdicts = {}, {}
    for name in SOURCES:
        everything = [p for w in worlds for p in split[w][name]]
        verdicts[name] = verdict(judge_source({w: split[w][name] for w in worlds}, target, shrink, family),
                                 len(everything))
        if verdicts[name]["ships"]:
            chosen[name] = fit_source_maps(everything, target, shrink)
    info = {"pairs": {k: v["pairs"] for k, v in verdicts.items()}, "source": source, "target": target,
            "shrink_pairs": shrink, "worlds": {w: len(p) for w, p in worlds.items()}, "families": dict(family or {}),
            "judgement": verdicts}
    return VideoCalibration(chosen, info)


def keep_judged(cal: VideoCalibration, worlds: dict[str, list[tuple[dict, dict]]], how: str = ""
                ) -> VideoCalibration:
    """An already fitted video calibration judged as it is on world kinds it was not fitted on: each source keeps
    its map only where it beats no map on every one of them (and at least MIN_WORLDS were judged). fit_info: the
    calibration's own, with this judgement added (`how`: the worlds, in words)."""
    split = {w: by_source(pairs) for w, pairs in worlds.items()}
    kept, verdicts = {}, {}
    for name, maps in cal.by_source.items():
        some = {w: split[w][name] for w in worlds}
        verdicts[name] = verdict([judged_on(w, pairs, maps) for w, pairs in some.items() if len(pairs) >= MIN_PAIRS],
                                 sum(len(p) for p in some.values()))
        if verdicts[name]["ships"]:
            kept[name] = maps
    return VideoCalibration(kept, dict(cal.fit_info) | {"judged_as_fitted": {
        "how": how, "worlds": {w: len(p) for w, p in worlds.items()}, "judgement": verdicts}})
