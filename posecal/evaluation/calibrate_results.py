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

With the images (`--images DIR`), posecal's own evidence at the estimator's keypoints joins the inputs
(posecal/evaluation/evidence.py: posecal's trust model rating the estimator's keypoints on its own look at the
person: its keypoint quality and visibility probabilities). Per keypoint type a logistic score combines them
with the raw score (weights of known sign held to it), and the same isotonic maps then calibrate that score
instead of the raw one: one calibrator, a longer feature list. The trust model also splits the labelled chance
into occluded and visible (instead of the type's occluded share), so `visibility` can say occluded. Without
evidence inputs the maps read the raw score directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecal.calibration.conformal import ConformalRadii, fit_radii, person_scale
from posecal.evaluation.evidence import EVIDENCE_INPUTS, Evidence, PosecalEvidence
from posecal.calibration.maps import IsotonicMap, LogisticScore, fit_isotonic, fit_logistic
from posecal.calibration.quality import truth_of
from posecal.data.coco import coco_image_ids, image_file, read_coco, read_json
from posecal.errors import PosecalInputError
from posecal.io import check_output_file, write_json_atomic
from posecal.metrics.coco_ap import load_coco_gt
from posecal.evaluation.results import ResultSet, gt_persons, load_results, match, result_boxes
from posecal.inference.scoring import keypoint_there, present_and_right, visibility_classes
from posecal.skeleton import COCO_KEYPOINTS

FORMAT = "posecal-results-calibrator/1"
BASE_INPUTS = ("raw keypoint score", "keypoint type", "person size")
EPS = 1e-4
# Evidence inputs of calibrators fitted before the trust model (lite0's heatmaps, once `fast`): refused.
FORMER_EVIDENCE_INPUTS = ("heatmap value", "distance", "visibility probs")


def expected_oks(quality: np.ndarray, p_labelled: np.ndarray) -> np.ndarray:
    """Mean keypoint quality over the keypoints OKS counts, weighted by their chance of counting."""
    w = np.maximum(p_labelled, 1e-6)
    return (quality * w).sum(1) / w.sum(1)


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def keypoint_features(raw, evidence: Evidence | None, inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K, F) features of each keypoint, and the signs their weights are held to (F,) for keypoint quality
    and for the labelled chance (+1 never lowers it, -1 never raises it, 0 free): logit of the raw score,
    then per evidence input in `inputs`: logit of the trust model's keypoint quality, log of its 3 visibility
    probabilities."""
    cols, q_signs, l_signs = [_logit(raw)], [1], [1]
    if "trust keypoint quality" in inputs:
        cols.append(_logit(evidence.keypoint_quality))
        q_signs.append(1)
        l_signs.append(0)
    if "trust visibility probs" in inputs:
        logp = np.log(np.clip(evidence.visibility_probs, EPS, 1.0))
        cols += [logp[..., c] for c in range(logp.shape[-1])]
        q_signs += [0] * logp.shape[-1]
        l_signs += [-1] + [0] * (logp.shape[-1] - 1)   # posecal's "not labelled" never raises it
    return np.stack(cols, -1), np.array(q_signs), np.array(l_signs)


def pose_features(expected: np.ndarray, evidence: Evidence) -> np.ndarray:
    """(N, 2): logits of the expected OKS the keypoints imply and of the trust model's own pose quality, which
    sees the whole person (a pose can hold together keypoint by keypoint and still be the wrong person)."""
    return np.stack([_logit(expected), _logit(evidence.pose_quality)], -1)


def occluded_fraction(evidence: Evidence) -> np.ndarray:
    """(N, K) the trust model's p(occluded) among the labelled classes: how the labelled chance splits."""
    v = evidence.visibility_probs
    return v[..., 1] / np.maximum(v[..., 1] + v[..., 2], 1e-9)


def per_type(fns, x) -> np.ndarray:
    """fns[k] applied to x[:, k] for every keypoint type k -> (N, K)."""
    return np.stack([fn(x[:, k]) for k, fn in enumerate(fns)], 1)


@dataclass
class ResultsCalibrator:
    keypoint_maps: list[IsotonicMap]    # raw score -> true OPKS
    labelled_maps: list[IsotonicMap]    # raw score -> P(labelled)
    occluded_share: np.ndarray          # (K,) occluded among labelled keypoints of each type
    pose_map: IsotonicMap               # expected_oks -> true OKS
    radii: ConformalRadii
    meta: dict
    keypoint_scores: list[LogisticScore] | None = None   # features -> score the keypoint maps read
    labelled_scores: list[LogisticScore] | None = None   # features -> score the labelled maps read
    pose_score: LogisticScore | None = None   # (expected OKS, the trust model's pose quality) -> what pose_map reads

    @property
    def evidence_inputs(self) -> tuple[str, ...]:
        """The posecal evidence this calibrator reads (empty: it needs no images)."""
        return tuple(i for i in self.meta.get("inputs", ()) if i in EVIDENCE_INPUTS)

    def calibrated(self, raw, evidence: Evidence | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(keypoint quality, chance of being labelled), both (N, K)."""
        if not self.evidence_inputs:
            return per_type(self.keypoint_maps, raw), per_type(self.labelled_maps, raw)
        if evidence is None:
            raise PosecalInputError("this calibrator uses posecal's image evidence; give the images")
        f = keypoint_features(raw, evidence, self.evidence_inputs)[0]
        return (per_type(self.keypoint_maps, per_type(self.keypoint_scores, f)),
                per_type(self.labelled_maps, per_type(self.labelled_scores, f)))

    def outputs(self, res: ResultSet, evidence: Evidence | None = None) -> dict[str, np.ndarray]:
        if res.confidence.shape[1] != len(self.keypoint_maps):
            raise PosecalInputError(f"the results have {res.confidence.shape[1]} keypoints per person, the calibrator "
                                    f"was fitted on {len(self.keypoint_maps)}")
        kq, p_lab = self.calibrated(res.confidence, evidence)
        pose_in = expected_oks(kq, p_lab)
        if self.pose_score is not None and evidence is not None:
            pose_in = self.pose_score(pose_features(pose_in, evidence))
        occluded = self.occluded_share if evidence is None else occluded_fraction(evidence)
        probs = np.stack([1 - p_lab, p_lab * occluded, p_lab * (1 - occluded)], -1)
        return {"keypoint_quality": kq, "pose_quality": self.pose_map(pose_in),
                # the one rule `c` follows too (scoring.keypoint_there)
                "visibility": np.where(keypoint_there(probs, kq), 2, 0) if evidence is None else
                visibility_classes(probs, keypoint_quality=kq),
                "visibility_probs": probs,
                "keypoint_radius": self.radii(kq, result_boxes(res))}

    def apply(self, res: ResultSet, evidence: Evidence | None = None) -> list[dict]:
        """The entries with the trust fields added, score = pose_quality, and each keypoint's c (the number COCO
        tools read) the calibrated one posecal writes for its own poses (scoring.present_and_right: keypoint
        quality where the keypoint is there, by the rule `visibility` follows, else 0); the estimator's own scores kept as `raw_keypoint_scores`, everything else kept."""
        o = self.outputs(res, evidence)
        r4 = lambda a: np.round(a, 4).tolist()  # noqa: E731
        c = present_and_right(o["keypoint_quality"], o["visibility_probs"])
        triples = np.concatenate([res.keypoints, c[..., None]], -1).reshape(len(res.entries), -1)
        return [e | {"keypoints": r4(triples[i]), "raw_keypoint_scores": r4(res.confidence[i]),
                     "score": round(float(o["pose_quality"][i]), 4), "pose_quality": round(float(o["pose_quality"][i]), 4),
                     "keypoint_quality": r4(o["keypoint_quality"][i]), "visibility": o["visibility"][i].tolist(),
                     "visibility_probs": r4(o["visibility_probs"][i]),
                     "keypoint_radius": np.round(o["keypoint_radius"][i], 2).tolist()}
                for i, e in enumerate(res.entries)]

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "meta": self.meta, "keypoint_maps": [m.to_dict() for m in self.keypoint_maps],
             "labelled_maps": [m.to_dict() for m in self.labelled_maps],
             "occluded_share": self.occluded_share.tolist(), "pose_map": self.pose_map.to_dict(),
             "radii": self.radii.to_dict()}
        if self.keypoint_scores is not None:
            d |= {"keypoint_scores": [m.to_dict() for m in self.keypoint_scores],
                  "labelled_scores": [m.to_dict() for m in self.labelled_scores]}
        if self.pose_score is not None:
            d["pose_score"] = self.pose_score.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str = "calibrator") -> "ResultsCalibrator":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise PosecalInputError(f"{source}: not a posecal calibrator (written by `posecal calibrate fit`)")
        former = [i for i in (d.get("meta") or {}).get("inputs", ()) if i in FORMER_EVIDENCE_INPUTS]
        if former:
            raise PosecalInputError(f"{source}: fitted with the evidence of an earlier posecal ({', '.join(former)}); "
                                    f"fit it again with `posecal calibrate fit --images`")
        try:
            cal = cls([IsotonicMap.from_dict(m) for m in d["keypoint_maps"]],
                      [IsotonicMap.from_dict(m) for m in d["labelled_maps"]],
                      np.asarray(d["occluded_share"], np.float64), IsotonicMap.from_dict(d["pose_map"]),
                      ConformalRadii.from_dict(d["radii"]), dict(d.get("meta", {})))
            if cal.evidence_inputs:
                cal.keypoint_scores = [LogisticScore.from_dict(m) for m in d["keypoint_scores"]]
                cal.labelled_scores = [LogisticScore.from_dict(m) for m in d["labelled_scores"]]
                if "pose_score" in d:
                    cal.pose_score = LogisticScore.from_dict(d["pose_score"])
            cal.check_lengths()
            return cal
        except (KeyError, TypeError, ValueError) as e:
            raise PosecalInputError(f"{source}: calibrator is damaged ({e})") from None

    def check_lengths(self) -> None:
        """Every per-keypoint-type part has one entry per type, and the logistic scores read as many features as
        this calibrator's evidence gives: a file cut or edited by hand must not calibrate keypoint 12 with
        keypoint 11's map, or fail deep in numpy. Raises ValueError naming the part."""
        k = len(self.keypoint_maps)
        parts = {"labelled_maps": len(self.labelled_maps), "occluded_share": len(np.atleast_1d(self.occluded_share)),
                 "radii": self.radii.radii.shape[0]}
        if self.keypoint_scores is not None:
            parts |= {"keypoint_scores": len(self.keypoint_scores), "labelled_scores": len(self.labelled_scores)}
        names = self.meta.get("keypoints")
        if isinstance(names, list):
            parts["meta.keypoints"] = len(names)
        for part, n in parts.items():
            if n != k:
                raise ValueError(f"{part} has {n} entries, keypoint_maps {k}: one per keypoint type is needed")
        if np.atleast_1d(self.occluded_share).ndim != 1 or not np.all((self.occluded_share >= 0)
                                                                      & (self.occluded_share <= 1)):
            raise ValueError("occluded_share must be K numbers in [0, 1]")
        for part in ("keypoint_scores", "labelled_scores"):
            widths = {len(m.weights) for m in getattr(self, part) or []}
            if len(widths) > 1:
                raise ValueError(f"{part} read different numbers of features ({sorted(widths)})")


