"""Calibration of posecal's own quality heads: what `posecal pack --calibrate-on` fits and every inference path
applies through `apply`.

The heads are over-confident on people the pose network did not memorise, so maps are fitted on the val split:
per keypoint type an isotonic map of the OPKS head to the true OPKS, one isotonic map of the OKS head, per type a
visibility temperature, and conformal radii on the calibrated keypoint quality (`edge_radii` for boxes touching the
picture's edge); optionally a conditional map after the isotonic ones (calibration/conditional.py, which needs each
picture's size at `apply`). Stored as JSON-able numbers in the model file's meta and ONNX metadata.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.calibration.conditional import ConditionalQuality, edges_touched
from posecal.calibration.conformal import ConformalRadii, fit_radii, relative_errors
from posecal.calibration.in_frame import InFrameMap
from posecal.calibration.video import VideoCalibration
from posecal.calibration.maps import IsotonicMap, apply_temperature, fit_isotonic, fit_temperature
from posecal.errors import PosecalInputError
from posecal.metrics.oks import opks as true_opks
from posecal.metrics.visibility import classification_report

FORMAT = "posecal-quality-calibration/1"
# `visibility` says occluded only when p(occluded) >= this x p(visible) (posecal.inference.scoring). A calibration
# fits its own ratio (choose_occluded_ratio); this one (lite0's, once `fast`, chosen on val) is for a calibration file
# that carries none, and where there are no visibility probabilities to fit it on.
DEFAULT_OCCLUDED_OVER_VISIBLE = 2.0
OCCLUDED_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


@dataclass
class QualityCalibration:
    keypoint_maps: list[IsotonicMap]      # per keypoint type: raw OPKS -> true OPKS
    pose_map: IsotonicMap                 # raw OKS head -> true OKS
    visibility_temperature: np.ndarray    # (K,)
    radii: ConformalRadii
    fit_info: dict
    # the visibility rule's ratio, chosen on the fitting set (choose_occluded_ratio)
    occluded_over_visible: float = DEFAULT_OCCLUDED_OVER_VISIBLE
    # p(keypoint inside the picture) (calibration/in_frame.py), fitted where cut persons were among the data
    in_frame: InFrameMap | None = None
    # what `posecal track` reports, per pose source (calibration/video.py), fitted on tracked videos with truth
    video: VideoCalibration | None = None
    # keypoint and pose quality given where the box and keypoints lie in the picture (calibration/conditional.py),
    # applied after the isotonic maps; fitted where cut persons were among the data
    conditional: ConditionalQuality | None = None
    # radii for persons whose box touches the picture's edge (and `radii` then for the others), fitted where cut
    # persons were among the data. Why apart: such a person is mostly cut by the frame, their box is smaller than
    # they are, so their keypoints' errors relative to it are larger (one table for all covered them well short of
    # its promise and whole persons beyond it: CHANGELOG). Applied where `apply` is given the picture sizes.
    edge_radii: ConformalRadii | None = None

    def apply(self, oks, opks, visibility_probs, boxes, image_wh=None, keypoints=None) -> dict[str, np.ndarray]:
        """Raw head outputs of N persons (boxes (N, 4) in image pixels) -> calibrated `oks` (N,), `opks`
        (N, K), `visibility_probs` (N, K, C) and `keypoint_radius` (N, K) in image pixels.

        With a conditional map, the qualities also depend on each person's picture size image_wh (N, 2: width,
        height) and predicted keypoints (N, K, 2, image pixels), which are then required: without them the map
        cannot tell a person cut by the frame from a whole one, and a silent guess would be wrong for one of
        them. The radii stay on the isotonic keypoint quality they were fitted on; with `edge_radii` and image_wh,
        a person whose box touches the picture's edge gets those (without image_wh, `radii`)."""
        opks = np.asarray(opks, np.float64)
        cal_opks = np.stack([m(opks[:, k]) for k, m in enumerate(self.keypoint_maps)], 1)
        radius = self.radii(cal_opks, boxes)
        if self.edge_radii is not None and image_wh is not None and len(cal_opks):
            at_edge = edges_touched(boxes, image_wh).any(1)
            radius = np.where(at_edge[:, None], self.edge_radii(cal_opks, boxes), radius)
        out = {"oks": self.pose_map(oks), "opks": cal_opks,
               "visibility_probs": apply_temperature(visibility_probs, self.visibility_temperature),
               "keypoint_radius": radius}
        if self.conditional is not None:
            if image_wh is None or keypoints is None:
                raise TypeError("this calibration has a conditional quality map: apply() needs image_wh "
                                        "(each person's picture width, height) and keypoints (image pixels)")
            n = len(cal_opks)
            wh = np.asarray(image_wh, np.float64).reshape(-1, 2)
            xy = np.asarray(keypoints, np.float64)
            if len(wh) != n or xy.shape != cal_opks.shape + (2,):
                raise ValueError(f"apply() got {len(wh)} image sizes and keypoints of shape {xy.shape} "
                                        f"for {n} persons of {cal_opks.shape[1]} keypoints")
            out["oks"], out["opks"] = self.conditional(out["oks"], cal_opks, out["visibility_probs"], xy,
                                                       boxes, wh)
        return out

    def to_dict(self) -> dict:
        return {"format": FORMAT, "keypoint_maps": [m.to_dict() for m in self.keypoint_maps],
                "pose_map": self.pose_map.to_dict(),
                "visibility_temperature": [round(float(t), 5) for t in self.visibility_temperature],
                "radii": self.radii.to_dict(), "fit_info": self.fit_info,
                "occluded_over_visible": self.occluded_over_visible} \
            | ({} if self.in_frame is None else {"in_frame": self.in_frame.to_dict()}) \
            | ({} if self.video is None else {"video": self.video.to_dict()}) \
            | ({} if self.conditional is None else {"conditional": self.conditional.to_dict()}) \
            | ({} if self.edge_radii is None else {"edge_radii": self.edge_radii.to_dict()})

    @classmethod
    def from_dict(cls, d: dict) -> "QualityCalibration":
        """Raises ValueError (with what is wrong) on anything that is not a calibration this code wrote."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} calibration")
        try:
            cal = cls([IsotonicMap.from_dict(m) for m in d["keypoint_maps"]], IsotonicMap.from_dict(d["pose_map"]),
                      np.asarray(d["visibility_temperature"], np.float64), ConformalRadii.from_dict(d["radii"]),
                      dict(d.get("fit_info", {})),
                      float(d.get("occluded_over_visible", DEFAULT_OCCLUDED_OVER_VISIBLE)),
                      None if d.get("in_frame") is None else InFrameMap.from_dict(d["in_frame"]),
                      None if d.get("video") is None else VideoCalibration.from_dict(d["video"]),
                      None if d.get("conditional") is None else ConditionalQuality.from_dict(d["conditional"]),
                      None if d.get("edge_radii") is None else ConformalRadii.from_dict(d["edge_radii"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"calibration is missing or has a bad field ({e})") from None
        # one map, temperature and radius row per keypoint type: a cut or hand-edited file is refused here, not
        # applied with keypoint 12 reading keypoint 11's map (or failing deep in numpy)
        k = len(cal.keypoint_maps)
        rows = [("visibility_temperature", cal.visibility_temperature.size), ("radii", cal.radii.radii.shape[0])] \
            + ([] if cal.edge_radii is None else [("edge_radii", cal.edge_radii.radii.shape[0])])
        for part, n in rows:
            if n != k:
                raise ValueError(f"{part} has {n} entries, keypoint_maps {k}: one per keypoint type is needed")
        if cal.visibility_temperature.ndim != 1 or not np.all(cal.visibility_temperature > 0):
            raise ValueError("visibility_temperature must be K numbers > 0")
        if not 0 < cal.occluded_over_visible < np.inf:
            raise ValueError(f"occluded_over_visible must be a number > 0, got {cal.occluded_over_visible}")
        return cal


def truth_of(keypoints, gt, area) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True OPKS (N, K), labelled mask (N, K) and true OKS (N,; NaN without labelled keypoints)."""
    ks = true_opks(keypoints, gt[..., :2], area)
    labelled = gt[..., 2] > 0
    n = labelled.sum(1)
    with np.errstate(invalid="ignore"):
        oks = np.where(n > 0, (ks * labelled).sum(1) / np.maximum(n, 1), np.nan)
    return ks, labelled, oks


