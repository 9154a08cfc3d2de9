"""The trust model's calibration judged under conditions beyond what `posecal pack` needs (posecal/evaluation/
conditions.py fits and cross-fits it): each keypoint and pose ECE against its floor, per condition and per subgroup
a user can see at run time (`calibration_against_floors`), and a second way of cutting by the frame that nothing is fitted on (`held_out_cut_plan`).
Used by bench/trust_conditions.py, tools/fit_conditional_calibration.py and the lab's benches."""
from __future__ import annotations

import numpy as np

from posecal.calibration.conditional import edges_touched
from posecal.calibration.in_frame import in_frame_features
from posecal.calibration.quality import occluded_rule, truth_of
from posecal.data.coco import PersonRecord
from posecal.data.conditions import cut_by_frame
from posecal.evaluation.conditions import ConditionRun
from posecal.metrics.calibration import ece, ece_floor, ece_interval
from posecal.skeleton import COCO_KEYPOINTS


def ece_against_floor(confidence, truth, groups, draws: int = 100, seed: int = 0) -> dict:
    """An ECE with what it can be told apart from: `ece`, its `floor` and `floor_p90` (metrics.ece_floor: what a
    perfectly calibrated predictor shows on this many samples), `interval` (95 %, metrics.ece_interval: bootstrap
    over groups, e.g. photographs) and `n`."""
    c, t, g = (np.asarray(a).ravel() for a in (confidence, truth, groups))
    floor, p90 = ece_floor(c, t, draws=draws, seed=seed)
    return {"n": int(len(c)), "ece": ece(c, t), "floor": floor, "floor_p90": p90,
            "interval": list(ece_interval(c, t, g, draws=2 * draws, seed=seed))}


# keypoint's distance to the picture's nearest edge over the person's scale (in_frame's feature): bin edges
EDGE_DISTANCE_BINS = (0.1, 0.25, 0.5)
VISIBILITY_NAMES = ("absent", "occluded", "visible")


def subgroup_names(k: int = len(COCO_KEYPOINTS)) -> list[str]:
    """The names `subgroups` gives, in its order."""
    cuts = EDGE_DISTANCE_BINS
    return ([f"type={COCO_KEYPOINTS[j] if k == len(COCO_KEYPOINTS) else j}" for j in range(k)]
            + [f"edge<{cuts[0]}"] + [f"edge {a}-{b}" for a, b in zip(cuts, cuts[1:])] + [f"edge>={cuts[-1]}"]
            + [f"called {name}" for name in VISIBILITY_NAMES] + ["box at edge", "box inside"]
            + ["box crowded", "box alone"])


def subgroups(run: ConditionRun, calibrated: dict, occluded_over_visible: float) -> dict[str, np.ndarray]:
    """What a user can see at run time, as (N, K) keypoint masks by name (subgroup_names): the keypoint type,
    its distance to the picture's nearest edge (bins at EDGE_DISTANCE_BINS of the person's scale, in_frame's
    feature; keypoints outside the picture are in the first), the predicted visibility class, and whether the
    person's box touches the picture's edge, and, where the run knows it, whether another person's box overlaps
    it (crowded)."""
    n, k = run.keypoints.shape[:2]
    edge = in_frame_features(calibrated["visibility_probs"], run.keypoints, run.boxes, run.image_wh)[..., 1]
    bins = np.digitize(edge, EDGE_DISTANCE_BINS)
    cls = occluded_rule(calibrated["visibility_probs"], occluded_over_visible)
    touch = edges_touched(run.boxes, run.image_wh).any(1)[:, None]
    masks = ([np.arange(k)[None, :] == j for j in range(k)] + [bins == i for i in range(len(EDGE_DISTANCE_BINS) + 1)]
             + [cls == i for i in range(len(VISIBILITY_NAMES))] + [touch, ~touch])
    if run.crowded is not None:
        masks += [run.crowded[:, None], ~run.crowded[:, None]]
    return {name: np.broadcast_to(m, (n, k)) for name, m in zip(subgroup_names(k), masks)}


def calibration_against_floors(run: ConditionRun, calibrated: dict, occluded_over_visible: float,
                               min_keypoints: int = 300, draws: int = 100) -> dict:
    """Keypoint and pose ECE of a condition against their floors (ece_against_floor, intervals over the
    condition's photographs), and the same per subgroup (subgroups; pose ECE for the box subgroups); and over
    the subgroups with at least min_keypoints labelled keypoints, how many have an ECE above their floor's 90th
    percentile (a calibrated predictor: about 1 in 10) and above twice it."""
    ks, labelled, gt_oks = truth_of(run.keypoints, run.gt, run.area)
    has = np.isfinite(gt_oks)
    kp_groups = np.broadcast_to(run.groups[:, None], labelled.shape)
    opks, oks = calibrated["opks"], np.clip(calibrated["oks"], 0, 1)
    out = {"keypoint": ece_against_floor(opks[labelled], ks[labelled], kp_groups[labelled], draws),
           "pose": ece_against_floor(oks[has], gt_oks[has], run.groups[has], draws), "subgroups": {}}
    for name, mask in subgroups(run, calibrated, occluded_over_visible).items():
        m = mask & labelled
        if not m.any():
            continue
        fig = {"keypoint": ece_against_floor(opks[m], ks[m], kp_groups[m], draws)}
        if name.startswith("box "):
            p = mask[:, 0] & has
            if p.any():
                fig["pose"] = ece_against_floor(oks[p], gt_oks[p], run.groups[p], draws)
        out["subgroups"][name] = fig
    big = [f["keypoint"] for f in out["subgroups"].values() if f["keypoint"]["n"] >= min_keypoints]
    out["subgroup_counts"] = {"subgroups": len(big), "min_keypoints": min_keypoints,
                              "above_p90": sum(f["ece"] > f["floor_p90"] for f in big),
                              "above_2x_p90": sum(f["ece"] > 2 * f["floor_p90"] for f in big)}
    return out


# A second cut by the frame, drawn another way than val_cut's (another seed, every side alike, 20-80 % of the
# extent kept): never fitted on, so it tells whether a calibration fitted on one way of cutting carries to another
# (judged with the cross-fitted maps that did not see the person's photograph: cross_fit_over_conditions' judged).
HELD_OUT_CUTS = ("val_cut2",)
HELD_OUT_CUT = {"seed": 1, "keeps": (("top", 1.0), ("bottom", 1.0), ("left", 1.0), ("right", 1.0)),
                "keep_range": (0.20, 0.80)}


def held_out_cut_plan(records: list[PersonRecord], cut_dir) -> list[tuple[str, list[PersonRecord], bool, dict]]:
    """`val_cut2`: the persons cut as HELD_OUT_CUT draws (flip on), in mixture_plan's form; pictures to cut_dir
    (not val_cut's: file names do not tell the two draws apart)."""
    cut = cut_by_frame(records, cut_dir, **HELD_OUT_CUT)
    return [("val_cut2", [c.record for c in cut], True, {c.record.ann_id: c.cut_off for c in cut})]
