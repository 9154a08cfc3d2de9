"""The trust model judged, and calibrated, under the conditions users run posecal in.

A *condition* is a set of labelled persons and how they are run: val as is, val without the flip test, val cut
by the frame, val with detector-like boxes, LSPET persons the trust model never trained on
(posecal.data.conditions builds the sets). `run_condition` runs a model over one and keeps its raw trust outputs;
`condition_figures` turns calibrated outputs into the figures that say whether the trust can be acted on there;
`fit_over_conditions` fits one calibration on a mixture of conditions and `cross_fit_over_conditions` gives each
person outputs from maps fitted without its photograph (honest per-condition figures); `add_conditional` adds the
conditional quality map to a calibration. How the conditions are judged beyond that (each ECE against its floor,
per subgroup a user can see at run time; a held-out way of cutting) is the bench's: bench/lab/condition_judging.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from posecal.calibration.conditional import edges_touched, fit_conditional_quality
from posecal.calibration.conformal import fit_radii, relative_errors
from posecal.calibration.quality import QualityCalibration, fit_quality_calibration, occluded_rule, truth_of
from posecal.calibration.in_frame import fit_in_frame, in_frame_truth
from posecal.data.coco import PersonRecord, load_coco_persons
from posecal.data.conditions import cut_by_frame, jittered_boxes
from posecal.data.images import image_size
from posecal.errors import PosecalInputError
from posecal.evaluation.calibrate_model import photo_groups
from posecal.inference.estimator import predict_records
from posecal.metrics.calibration import auroc, ece, pearson
from posecal.metrics.oks import oks_either_side
from posecal.metrics.visibility import binary_report, classification_report


@dataclass
class ConditionRun:
    """One condition's persons and the model's raw (uncalibrated) trust outputs on them."""
    name: str
    flip: bool
    keypoints: np.ndarray          # (N, K, 2) image pixels
    boxes: np.ndarray              # (N, 4) the boxes the crops were made from
    gt: np.ndarray                 # (N, K, 3)
    area: np.ndarray               # (N,)
    groups: np.ndarray             # (N,) original photograph: persons of one photo stay in one fold
    visibility_known: np.ndarray   # (N,) bool: the labels tell visible / occluded / absent apart
    cut_off: np.ndarray            # (N, K) bool: labelled before a cut by the frame, beyond it now
    raw: dict                      # oks (N,), opks (N, K), visibility_probs (N, K, 3)
    image_wh: np.ndarray           # (N, 2) the picture's size (where its edges are)
    # (N,) bool, where known: another labelled person's box covers at least CROWDED_SHARE of this person's box in
    # its photograph (a crowd: what a user sees as overlapping detections)
    crowded: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.area)

    def args(self) -> tuple:
        """What calibration fits and cross_fit take, in their order."""
        return (self.raw["oks"], self.raw["opks"], self.raw["visibility_probs"], self.keypoints, self.boxes,
                self.gt, self.area)


def run_condition(name: str, model, input_wh, records: list[PersonRecord], flip: bool, groups: dict[int, int],
                  cut_off: dict[int, np.ndarray] | None = None, progress: bool = False,
                  batch_size: int = 32) -> ConditionRun:
    """Run `model` (a posecal model with a trust model) over the persons; groups: ann_id -> photo id."""
    pred = predict_records(model, records, input_wh, flip=flip, batch_size=batch_size, progress=progress)
    kept = pred.records
    k = pred.keypoints.shape[1]
    return ConditionRun(
        name=name, flip=flip, keypoints=pred.keypoints, boxes=np.stack([r.bbox for r in kept]).astype(np.float64),
        gt=np.stack([r.keypoints for r in kept]).astype(np.float64), area=np.array([r.area for r in kept]),
        groups=np.array([groups.get(r.ann_id, r.image_id) for r in kept]),
        visibility_known=np.array([r.visibility_known for r in kept]),
        cut_off=np.stack([(cut_off or {}).get(r.ann_id, np.zeros(k, bool)) for r in kept]),
        raw={"oks": pred.oks, "opks": pred.opks, "visibility_probs": pred.visibility_probs},
        image_wh=np.array([image_size(r.image_path) or (0, 0) for r in kept], np.float64))


def condition_figures(run: ConditionRun, calibrated: dict, occluded_over_visible: float) -> dict[str, float]:
    """The figures of one condition from calibrated outputs (oks, opks, visibility_probs, keypoint_radius):
    keypoint ECE, pose ECE and Pearson (also against the labels or their mirror, whichever fits), radius coverage
    (all labelled keypoints, and the lowest/highest keypoint type), and where the labels tell visibility apart:
    binary visibility F1, occluded F1, absent recall and precision, the share of labelled (so in-picture)
    keypoints called absent, and of cut-off ones called absent."""
    ks, labelled, gt_oks = truth_of(run.keypoints, run.gt, run.area)
    has = np.isfinite(gt_oks)
    out = {"persons": float(len(run)),
           "keypoint_ece": ece(calibrated["opks"][labelled], ks[labelled]),
           "pose_ece": ece(np.clip(calibrated["oks"][has], 0, 1), gt_oks[has]),
           "pose_pearson": pearson(calibrated["oks"][has], gt_oks[has])}
    # against the labels or their left-right mirror, whichever fits (metrics.oks.oks_either_side): a bound that
    # tells crowd labels given from the viewer's side (LSPET's) apart from the pose's own swaps
    sides = oks_either_side(run.keypoints, run.gt[..., :2], run.gt[..., 2], run.area)[has]
    out |= {"pose_ece_either_side": ece(np.clip(calibrated["oks"][has], 0, 1), sides),
            "pose_pearson_either_side": pearson(calibrated["oks"][has], sides)}
    err = np.linalg.norm(run.keypoints - run.gt[..., :2], axis=-1)
    inside = err <= calibrated["keypoint_radius"]
    per_type = [inside[labelled[:, k], k].mean() for k in range(labelled.shape[1]) if labelled[:, k].any()]
    out |= {"radius_coverage": float(inside[labelled].mean()), "radius_coverage_min": float(min(per_type)),
            "radius_coverage_max": float(max(per_type))}
    known = run.visibility_known
    if known.any():
        in_frame = calibrated.get("in_frame")
        cls = occluded_rule(calibrated["visibility_probs"][known], occluded_over_visible, calibrated["opks"][known],
                            None if in_frame is None else in_frame[known])
        v = run.gt[known][..., 2].astype(int)
        rep = classification_report(v, cls, 3)
        absent = binary_report(v == 0, cls == 0)
        out |= {"binary_vis_f1": binary_report(v > 0, cls > 0)["f1"], "occluded_f1": rep["f1"][1],
                "absent_recall": absent["recall"], "absent_precision": absent["precision"],
                "labelled_called_absent": float((cls[v > 0] == 0).mean())}
        cut = run.cut_off[known]
        if cut.any():
            out["cut_off_called_absent"] = float((cls[cut] == 0).mean())
    if calibrated.get("in_frame") is not None:
        sure, inside = in_frame_truth(run.gt, run.cut_off)
        if inside[sure].any() and not inside[sure].all():
            p = calibrated["in_frame"][sure]
            out |= {"in_frame_ece": ece(p, inside[sure]), "in_frame_auroc": auroc(p, inside[sure])}
    return out


def shipped_outputs(run: ConditionRun, calibration: QualityCalibration) -> dict:
    """The calibrated outputs a model file's own calibration gives on a condition (with `in_frame` where the
    calibration has its map)."""
    out = calibration.apply(run.raw["oks"], run.raw["opks"], run.raw["visibility_probs"], run.boxes,
                            image_wh=run.image_wh, keypoints=run.keypoints)
    if calibration.in_frame is not None:
        out["in_frame"] = calibration.in_frame(out["visibility_probs"], run.keypoints, run.boxes, run.image_wh)
    return out


def _joined(runs: list[ConditionRun]) -> tuple[tuple, np.ndarray]:
    args = [np.concatenate([r.args()[i] for r in runs]) for i in range(7)]
    return tuple(args), np.concatenate([r.groups for r in runs])


def subset(run: ConditionRun, keep: np.ndarray) -> ConditionRun:
    """The persons of a condition where keep (N,) is True."""
    arrays = {k: getattr(run, k)[keep] for k in ("keypoints", "boxes", "gt", "area", "groups", "visibility_known",
                                                 "cut_off", "image_wh")}
    return ConditionRun(name=run.name, flip=run.flip, raw={k: v[keep] for k, v in run.raw.items()}, **arrays,
                        crowded=None if run.crowded is None else run.crowded[keep])


def fit_over_conditions(runs: list[ConditionRun], source: str = "", conditional: bool = False,
                        edge_radii: bool = True) -> QualityCalibration:
    """One calibration fitted on every person of every condition given (the mixture users meet), with the
    in-frame map fitted on the calibrated visibility where cut persons are among them; with conditional, also
    the conditional quality map (posecal.calibration.conditional) on the isotonic maps' outputs; with edge_radii,
    radii apart for persons at the picture's edge (add_edge_radii), where there are enough of them."""
    args, _ = _joined(runs)
    cal = fit_quality_calibration(*args, source=source)
    cal.fit_info["conditions"] = {r.name: len(r) for r in runs}
    out = cal.apply(args[0], args[1], args[2], args[4])
    image_wh = np.concatenate([r.image_wh for r in runs])
    cal.in_frame = fit_in_frame(out["visibility_probs"], args[3], args[4], image_wh, args[5],
                                np.concatenate([r.cut_off for r in runs]))
    if edge_radii:
        add_edge_radii(cal, runs)
    if conditional:
        add_conditional(cal, runs)
    return cal


