"""Calibration of the poses `posecal track` reports, per how each was obtained (issue 38).

Why a map of its own: a tracked pose is not the single-image estimate the model's calibration was fitted on.
Between detector frames it is carried by optical flow from the last estimate, a hidden track's pose is
predicted from its velocity, and every reported pose is smoothed over time; people in video are also smaller,
blurrier and compressed. Measured against exact truth (bench/trust_conditions.py --video), the single-image
calibration is over-confident there. So the reported `keypoint_quality`, `pose_quality` and `keypoint_radius` of
each `pose_source` (detected, carried, held) go through maps fitted on tracked videos with known truth
(tools/fit_video_calibration.py, on tuning scenes; judged on other scenes):
- keypoint quality: per keypoint type an isotonic map of the reported value to the true OPKS;
- pose quality: one isotonic map of the reported value to the true OKS;
- radius: one split-conformal factor on the reported radius, so that it holds the true keypoint with
  probability `target` again.
The trust values that drive the tracker's own decisions are not touched: only what is reported.
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


@dataclass
class SourceMaps:
    keypoint_maps: list[IsotonicMap]     # per keypoint type
    pose_map: IsotonicMap
    radius_scale: float

    def keypoint_quality(self, quality) -> np.ndarray:
        q = np.asarray(quality, np.float64)
        return np.array([m(v) for m, v in zip(self.keypoint_maps, q)])

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
        radius = None if person.keypoint_radius is None else np.asarray(person.keypoint_radius) * maps.radius_scale
        return dataclasses.replace(person, keypoint_quality=maps.keypoint_quality(person.keypoint_quality),
                                   pose_quality=float(maps.pose_map(person.pose_quality)), keypoint_radius=radius)

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


def fit_video_calibration(pairs: list[tuple[dict, dict]], target: float = 0.9, source: str = "") -> VideoCalibration:
    """Maps per pose source from (truth annotation, reported record) pairs of tracked videos (records as
    written without a video calibration)."""
    out, counts = {}, {}
    for name in SOURCES:
        some = [p for p in pairs if p[1].get("pose_source", "detected") == name]
        counts[name] = len(some)
        if len(some) < MIN_PAIRS:
            continue
        t = record_truth(some)
        lab, has = t["labelled"], np.isfinite(t["oks"])
        ratio = t["error"][lab] / np.maximum(t["radius"][lab], 1e-6)
        scale = conformal_quantile(ratio, target)
        out[name] = SourceMaps([fit_isotonic(t["quality"][lab[:, k], k], t["opks"][lab[:, k], k])
                                for k in range(lab.shape[1])],
                               fit_isotonic(t["pose_quality"][has], t["oks"][has]),
                               scale if np.isfinite(scale) else 1.0)
    return VideoCalibration(out, {"pairs": counts, "source": source, "target": target})