def fit_quality_calibration(oks, opks, visibility_probs, keypoints, boxes, gt, area,
                            target: float = 0.9, source: str = "") -> QualityCalibration:
    """Fit every map on N labelled persons: raw head outputs, predicted keypoints (N, K, 2) in image pixels,
    their boxes (N, 4), GT keypoints (N, K, 3) and GT areas (N,)."""
    gt = np.asarray(gt, np.float64)
    ks, labelled, gt_oks = truth_of(keypoints, gt, area)
    opks = np.asarray(opks, np.float64)
    k_types = opks.shape[1]
    maps = [fit_isotonic(opks[labelled[:, k], k], ks[labelled[:, k], k]) for k in range(k_types)]
    has = np.isfinite(gt_oks)
    pose_map = fit_isotonic(np.asarray(oks)[has], gt_oks[has])
    v = gt[..., 2].astype(int)
    temps = np.array([fit_temperature(visibility_probs[:, k], v[:, k]) for k in range(k_types)])
    cal_opks = np.stack([m(opks[:, k]) for k, m in enumerate(maps)], 1)
    radii = fit_radii(cal_opks, relative_errors(keypoints, gt, boxes), labelled, target)
    ratio = choose_occluded_ratio(apply_temperature(visibility_probs, temps), v)
    info = {"persons": int(len(gt)), "labelled_keypoints": int(labelled.sum()), "source": source,
            "maps": "isotonic per keypoint type (keypoint quality), isotonic (pose quality), "
                    "temperature per keypoint type (visibility), split-conformal radii on 4 quality bins, "
                    "occluded-over-visible ratio of the visibility rule (best occluded F1 + ternary weighted F1)"}
    return QualityCalibration(maps, pose_map, temps, radii, info, ratio)