# persons of each kind (box at the picture's edge, box inside it) a radius table of its own needs
MIN_EDGE_PERSONS = 200


def add_edge_radii(cal: QualityCalibration, runs: list[ConditionRun]) -> QualityCalibration:
    """cal with its conformal radii fitted apart for persons whose box touches the picture's edge (`edge_radii`)
    and the others (`radii`), on the outputs of cal's isotonic keypoint maps (what the radii are applied to), at
    cal's coverage target; unchanged when either kind has fewer than MIN_EDGE_PERSONS persons among the runs."""
    args, _ = _joined(runs)
    at_edge = edges_touched(args[4], np.concatenate([r.image_wh for r in runs])).any(1)
    if min(at_edge.sum(), (~at_edge).sum()) < MIN_EDGE_PERSONS:
        return cal
    out = replace(cal, conditional=None, edge_radii=None).apply(args[0], args[1], args[2], args[4])
    _, labelled, _ = truth_of(args[3], args[5], args[6])
    err = relative_errors(args[3], args[5], args[4])
    target = cal.radii.target
    cal.radii = fit_radii(out["opks"][~at_edge], err[~at_edge], labelled[~at_edge], target)
    cal.edge_radii = fit_radii(out["opks"][at_edge], err[at_edge], labelled[at_edge], target)
    cal.fit_info["edge_radii"] = {"persons_at_edge": int(at_edge.sum()), "persons_inside": int((~at_edge).sum())}
    return cal


