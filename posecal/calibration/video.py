"""Calibration of the poses `posecal track` reports, per how each was obtained.

Why a map of its own: a tracked pose may be carried by optical flow, predicted from velocity while hidden, and is
smoothed over time, and video people are smaller and blurrier, so the single-image calibration is over-confident
there (bench/trust_conditions.py --video). The reported `keypoint_quality`, `pose_quality` and `keypoint_radius`
of each `pose_source` (detected, carried, held) go through maps fitted on tracked videos with known truth
(tools/fit_video_calibration.py): per keypoint type an isotonic map to the true OPKS, one isotonic map of pose
quality to the true OKS, and one split-conformal factor on the radius. The tracker's own decisions are untouched.
A map ships for a pose source only where it beats no map in every kind of world it was not fitted on
(tools/video_choice.py); each map is shrunk towards the identity where its data is thin (SHRINK_PAIRS).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from posecal.calibration.conformal import conformal_quantile
from posecal.calibration.maps import IsotonicMap, fit_isotonic
from posecal.metrics.oks import opks as true_opks

SOURCES = ("detected", "carried", "held")
MIN_PAIRS = 30      # a pose source seen fewer times than this in the fitting videos keeps its values
SHRINK_PAIRS = 200  # a map fitted on n values is n / (n + SHRINK_PAIRS) of the way from the identity to the fit


@dataclass
class SourceMaps:
    keypoint_maps: list[IsotonicMap]     # per keypoint type
    pose_map: IsotonicMap
    radius_scale: float

    def keypoint_quality(self, quality) -> np.ndarray:
        q = np.asarray(quality, np.float64)
        return np.array([m(v) for m, v in zip(self.keypoint_maps, q)])

    def mapped(self, keypoint_quality, pose_quality, keypoint_radius):
        """(keypoint quality, pose quality, radius) as reported through these maps (radius None stays None)."""
        radius = None if keypoint_radius is None else np.asarray(keypoint_radius, np.float64) * self.radius_scale
        return self.keypoint_quality(keypoint_quality), float(self.pose_map(pose_quality)), radius

    def to_dict(self) -> dict:
        return {"keypoint_maps": [m.to_dict() for m in self.keypoint_maps], "pose_map": self.pose_map.to_dict(),
                "radius_scale": float(self.radius_scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "SourceMaps":
        scale = float(d["radius_scale"])
        if not 0 < scale < np.inf:
            raise ValueError(f"radius_scale must be a number > 0, got {scale}")
        return cls([IsotonicMap.from_dict(m) for m in d["keypoint_maps"]], IsotonicMap.from_dict(d["pose_map"]), scale)


@dataclass
class VideoCalibration:
    by_source: dict[str, SourceMaps]
    fit_info: dict

    def apply(self, person):
        """A tracked PersonPose with its reported trust values mapped for its pose_source (unchanged when that
        source has no maps)."""
        maps = self.by_source.get(getattr(person, "pose_source", "detected"))
        if maps is None:
            return person
        kq, pq, radius = maps.mapped(person.keypoint_quality, person.pose_quality, person.keypoint_radius)
        return dataclasses.replace(person, keypoint_quality=kq, pose_quality=pq, keypoint_radius=radius,
                                   quality_from="video")

    def apply_record(self, record: dict) -> dict:
        """A result record of `posecal track` written without a video calibration (PersonPose.to_dict) with its
        keypoint_quality, pose_quality and keypoint_radius mapped as `apply` maps them (what benches and the
        fitting tool judge; the keypoints' third value and `score` are left as written)."""
        maps = self.by_source.get(record.get("pose_source", "detected"))
        if maps is None:
            return record
        kq, pq, radius = maps.mapped(record["keypoint_quality"], record["pose_quality"], record.get("keypoint_radius"))
        return record | {"keypoint_quality": kq.tolist(), "pose_quality": pq, "quality_from": "video"} | (
            {} if radius is None else {"keypoint_radius": radius.tolist()})

    def to_dict(self) -> dict:
        return {"by_source": {k: v.to_dict() for k, v in self.by_source.items()}, "fit_info": self.fit_info}

    @classmethod
    def from_dict(cls, d: dict) -> "VideoCalibration":
        unknown = set(d["by_source"]) - set(SOURCES)
        if unknown:
            raise ValueError(f"video calibration for unknown pose sources {sorted(unknown)}")
        return cls({k: SourceMaps.from_dict(v) for k, v in d["by_source"].items()}, dict(d.get("fit_info", {})))


def record_truth(pairs: list[tuple[dict, dict]]) -> dict[str, np.ndarray]:
    """Arrays of (truth annotation, reported record) pairs: reported keypoints, quality, pose quality, radius;
    true OPKS, OKS, labelled mask, keypoint errors."""
    k = 17
    gt = np.array([np.reshape(a["keypoints"], (k, 3)) for a, _ in pairs], np.float64).reshape(-1, k, 3)
    kp = np.array([np.reshape(r["keypoints"], (k, 3))[:, :2] for _, r in pairs], np.float64).reshape(-1, k, 2)
    area = np.array([a["area"] for a, _ in pairs], np.float64)
    ks = true_opks(kp, gt[..., :2], area)
    lab = gt[..., 2] > 0
    n = lab.sum(1)
    with np.errstate(invalid="ignore"):
        oks = np.where(n > 0, (ks * lab).sum(1) / np.maximum(n, 1), np.nan)
    radius = np.array([r.get("keypoint_radius", [np.inf] * k) for _, r in pairs], np.float64).reshape(-1, k)
    return {"quality": np.array([r["keypoint_quality"] for _, r in pairs], np.float64).reshape(-1, k),
            "pose_quality": np.array([r["pose_quality"] for _, r in pairs], np.float64),
            "radius": radius, "opks": ks, "oks": oks, "labelled": lab,
            "error": np.linalg.norm(kp - gt[..., :2], axis=-1)}


def toward_identity(m: IsotonicMap, n: int, shrink: float = SHRINK_PAIRS) -> IsotonicMap:
    """The isotonic map m, fitted on n values, blended with the identity on [0, 1]: w m(x) + (1 - w) x with
    w = n / (n + shrink), exact between its knots (both are linear there) and at 0 and 1 (knots added there)."""
    w = n / (n + shrink) if shrink > 0 else 1.0
    x = np.unique(np.clip(np.r_[0.0, m.x, 1.0], 0.0, 1.0))
    return IsotonicMap(x, np.maximum.accumulate(w * m(x) + (1 - w) * x))


def fit_source_maps(pairs: list[tuple[dict, dict]], target: float = 0.9, shrink: float = SHRINK_PAIRS
                    ) -> SourceMaps:
    """One pose source's maps from its (truth annotation, record written without a video calibration) pairs:
    per keypoint type and for the pose an isotonic map shrunk towards the identity by its count, and the
    conformal radius factor."""
    t = record_truth(pairs)
    lab, has = t["labelled"], np.isfinite(t["oks"])
    ratio = t["error"][lab] / np.maximum(t["radius"][lab], 1e-6)
    scale = conformal_quantile(ratio, target)
    return SourceMaps([toward_identity(fit_isotonic(t["quality"][lab[:, k], k], t["opks"][lab[:, k], k]),
                                       int(lab[:, k].sum()), shrink) for k in range(lab.shape[1])],
                      toward_identity(fit_isotonic(t["pose_quality"][has], t["oks"][has]), int(has.sum()), shrink),
                      scale if np.isfinite(scale) else 1.0)


def by_source(pairs: list[tuple[dict, dict]]) -> dict[str, list[tuple[dict, dict]]]:
    """(truth, record) pairs split by the record's pose_source (every one of SOURCES, maybe empty)."""
    return {name: [p for p in pairs if p[1].get("pose_source", "detected") == name] for name in SOURCES}