# a keypoint is called not labelled (absent) only when that is more likely than not: p(absent) above this
ABSENT_ABOVE = 0.5
# ... and only when the model is not sure where it lies: a keypoint whose calibrated keypoint quality (the
# expected OPKS of a keypoint that is there) reaches this is in view by the model's own word (occluded_rule)
PLACED_AT = 0.75
# ... where the model also says it lies inside the picture: in_frame (a calibrated probability) at least this
IN_PICTURE_AT = 0.5


def occluded_rule(probs: np.ndarray, ratio: float, keypoint_quality=None, in_frame=None,
                  placed_at: float = PLACED_AT) -> np.ndarray:
    """(..., K, 3) probabilities -> classes by posecal's visibility rule: not labelled when p(not labelled) >
    ABSENT_ABOVE, unless the keypoint quality (..., K; None: not known) reaches placed_at where p(inside the
    picture) (in_frame, (..., K); None: not known) is at least IN_PICTURE_AT; else occluded when p(occluded) >=
    ratio x p(visible), else visible.

    Why more likely than not, not the most likely of three: "absent" answers "is the keypoint there?", whose
    answer is p(not labelled) against p(occluded) + p(visible). A plurality of 0.4 against 0.35 and 0.25 would
    call absent a keypoint 60 % likely there: athletes' limbs in plain view in unusual poses, whose probability
    is split between occluded and visible. 0.5 is the labelled-or-not decision of calibrated probabilities, not a
    tuned number (how it measured: CHANGELOG.md).

    Why the keypoint quality: absent means outside the picture or not labelled, not "unusual". The trust model
    learned "not labelled" from COCO, whose annotators leave out joints they cannot place; an athlete's limb in
    an unusual pose looks to it like such a joint, while its keypoint quality says where it lies. A keypoint the
    model places at an expected OPKS of PLACED_AT or more is one it sees, and is called present, unless the model
    says it lies outside the picture (a cut person's ankle below the frame is placed as well as their knee)."""
    probs = np.asarray(probs)
    present = called_present(probs, keypoint_quality, in_frame, placed_at)
    return np.where(~present, 0, np.where(probs[..., 1] >= ratio * probs[..., 2], 1, 2))