def add_conditional(cal: QualityCalibration, runs: list[ConditionRun]) -> QualityCalibration:
    """cal with its conditional quality map (posecal.calibration.conditional) fitted on the runs' persons, on the
    outputs of cal's own isotonic maps (the ones it is applied after): the only part of cal that changes, so a
    shipped calibration gains it without its other maps (in_frame, video, person) being refitted."""
    args, _ = _joined(runs)
    image_wh = np.concatenate([r.image_wh for r in runs])
    if not edges_touched(args[4], image_wh).any():
        raise ValueError("the conditional quality map needs persons whose box touches the picture's edge (a "
                         "condition cut by the frame) among the runs: it would learn nothing of them otherwise")
    out = replace(cal, conditional=None).apply(args[0], args[1], args[2], args[4])
    ks, labelled, gt_oks = truth_of(args[3], args[5], args[6])
    cal.conditional = fit_conditional_quality(out["oks"], out["opks"], out["visibility_probs"], args[3], args[4],
                                              image_wh, ks, labelled, gt_oks)
    cal.fit_info["conditional"] = {"conditions": {r.name: len(r) for r in runs},
                                   "maps": "logistic maps of keypoint and pose quality on run-time covariates "
                                           "(where the box and keypoints lie in the picture), after the "
                                           "isotonic maps"}
    return cal