def fit_results_calibrator(res: ResultSet, gt, target: float = 0.9, evidence: Evidence | None = None,
                           evidence_inputs=EVIDENCE_INPUTS, evidence_model: dict | None = None) -> ResultsCalibrator:
    """Fit on the results' entries that match a GT person (pycocotools COCO `gt`). evidence (for every entry
    of `res`): posecal's, of which `evidence_inputs` are used; evidence_model names the model it came from."""
    idx, g, area = match(res, gt_persons(gt))
    if len(idx) < 10:
        raise PosecalInputError(f"only {len(idx)} results match a labelled GT person; calibration needs >= 10")
    raw, xy = res.confidence[idx], res.keypoints[idx]
    ks, lab, gt_oks = truth_of(xy, g, area)
    k_types = raw.shape[1]
    inputs = tuple(i for i in EVIDENCE_INPUTS if i in evidence_inputs) if evidence is not None else ()
    kscores = lscores = None
    score_q = score_l = raw
    if inputs:
        f, q_signs, l_signs = keypoint_features(raw, evidence.take(idx), inputs)
        kscores = [fit_logistic(f[lab[:, k], k], ks[lab[:, k], k], q_signs) for k in range(k_types)]
        lscores = [fit_logistic(f[:, k], lab[:, k], l_signs) for k in range(k_types)]
        score_q, score_l = per_type(kscores, f), per_type(lscores, f)
    kmaps = [fit_isotonic(score_q[lab[:, k], k], ks[lab[:, k], k]) for k in range(k_types)]
    lmaps = [fit_isotonic(score_l[:, k], lab[:, k].astype(float)) for k in range(k_types)]
    occl = np.array([(g[lab[:, k], k, 2] == 1).mean() if lab[:, k].any() else 0.0 for k in range(k_types)])
    kq, p_lab = per_type(kmaps, score_q), per_type(lmaps, score_l)
    has = np.isfinite(gt_oks)
    pose_in, pose_score = expected_oks(kq, p_lab), None
    if inputs:
        pf = pose_features(pose_in, evidence.take(idx))
        pose_score = fit_logistic(pf[has], gt_oks[has], np.array([1, 1]))
        pose_in = pose_score(pf)
    pose_map = fit_isotonic(pose_in[has], gt_oks[has])
    sub = ResultSet([res.entries[i] for i in idx], res.image_id[idx], xy, raw, res.score[idx], None, None, None,
                    None, None)
    err = np.linalg.norm(xy - g[..., :2], axis=-1) / person_scale(result_boxes(sub))[:, None]
    radii = fit_radii(kq, err, lab, target)
    meta = {"keypoints": list(COCO_KEYPOINTS[:k_types]), "fit_persons": int(len(idx)),
            "fit_labelled_keypoints": int(lab.sum()), "inputs": list(BASE_INPUTS + inputs),
            "radius_target": target}
    if inputs:
        meta["evidence_model"] = evidence_model or {}
    return ResultsCalibrator(kmaps, lmaps, occl, pose_map, radii, meta, kscores, lscores, pose_score)