def called_present(probs, keypoint_quality=None, in_frame=None, placed_at: float = PLACED_AT) -> np.ndarray:
    """(..., K) bool: the keypoints posecal's visibility rule calls there (occluded or visible): occluded_rule's
    first decision, and all that a reader asking "is it there?" needs (the reported-pose map's shared keypoints
    and keypoints outside the box)."""
    probs = np.asarray(probs)
    absent = probs[..., 0] > ABSENT_ABOVE
    if keypoint_quality is not None:
        placed = np.asarray(keypoint_quality) >= placed_at
        if in_frame is not None:
            placed &= np.asarray(in_frame) >= IN_PICTURE_AT
        absent &= ~placed
    return ~absent


def choose_occluded_ratio(probs: np.ndarray, truth: np.ndarray) -> float:
    """The ratio of OCCLUDED_RATIOS whose rule gives the highest occluded F1 + ternary weighted F1 on labelled
    data (probs (N, K, 3), truth (N, K) in 0/1/2). Why both: occluded F1 alone favours calling many keypoints
    occluded (COCO's v = 1 is rare and noisy), ternary weighted F1 alone never calls any."""
    probs = np.asarray(probs)
    if probs.shape[-1] != 3:
        return DEFAULT_OCCLUDED_OVER_VISIBLE

    def merit(ratio: float) -> float:
        rep = classification_report(truth, occluded_rule(probs, ratio), 3)
        return rep["f1"][1] + rep["f1_weighted"]
    return max(OCCLUDED_RATIOS, key=merit)


def cross_fit(oks, opks, visibility_probs, keypoints, boxes, gt, area, folds: int = 5, groups=None,
              target: float = 0.9, seed: int = 0) -> dict[str, np.ndarray]:
    """Honest calibrated outputs on the fitting set itself: each person's outputs come from maps fitted on
    the other folds. groups (N,): persons sharing a group (e.g. the original photograph) stay in one fold."""
    n = len(oks)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    uniq = np.unique(groups)
    fold_of_group = np.random.default_rng(seed).permutation(len(uniq)) % folds
    fold = fold_of_group[np.searchsorted(uniq, groups)]
    arrays = [np.asarray(a) for a in (oks, opks, visibility_probs, keypoints, boxes, gt, area)]
    out: dict[str, np.ndarray] = {}
    for f in range(folds):
        test, train = fold == f, fold != f
        cal = fit_quality_calibration(*(a[train] for a in arrays), target=target)
        res = cal.apply(arrays[0][test], arrays[1][test], arrays[2][test], arrays[4][test])
        for key, val in res.items():
            out.setdefault(key, np.zeros((n,) + val.shape[1:]))[test] = val
    return out


META_KEY = "calibration"


def calibration_from_meta(meta: dict | None, source: str) -> QualityCalibration | None:
    """The calibration stored with a model (model file meta or ONNX metadata), None when it has none; a
    damaged one is one error line naming the model."""
    if not meta or META_KEY not in meta:
        return None
    try:
        return QualityCalibration.from_dict(meta[META_KEY])
    except ValueError as e:
        raise PosecalInputError(f"{source}: stored calibration is unreadable ({e})") from None