def cross_fit_over_conditions(runs: list[ConditionRun], folds: int = 5, seed: int = 0, conditional: bool = False,
                              judged: list[ConditionRun] = (), edge_radii: bool = True
                              ) -> tuple[list[dict], list[float]]:
    """Per condition, calibrated outputs from a calibration fitted on the mixture without the person's
    photograph (every condition of one photo shares its fold: folds drawn over photographs, seeded); and per
    condition the visibility rule's ratio to use with them (the median of the folds' ratios). judged: further
    conditions of the same photographs that are not fitted on (a cut drawn another way): each person's outputs
    come from the fold's calibration that did not see its photograph; they follow runs' in the returned lists.
    conditional, edge_radii: fit_over_conditions' flags."""
    groups = np.concatenate([r.groups for r in runs])
    uniq = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(uniq)) % folds

    def fold_of(run: ConditionRun) -> np.ndarray:
        at = np.clip(np.searchsorted(uniq, run.groups), 0, len(uniq) - 1)
        return np.where(uniq[at] == run.groups, order[at], -1)     # -1: a photograph the mixture lacks

    every = list(runs) + list(judged)
    parts: list[dict] = [{} for _ in every]
    ratios = []
    for f in range(folds):
        cal = fit_over_conditions([subset(r, fold_of(r) != f) for r in runs], conditional=conditional,
                                  edge_radii=edge_radii)
        ratios.append(cal.occluded_over_visible)
        for part, r in zip(parts, every):
            test = fold_of(r) == f
            for key, val in shipped_outputs(subset(r, test), cal).items():
                part.setdefault(key, np.full((len(r),) + val.shape[1:], np.nan))[test] = val
    for part, r in zip(parts, judged):
        if (fold_of(r) < 0).any():
            raise ValueError(f"{r.name}: persons of photographs the fitted conditions do not have")
    return parts, [float(np.median(ratios))] * len(every)


MIXTURE = ("val", "val_noflip", "val_cut", "val_jitter")


def mixture_plan(records: list[PersonRecord], cut_dir) -> list[tuple[str, list[PersonRecord], bool, dict | None]]:
    """The conditions calibration is fitted over, made from one labelled set: (name, persons, flip, cut_off by
    ann_id). The cut pictures are written to cut_dir."""
    cut = cut_by_frame(records, cut_dir)
    return [("val", records, True, None), ("val_noflip", records, False, None),
            ("val_cut", [c.record for c in cut], True, {c.record.ann_id: c.cut_off for c in cut}),
            ("val_jitter", jittered_boxes(records), True, None)]


def calibrate_over_conditions(model, cfg, annotations, images, cut_dir, progress: bool = True,
                              conditional: bool = False) -> tuple[QualityCalibration, dict]:
    """`posecal pack --calibrate-on --conditions`: the calibration fitted on the labelled set under every
    condition of MIXTURE, and per condition the cross-fitted figures (condition_figures); conditional: with the
    conditional quality map (fit_over_conditions)."""
    records = load_coco_persons(annotations, images)
    if not records:
        raise PosecalInputError(f"{annotations}: no person with labelled keypoints to calibrate on")
    groups = dict(zip([r.ann_id for r in records], photo_groups(annotations, [r.ann_id for r in records]).tolist()))
    runs = [run_condition(name, model, cfg.input_wh, recs, flip, groups, cut_off, progress=progress)
            for name, recs, flip, cut_off in mixture_plan(records, cut_dir)]
    if min(len(r) for r in runs) < 10:
        raise PosecalInputError(f"{annotations}: too few readable persons to calibrate over conditions")
    outputs, ratios = cross_fit_over_conditions(runs, conditional=conditional)
    report = {r.name: condition_figures(r, o, q) for r, o, q in zip(runs, outputs, ratios)}
    cal = fit_over_conditions(runs, source=str(annotations), conditional=conditional)
    cal.fit_info["cross_fitted_conditions"] = {k: {m: round(float(v), 4) for m, v in f.items()}
                                               for k, f in report.items()}
    return cal, report