def image_names(annotations) -> dict[int, str] | None:
    """{image id: file name} of a COCO file's images (only its `images` list is read), or None without one: how
    `calibrate fit` and `calibrate apply` find the image of a standard COCO results entry, which names its image
    by `image_id` only."""
    if annotations is None:
        return None
    if not Path(annotations).is_file():
        raise PosecalInputError(f"{annotations}: annotation file not found")
    return {image_id: name for name, image_id in coco_image_ids(annotations).items()}


def result_image_paths(res: ResultSet, results, images, id_to_file: dict | None = None) -> list[str]:
    """Each entry's image file in `images`: its `file_name` (as `run-peer` and `predict` write it), else the
    annotations' name for its image_id (`image_names`); checked to exist before any work is spent."""
    paths = []
    for i, e in enumerate(res.entries):
        name = e.get("file_name") or (id_to_file or {}).get(int(res.image_id[i]))
        if not isinstance(name, str) or not name:
            how = (f"image_id {int(res.image_id[i])} is not among the images of --annotations" if id_to_file
                   else "give --annotations (the COCO file of its images) to find it by its image_id")
            raise PosecalInputError(f"{results}: entry {i}: no 'file_name' to find its image in {images}; {how}")
        path = Path(image_file(images, name))
        if not path.is_file():
            raise PosecalInputError(f"{path}: file not found (image of entry {i} of {results})")
        paths.append(str(path))
    return paths


