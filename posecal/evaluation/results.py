"""`posecal eval --results`: the trust report of ANY COCO keypoint results file, without running a model.

Each results entry is matched to a ground-truth person of its image (greedily by OKS, highest score
first, as COCOeval matches); the trust metrics are computed on the matched pairs, AP on the whole file
by pycocotools. The keys of metrics.json are a contract other tools rely on (see README, Evaluate):
`ap`/`ap50`/`ap75`/`ar` and `pose_score_*` keyed by "score" and "pose_quality"; `keypoint_ece` keyed by
"confidence" and "keypoint_quality"; `mean_opks_pearson`; `visibility`; `keypoint_radius`; `risk_coverage`.
The model path of `posecal eval` computes the same keys from its own results.json, with this code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posecal.data.coco import image_file, read_coco, read_json
from posecal.data.schema import Field, checked_entries, strict_reading
from posecal.errors import PosecalInputError
from posecal.evaluation.outcome import Evaluation, Pictures
from posecal.evaluation.one_to_one import one_to_one, pose_outcomes
from posecal.metrics.calibration import ece, ece_floor, pearson, spearman
from posecal.metrics.coco_ap import coco_keypoint_ap, load_coco_gt
from posecal.metrics.oks import opks
from posecal.metrics.reported import MATCHED
from posecal.metrics.risk_coverage import risk_coverage
from posecal.metrics.visibility import binary_report, classification_report
from posecal.skeleton import COCO_KEYPOINTS, NUM_KEYPOINTS
from posecal.validation import NON_NEGATIVE, PROBABILITY, Rule

VIS_LABELS = ("not labelled", "occluded", "visible")
RADIUS_TARGET = 0.9
MIN_MATCH_OKS = 0.0   # every prediction on an image with an unmatched person is matched (crops: one each)


def rounded(x, nd: int = 4):
    """A float for metrics.json: rounded, NaN -> None (JSON has no NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


@dataclass
class ResultSet:
    """A results file as arrays (N entries): what the trust metrics need."""

    entries: list[dict]
    image_id: np.ndarray                 # (N,)
    keypoints: np.ndarray                # (N, K, 2)
    confidence: np.ndarray               # (N, K): the third value of `keypoints`
    score: np.ndarray                    # (N,)
    pose_quality: np.ndarray | None      # (N,) where every entry carries it
    keypoint_quality: np.ndarray | None  # (N, K)
    visibility: np.ndarray | None        # (N, K) ints
    visibility_probs: np.ndarray | None  # (N, K, C)
    keypoint_radius: np.ndarray | None   # (N, K)


def result_spec(k: int = NUM_KEYPOINTS) -> dict[str, Field]:
    """The fields of a COCO keypoint results entry, posecal's trust fields among them (all optional)."""
    return {"image_id": Field("int", required=True), "keypoints": Field("numbers", True, shape=(k, 3), flat=True),
            "score": Field("number", required=True), "category_id": Field("int"), "file_name": Field("text"),
            "bbox": Field("numbers", shape=(4,), expect="4 numbers [x, y, w, h]"),
            "pose_quality": Field("number"), "keypoint_quality": Field("numbers", shape=(k,)),
            "visibility": Field("numbers", shape=(k,), rule=Rule(choices=(0, 1, 2))),
            "visibility_probs": Field("numbers", shape=(k, None), rule=PROBABILITY),
            "keypoint_radius": Field("numbers", shape=(k,), rule=NON_NEGATIVE)}


def load_results(path, k: int = NUM_KEYPOINTS, image_ids=None, annotations=None) -> ResultSet:
    """Read and check a COCO keypoint results file: a bad entry is a line naming the file, entry and field, and
    is skipped (a file with no usable entry is refused). With `image_ids` (those of `annotations`), an entry
    must refer to one of them."""
    return results_from_entries(read_json(path), path, k, image_ids, annotations)


def results_from_entries(data, path, k: int = NUM_KEYPOINTS, image_ids=None, annotations=None) -> ResultSet:
    """Checked arrays of COCO keypoint results entries (`path` names them in messages). Optional fields
    count only when every entry has them."""
    if not isinstance(data, list):
        raise PosecalInputError(f"{path}: expected a JSON list of COCO keypoint results")
    if not data:
        raise PosecalInputError(f"{path}: no results")
    refs = None if image_ids is None else {"image_id": (image_ids, f"no image with id {{}} in {annotations}")}
    data = [e for _, e in checked_entries(path, data, result_spec(k), id_field="image_id", refs=refs, what="results")]
    cols: dict[str, list] = {}
    for e in data:
        for field in ("keypoints", "score", "pose_quality", "keypoint_quality", "visibility", "keypoint_radius",
                      "visibility_probs"):
            if field in e:
                cols.setdefault(field, []).append(np.asarray(e[field], np.float64))
    n = len(data)
    full = {f: np.stack(v) for f, v in cols.items() if len(v) == n and (f != "visibility_probs" or
                                                                        len({a.shape for a in v}) == 1)}
    kp = full["keypoints"].reshape(n, k, 3)
    return ResultSet(data, np.array([e["image_id"] for e in data]), kp[..., :2], kp[..., 2], full["score"],
                     full.get("pose_quality"), full.get("keypoint_quality"),
                     full["visibility"].astype(int) if "visibility" in full else None,
                     full.get("visibility_probs"), full.get("keypoint_radius"))


def result_boxes(res: ResultSet) -> np.ndarray:
    """(N, 4) person boxes: each entry's `bbox`, else the box around its keypoints."""
    lo, hi = res.keypoints.min(1), res.keypoints.max(1)
    boxes = np.concatenate([lo, hi - lo], 1)
    for i, e in enumerate(res.entries):
        if "bbox" in e:   # checked by result_spec
            boxes[i] = e["bbox"]
    return boxes


def gt_persons(gt) -> dict[int, list[dict]]:
    """Non-crowd GT persons with at least one labelled keypoint, by image id."""
    out: dict[int, list[dict]] = {}
    for a in gt.dataset.get("annotations", []):
        if not a.get("iscrowd", 0) and np.any(np.asarray(a.get("keypoints", [0, 0, 0]))[2::3] > 0):
            out.setdefault(int(a["image_id"]), []).append(a)
    return out


def match(res: ResultSet, persons: dict[int, list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(result index (M,), GT keypoints (M, K, 3), GT area (M,)) of matched pairs: per image, results in
    descending score take the free GT person with the highest OKS (COCOeval's greedy rule)."""
    idx, anns = match_annotations(res, persons)
    k = res.keypoints.shape[1]
    g = np.array([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in anns]).reshape(-1, k, 3)
    return idx, g, np.array([_area(a) for a in anns])


def _area(a: dict) -> float:
    return float(a.get("area", a["bbox"][2] * a["bbox"][3]))


def match_annotations(res: ResultSet, persons: dict[int, list[dict]]) -> tuple[np.ndarray, list[dict]]:
    """(result index (M,), the GT annotation each matched) by match's rule: the pairing itself, for callers
    that need to know which annotation a result stands for (`posecal audit --results`)."""
    idx, anns = [], []
    by_image: dict[int, list[int]] = {}
    for i in np.argsort(-res.score, kind="mergesort"):
        by_image.setdefault(int(res.image_id[i]), []).append(int(i))
    for img, order in by_image.items():
        cands = persons.get(img, [])
        if not cands:
            continue
        g = np.array([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in cands])
        area = np.array([_area(a) for a in cands])
        free = np.ones(len(cands), bool)
        for i in order:
            if not free.any():
                break
            ks = opks(res.keypoints[i][None], g[..., :2], area)
            lab = g[..., 2] > 0
            oks = np.where(free, (ks * lab).sum(1) / np.maximum(lab.sum(1), 1), -1.0)
            j = int(oks.argmax())
            if oks[j] >= MIN_MATCH_OKS:
                free[j] = False
                idx.append(i)
                anns.append(cands[j])
    return np.array(idx, int), anns


@dataclass
class MatchedPairs:
    """The results matched to ground-truth persons, and how close each matched pose is to its person."""

    index: np.ndarray     # (M,) result index of each pair
    gt: np.ndarray        # (M, K, 3) the matched persons' keypoints
    area: np.ndarray      # (M,) their OKS areas
    ks: np.ndarray        # (M, K) each predicted keypoint's OPKS against its labelled one
    labelled: np.ndarray  # (M, K) bool: the GT keypoint is labelled
    gt_oks: np.ndarray    # (M,) each pose's OKS: the mean OPKS over its labelled keypoints


def pose_score_columns(res: ResultSet) -> dict[str, np.ndarray]:
    """The per-result pose scores the metrics are keyed by: "score" always, "pose_quality" where the file has it."""
    return {"score": res.score} | ({"pose_quality": res.pose_quality} if res.pose_quality is not None else {})


def ap_metrics(res: ResultSet, gt, pose_scores: dict[str, np.ndarray]) -> dict:
    """`ap`/`ap50`/`ap75`/`ar`, each keyed by pose score: pycocotools run on the whole file once per score."""
    m: dict = {"ap": {}, "ap50": {}, "ap75": {}, "ar": {}}
    # pycocotools needs a category, and reads boxes only when the first entry has one, then from every entry
    boxes = all("bbox" in e for e in res.entries)
    for name, s in pose_scores.items():
        entries = [{"category_id": 1} | {k: v for k, v in e.items() if boxes or k != "bbox"} | {"score": float(v)}
                   for e, v in zip(res.entries, s)]
        ap = coco_keypoint_ap(gt, entries)
        for key in ("ap", "ap50", "ap75", "ar"):
            m[key][name] = round(ap[key], 3)
    return m


def matched_pairs(res: ResultSet, gt) -> MatchedPairs:
    """The results matched to the ground truth's persons (match's rule), with their per-keypoint and pose OKS."""
    idx, g, area = match(res, gt_persons(gt))
    ks = opks(res.keypoints[idx], g[..., :2], area) if len(idx) else np.zeros(g.shape[:2])
    lab = g[..., 2] > 0
    gt_oks = (ks * lab).sum(1) / np.maximum(lab.sum(1), 1)
    return MatchedPairs(idx, g, area, ks, lab, gt_oks)


def matched_keypoint_quality(res: ResultSet, pairs: MatchedPairs) -> np.ndarray | None:
    """The matched results' keypoint_quality (M, K), None where the file has none."""
    return res.keypoint_quality[pairs.index] if res.keypoint_quality is not None else None


def keypoint_truth(pairs: MatchedPairs) -> np.ndarray:
    """(M, K) what a keypoint's confidence is judged against: its OPKS where labelled and 0 where not. The
    confidence says how likely a keypoint is there and right (posecal's: scoring.present_and_right), so the
    keypoints that are not there count too."""
    return np.where(pairs.labelled, pairs.ks, 0.0)


def pose_score_agreement(pose_scores: dict[str, np.ndarray], pairs: MatchedPairs) -> dict:
    """How well each pose score follows the matched poses' OKS: Pearson, Spearman and ECE (scores clipped to 0..1)."""
    idx, gt_oks = pairs.index, pairs.gt_oks
    return {"pose_score_pearson": {n: rounded(pearson(s[idx], gt_oks)) for n, s in pose_scores.items()},
            "pose_score_spearman": {n: rounded(spearman(s[idx], gt_oks)) for n, s in pose_scores.items()},
            "pose_score_ece": {n: rounded(ece(np.clip(s[idx], 0, 1), gt_oks)) for n, s in pose_scores.items()}}


def keypoint_ece(res: ResultSet, pairs: MatchedPairs) -> dict:
    """ECE of the keypoint confidence over every matched keypoint (keypoint_truth), and of keypoint_quality over
    the labelled ones against their OPKS."""
    lab, kq = pairs.labelled, matched_keypoint_quality(res, pairs)
    out = {"confidence": rounded(ece(res.confidence[pairs.index].ravel(), keypoint_truth(pairs).ravel()))}
    if kq is not None:
        out["keypoint_quality"] = rounded(ece(kq[lab], pairs.ks[lab]))
    return out


def ece_floors(res: ResultSet, pose_scores: dict[str, np.ndarray], pairs: MatchedPairs) -> dict:
    """Each ECE's floor: the (mean, 90th percentile) ECE a perfectly calibrated predictor shows on this many
    pairs, so that a small ECE can be told from sampling noise."""
    idx, lab, kq = pairs.index, pairs.labelled, matched_keypoint_quality(res, pairs)
    keypoint = {"confidence": [rounded(v) for v in ece_floor(res.confidence[idx].ravel(),
                                                             keypoint_truth(pairs).ravel())]}
    if kq is not None:
        keypoint["keypoint_quality"] = [rounded(v) for v in ece_floor(kq[lab], pairs.ks[lab])]
    return {"pose_score_ece_floor": {n: [rounded(v) for v in ece_floor(np.clip(s[idx], 0, 1), pairs.gt_oks)]
                                     for n, s in pose_scores.items()},
            "keypoint_ece_floor": keypoint}


def keypoint_trust(res: ResultSet, pairs: MatchedPairs) -> np.ndarray:
    """(M, K) the per-keypoint trust of the matched results: keypoint_quality where the file has it, else the
    confidence."""
    kq = matched_keypoint_quality(res, pairs)
    return kq if kq is not None else res.confidence[pairs.index]


def mean_opks_pearson(res: ResultSet, pairs: MatchedPairs) -> float | None:
    """Pearson of each pose's mean keypoint trust over its labelled keypoints with its OKS (persons with at least
    one labelled keypoint)."""
    lab = pairs.labelled
    has = lab.any(1)
    mean_pred = (keypoint_trust(res, pairs) * lab).sum(1) / np.maximum(lab.sum(1), 1)
    return rounded(pearson(mean_pred[has], pairs.gt_oks[has]))


def visibility_metrics(res: ResultSet, pairs: MatchedPairs) -> dict | None:
    """Visibility predicted against the GT flags: the binary report (labelled or not), with the ternary one
    when the predictions have the three COCO classes; None where the file predicts no visibility."""
    if res.visibility_probs is None and res.visibility is None:
        return None
    idx = pairs.index
    v = pairs.gt[..., 2].astype(int)
    vis = res.visibility[idx] if res.visibility is not None else res.visibility_probs[idx].argmax(-1)
    classes = res.visibility_probs.shape[-1] if res.visibility_probs is not None else int(vis.max()) + 1
    out = {"binary": binary_report(v > 0, vis > 0)}
    if classes == 3:
        out = {"ternary": classification_report(v, vis, 3), **out, "labels": list(VIS_LABELS)}
    return out


def radius_metrics(res: ResultSet, pairs: MatchedPairs) -> dict | None:
    """How often the labelled keypoints lie within their predicted radius (overall and per keypoint, against
    RADIUS_TARGET), and the median radius relative to the person's size; None where the file has no radius."""
    if res.keypoint_radius is None:
        return None
    idx, lab = pairs.index, pairs.labelled
    rad = res.keypoint_radius[idx]
    err = np.linalg.norm(res.keypoints[idx] - pairs.gt[..., :2], axis=-1)
    inside = err <= rad
    return {"target": RADIUS_TARGET, "coverage": rounded(inside[lab].mean()),
            "coverage_per_keypoint": {name: rounded(inside[lab[:, k], k].mean()) if lab[:, k].any() else None
                                      for k, name in enumerate(COCO_KEYPOINTS[: lab.shape[1]])},
            "median_radius_rel": rounded(np.median((rad / np.sqrt(np.maximum(pairs.area, 1e-9))[:, None])[lab]))}


def risk_coverage_metrics(res: ResultSet, pose_scores: dict[str, np.ndarray], pairs: MatchedPairs) -> dict:
    """Risk-coverage of the poses (by pose_quality where the file has it, else score) and of the labelled
    keypoints (by keypoint_quality where the file has it, else confidence), each naming the score it ranks by."""
    lab = pairs.labelled
    pose_trust = pose_scores.get("pose_quality", res.score)[pairs.index]
    pose_by = "pose_quality" if res.pose_quality is not None else "score"
    keypoint_by = "keypoint_quality" if res.keypoint_quality is not None else "confidence"
    return {"pose": risk_coverage(pose_trust, pairs.gt_oks) | {"score": pose_by},
            "keypoint": risk_coverage(keypoint_trust(res, pairs)[lab], pairs.ks[lab]) | {"score": keypoint_by}}


def results_metrics(res: ResultSet, gt) -> dict:
    """The contract keys of metrics.json for a results file against a pycocotools COCO ground truth: AP on the
    whole file, then the trust metrics on the matched pairs (only the counts when nothing matched). The private
    `_pairs` carries the matched pairs to the report; it is not written."""
    pose_scores = pose_score_columns(res)
    m: dict = {"num_results": len(res.entries), **ap_metrics(res, gt, pose_scores)}
    if res.pose_quality is not None:   # each pose against the people of its picture, as AP counts it
        m["one_to_one"] = one_to_one(res.entries, res.pose_quality, gt.dataset)
    pairs = matched_pairs(res, gt)
    m["num_matched"] = int(len(pairs.index))
    if len(pairs.index) == 0:
        return m
    m |= pose_score_agreement(pose_scores, pairs)
    m["keypoint_ece"] = keypoint_ece(res, pairs)
    m |= ece_floors(res, pose_scores, pairs)
    m["mean_opks_pearson"] = mean_opks_pearson(res, pairs)
    visibility = visibility_metrics(res, pairs)
    if visibility is not None:
        m["visibility"] = visibility
    radius = radius_metrics(res, pairs)
    if radius is not None:
        m["keypoint_radius"] = radius
    m["risk_coverage"] = risk_coverage_metrics(res, pose_scores, pairs)
    m["_pairs"] = {"index": pairs.index, "gt": pairs.gt, "area": pairs.area, "ks": pairs.ks, "gt_oks": pairs.gt_oks}
    return m


def merge_metrics(metrics: dict, contract: dict) -> dict:
    """Add the contract keys to a model evaluation's metrics: dicts are united (the model path's own
    entries win), other keys are added where missing."""
    for key, value in contract.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict) and isinstance(metrics.get(key), dict):
            metrics[key] = value | metrics[key]
        else:
            metrics.setdefault(key, value)
    return metrics


def results_pictures(res: ResultSet, metrics: dict, gt, images=None, pictures: Pictures | None = None) -> Pictures:
    """What the trust report of matched results is drawn from: `metrics` is results_metrics' (with its private
    `_pairs`). Given `pictures` (a model evaluation's, whose plots come from the model's own outputs), only the
    risk-coverage and the galleries are added; else the results file's own reliability and pose-score plots too.
    With the images folder, the galleries show the people."""
    pairs = metrics.get("_pairs")
    own = pictures is None
    pictures = Pictures() if own else pictures
    pictures.risk_coverage = metrics.get("risk_coverage")
    if pairs is None:
        return pictures
    idx, lab = pairs["index"], pairs["gt"][..., 2] > 0
    if own:
        pictures.reliability = {"confidence": res.confidence[idx][lab]} | (
            {"keypoint quality": res.keypoint_quality[idx][lab]} if res.keypoint_quality is not None else {})
        pictures.reliability_truth = pairs["ks"][lab]
        pictures.pose_scores = {n: s[idx] for n, s in pose_score_columns(res).items()}
        pictures.pose_truth = pairs["gt_oks"]
    return gallery_people(pictures, res, idx, pairs["gt"], pairs["gt_oks"], gt, images)


def reported_pictures(res: ResultSet, gt, pictures: Pictures, images=None) -> Pictures:
    """The pose figures of poses a detector's boxes gave (`eval --detector`), as metrics.json's one_to_one figures
    judge them: the pose-quality plot over the poses scored one to one against their picture's labelled people
    (a duplicate scored 0), the galleries over the matched ones. A pose on nobody labelled (a person the file did
    not label) is neither: paired with a labelled person by OKS alone, it would show as over-confident. The
    keypoint plots stay those of `pictures` (results_pictures')."""
    outcomes = pose_outcomes(res.entries, res.pose_quality, gt.dataset) if res.pose_quality is not None else None
    if outcomes is None:
        return pictures
    pictures.one_to_one = True
    scored = outcomes.scored
    pictures.pose_scores, pictures.pose_truth = {"pose_quality": res.pose_quality[scored]}, outcomes.target[scored]
    matched = np.array([i for i in outcomes.order if outcomes.kind[i] == MATCHED], int)
    truth = np.array([np.asarray(outcomes.person[i]["keypoints"], np.float64).reshape(-1, 3) for i in matched])
    return gallery_people(pictures, res, matched, truth.reshape(len(matched), res.keypoints.shape[1], 3),
                          outcomes.target[matched], gt, images)


def gallery_people(pictures: Pictures, res: ResultSet, idx: np.ndarray, truth: np.ndarray, truth_oks: np.ndarray,
                   gt, images=None) -> Pictures:
    """The galleries' people: results `idx` as PersonPose, beside their truth (M, K, 3) and OKS (M,), each with
    its image's file in `images` (image_file; None without the folder or the image's file_name)."""
    from posecal.inference.predictor import PersonPose

    kq = res.keypoint_quality if res.keypoint_quality is not None else res.confidence
    pq = res.pose_quality if res.pose_quality is not None else res.score
    boxes = result_boxes(res)
    vis = res.visibility if res.visibility is not None else (
        res.visibility_probs.argmax(-1) if res.visibility_probs is not None else None)
    pictures.people = [PersonPose(boxes[i], res.keypoints[i], kq[i], res.confidence[i], float(pq[i]),
                                  None if vis is None else vis[i], None,
                                  keypoint_radius=None if res.keypoint_radius is None else res.keypoint_radius[i])
                       for i in idx]
    files = {int(im["id"]): im.get("file_name") for im in gt.dataset.get("images", [])}
    pictures.image_paths = [image_file(images, files[int(res.image_id[i])])
                            if images and files.get(int(res.image_id[i])) else None for i in idx]
    pictures.gt, pictures.gt_oks = truth, truth_oks
    return pictures


def evaluate_results(results, annotations, out, images=None, skip_invalid: bool = False,
                     about: dict | None = None, reported: bool = False) -> Evaluation:
    """The `posecal eval --results` job: metrics.json in `out`; the returned Evaluation carries what the plots
    and report.html are drawn from (posecal.viz.report.draw_evaluation), with galleries when the images folder
    is given. Malformed entries in either file refuse the job (the metrics would be on a subset), or with
    skip_invalid are left out and listed in metrics.json (data/schema.py: Skips). `about`: what made the results
    (model, detector, precision), written into metrics.json beside the figures. `reported`: the results are the
    poses a detector's boxes gave (`eval --detector`), whose pose figures are the one-to-one ones
    (reported_pictures)."""
    from posecal.io import write_json_atomic
    from posecal.io import check_output_dir

    out_dir = check_output_dir(out, "--out")
    with strict_reading(skip_invalid) as skips:
        truth = read_coco(annotations)  # checked: pycocotools gets no entry it would fail on
        res = load_results(results, image_ids={im["id"] for im in truth["images"]}, annotations=annotations)
    gt = load_coco_gt(truth)
    m = results_metrics(res, gt)
    m["invalid_entries"] = skips.summary()
    m |= about or {}
    pictures = results_pictures(res, m, gt, images)
    if reported:
        pictures = reported_pictures(res, gt, pictures, images)
    m.pop("_pairs", None)
    write_json_atomic(m, out_dir / "metrics.json")
    return Evaluation(m, out_dir, pictures)
