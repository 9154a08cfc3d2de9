"""`posecal calibrate fit | apply`: trust outputs for ANY estimator's COCO keypoint results.

From an estimator's results on a labelled set (matched to the GT persons as `eval --results` matches them)
it fits, per keypoint type, isotonic maps of the raw keypoint score to the true OPKS (-> keypoint_quality)
and to the chance that the keypoint is labelled at all (-> visibility); the pose quality is the expected
OKS those imply (keypoint quality averaged with the labelled chances as weights), mapped isotonically to the
true OKS; and split-conformal radii on the calibrated keypoint quality, relative to the person's size (the
entry's `bbox` when it has one, else the box around its keypoints). Inputs used: raw keypoint score,
keypoint type, person size. Occluded vs visible cannot be told from a score alone: `visibility_probs`
splits the labelled chance by the type's occluded share in the fitting set, and `visibility` is 0 or 2.
The calibrator is a small JSON file that names its keypoint set, fit size and inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.calibration.conformal import ConformalRadii, fit_radii, person_scale
from posecal.calibration.maps import IsotonicMap, fit_isotonic
from posecal.calibration.quality import truth_of
from posecal.data.coco import read_json
from posecal.errors import PosecalInputError
from posecal.io import write_json_atomic
from posecal.metrics.coco_ap import load_coco_gt
from posecal.outputs import check_output_file
from posecal.results_eval import ResultSet, gt_persons, load_results, match, result_boxes
from posecal.skeleton import COCO_KEYPOINTS

FORMAT = "posecal-results-calibrator/1"
INPUTS = ("raw keypoint score", "keypoint type", "person size")


def expected_oks(quality: np.ndarray, p_labelled: np.ndarray) -> np.ndarray:
    """Mean keypoint quality over the keypoints OKS counts, weighted by their chance of counting."""
    w = np.maximum(p_labelled, 1e-6)
    return (quality * w).sum(1) / w.sum(1)


@dataclass
class ResultsCalibrator:
    keypoint_maps: list[IsotonicMap]    # raw score -> true OPKS
    labelled_maps: list[IsotonicMap]    # raw score -> P(labelled)
    occluded_share: np.ndarray          # (K,) occluded among labelled keypoints of each type
    pose_map: IsotonicMap               # expected_oks -> true OKS
    radii: ConformalRadii
    meta: dict

    def outputs(self, res: ResultSet) -> dict[str, np.ndarray]:
        raw = res.confidence
        kq = np.stack([m(raw[:, k]) for k, m in enumerate(self.keypoint_maps)], 1)
        p_lab = np.stack([m(raw[:, k]) for k, m in enumerate(self.labelled_maps)], 1)
        probs = np.stack([1 - p_lab, p_lab * self.occluded_share, p_lab * (1 - self.occluded_share)], -1)
        return {"keypoint_quality": kq, "pose_quality": self.pose_map(expected_oks(kq, p_lab)),
                "visibility": np.where(p_lab >= 0.5, 2, 0), "visibility_probs": probs,
                "keypoint_radius": self.radii(kq, result_boxes(res))}

    def apply(self, res: ResultSet) -> list[dict]:
        """The entries with the trust fields added and score = pose_quality; everything else kept."""
        o = self.outputs(res)
        r4 = lambda a: np.round(a, 4).tolist()  # noqa: E731
        return [e | {"score": round(float(o["pose_quality"][i]), 4), "pose_quality": round(float(o["pose_quality"][i]), 4),
                     "keypoint_quality": r4(o["keypoint_quality"][i]), "visibility": o["visibility"][i].tolist(),
                     "visibility_probs": r4(o["visibility_probs"][i]),
                     "keypoint_radius": np.round(o["keypoint_radius"][i], 2).tolist()}
                for i, e in enumerate(res.entries)]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "meta": self.meta, "keypoint_maps": [m.to_dict() for m in self.keypoint_maps],
                "labelled_maps": [m.to_dict() for m in self.labelled_maps],
                "occluded_share": self.occluded_share.tolist(), "pose_map": self.pose_map.to_dict(),
                "radii": self.radii.to_dict()}

    @classmethod
    def from_dict(cls, d, source: str = "calibrator") -> "ResultsCalibrator":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise PosecalInputError(f"{source}: not a posecal calibrator (written by `posecal calibrate fit`)")
        try:
            return cls([IsotonicMap.from_dict(m) for m in d["keypoint_maps"]],
                       [IsotonicMap.from_dict(m) for m in d["labelled_maps"]],
                       np.asarray(d["occluded_share"], np.float64), IsotonicMap.from_dict(d["pose_map"]),
                       ConformalRadii.from_dict(d["radii"]), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise PosecalInputError(f"{source}: calibrator is damaged ({e})") from None


def fit_results_calibrator(res: ResultSet, gt, target: float = 0.9) -> ResultsCalibrator:
    """Fit on the results' entries that match a GT person (pycocotools COCO `gt`)."""
    idx, g, area = match(res, gt_persons(gt))
    if len(idx) < 10:
        raise PosecalInputError(f"only {len(idx)} results match a labelled GT person; calibration needs >= 10")
    raw, xy = res.confidence[idx], res.keypoints[idx]
    ks, lab, gt_oks = truth_of(xy, g, area)
    k_types = raw.shape[1]
    kmaps = [fit_isotonic(raw[lab[:, k], k], ks[lab[:, k], k]) for k in range(k_types)]
    lmaps = [fit_isotonic(raw[:, k], lab[:, k].astype(float)) for k in range(k_types)]
    occl = np.array([(g[lab[:, k], k, 2] == 1).mean() if lab[:, k].any() else 0.0 for k in range(k_types)])
    kq = np.stack([m(raw[:, k]) for k, m in enumerate(kmaps)], 1)
    p_lab = np.stack([m(raw[:, k]) for k, m in enumerate(lmaps)], 1)
    has = np.isfinite(gt_oks)
    pose_map = fit_isotonic(expected_oks(kq, p_lab)[has], gt_oks[has])
    sub = ResultSet([res.entries[i] for i in idx], res.image_id[idx], xy, raw, res.score[idx], None, None, None,
                    None, None)
    err = np.linalg.norm(xy - g[..., :2], axis=-1) / person_scale(result_boxes(sub))[:, None]
    radii = fit_radii(kq, err, lab, target)
    meta = {"keypoints": list(COCO_KEYPOINTS[:k_types]), "fit_persons": int(len(idx)),
            "fit_labelled_keypoints": int(lab.sum()), "inputs": list(INPUTS), "radius_target": target}
    return ResultsCalibrator(kmaps, lmaps, occl, pose_map, radii, meta)


def calibrate_fit(results, annotations, out) -> ResultsCalibrator:
    check_output_file(out, "--out")
    res = load_results(results)
    read_json(annotations)
    cal = fit_results_calibrator(res, load_coco_gt(annotations))
    cal.meta |= {"results": str(results), "annotations": str(annotations)}
    write_json_atomic(cal.to_dict(), out)
    return cal


def calibrate_apply(calibrator, results, out) -> int:
    check_output_file(out, "--out")
    cal = ResultsCalibrator.from_dict(read_json(calibrator), str(calibrator))
    res = load_results(results, k=len(cal.keypoint_maps))
    write_json_atomic(cal.apply(res), out, indent=None)
    return len(res.entries)