def results_evidence(res: ResultSet, results, images, source: PosecalEvidence | None = None,
                     id_to_file: dict | None = None) -> tuple[Evidence, PosecalEvidence]:
    """posecal's evidence for every entry, on the entry's box (its `bbox`, else the box around its keypoints)."""
    paths = result_image_paths(res, results, images, id_to_file)
    source = source or PosecalEvidence()
    return source(paths, result_boxes(res), res.keypoints), source


def calibrate_fit(results, annotations, out, images=None) -> ResultsCalibrator:
    check_output_file(out, "--out")
    truth = read_coco(annotations)   # checked: pycocotools gets no entry it would fail on
    res = load_results(results, image_ids={im["id"] for im in truth["images"]}, annotations=annotations)
    evidence = source = None
    if images is not None:
        evidence, source = results_evidence(res, results, images, id_to_file=image_names(annotations))
    cal = fit_results_calibrator(res, load_coco_gt(truth), evidence=evidence,
                                 evidence_model=source.description if source else None)
    cal.meta |= {"results": str(results), "annotations": str(annotations)}
    write_json_atomic(cal.to_dict(), out)
    return cal


def calibrate_apply(calibrator, results, out, images=None, annotations=None) -> int:
    """Add the calibrated trust fields to `results`. With `images` (a calibrator fitted on posecal's image
    evidence), an entry's image is its `file_name`, else found by its image_id in `annotations`, as fit finds it."""
    check_output_file(out, "--out")
    cal = ResultsCalibrator.from_dict(read_json(calibrator), str(calibrator))
    if cal.evidence_inputs and images is None:
        raise PosecalInputError(f"{calibrator}: this calibrator uses posecal's image evidence "
                                f"({', '.join(cal.evidence_inputs)}); give the images with --images DIR")
    res = load_results(results, k=len(cal.keypoint_maps))
    evidence = None
    if cal.evidence_inputs:
        source = PosecalEvidence()
        fitted_with = cal.meta.get("evidence_model", {}).get("sha256_16")
        if fitted_with != source.description["sha256_16"]:
            raise PosecalInputError(f"{calibrator}: fitted with evidence from another posecal model "
                                    f"({cal.meta.get('evidence_model')}); this install has {source.description}: "
                                    f"fit it again")
        evidence, _ = results_evidence(res, results, images, source, id_to_file=image_names(annotations))
    write_json_atomic(cal.apply(res, evidence), out, indent=None)
    return len(res.entries)
