"""`posecal eval`: predictions on a COCO keypoint file, COCO AP per pose-score mode, and the trust report.

Everything is computed on one set of predictions: pycocotools for AP, tested code in posecal.metrics for
the rest. With a model that has no quality heads, only the heatmap-based parts are reported.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from posecal.data.coco import load_coco_persons, read_coco
from posecal.data.schema import Skips, strict_reading
from posecal.errors import PosecalInputError
from posecal.inference.opener import check_backend, decide_precision, require_model
from posecal.inference.record_posing import (RecordPosing, opened_posing, pose_records, posing_threads,
                                             record_fingerprint)
from posecal.inference.topdown import Predictions
from posecal.io import check_output_dir, write_json_atomic
from posecal.parallel import default_threads
from posecal.parallel.runner import Engine, digest
from posecal.models.config import default_decode, require_coco_keypoints
from posecal.evaluation.outcome import Evaluation, Pictures
from posecal.evaluation.results import (VIS_LABELS, merge_metrics, results_from_entries, results_metrics,
                                        results_pictures)
from posecal.evaluation.results import rounded as _r
from posecal.metrics.calibration import ece, pearson, spearman
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.metrics.keypoints import error_breakdown, mapk
from posecal.metrics.oks import opks
from posecal.metrics.visibility import binary_report, classification_report
from posecal.inference.scoring import keypoint_confidence, pose_scores, predicted_labelled, visibility_classes


@dataclass
class EvalConfig:
    annotations: str
    images: str
    out: str
    model: str | None = None       # None: the shipped default model; an .onnx file runs in onnxruntime
    boxes: str | None = None       # COCO detection results JSON; None: GT boxes
    flip: bool = True
    decode: str | None = None     # None: the model's own (posecal.models.config.default_decode)
    batch_size: int = 32
    threads: int | None = None          # None: the machine's cores (parallel.default_threads)
    progress: bool = True
    score_mode: str | None = None  # pose score written to results.json; default: opks with heads, else heatmap
    drop_unlabelled: bool = False  # results.json: keypoints predicted not-labelled get confidence 0
    plots: bool = True
    calibrated: bool = True        # apply the calibration stored with the model (when it has one)
    orientations: int | str = 1    # 4: test-time orientation search (posecal/inference/orientation.py);
                                   # auto: only for persons whose upright pose quality is low
    skip_invalid: bool = False     # False: malformed GT/detections refuse the run (the metric would be on a
                                   # subset); True: score the rest, the skipped entries recorded in metrics.json
    backend: str = "onnx"          # onnx: the model's cached export in onnxruntime (posecal/export/cache.py),
                                   # as `predict` runs it; torch: PyTorch (needed for --decode)
    device: str = "cpu"            # where the model runs: "cuda" (a GPU), the CPU with one warning line where
                                   # the onnx backend cannot use one
    precision: str = "auto"        # a shipped model's graphs on the CPU (devices.choose_precision), decided here
                                   # once for every worker and written into metrics.json
    engine: Engine | None = None      # None: posed in this process; else through the runner on that engine
                                      # (--engine ray: Ray actors; inference/record_posing.py), the metrics
                                      # computed here all the same


def trust_report(pred: Predictions, scores: dict[str, np.ndarray], pictures: Pictures | None = None) -> dict:
    """Calibration, visibility, mAPK and error metrics of predictions whose records carry GT keypoints; with
    `pictures`, also fills in what the reliability, pose-score and confusion plots are drawn from."""
    gt = np.stack([r.keypoints for r in pred.records])
    area = np.array([r.area for r in pred.records])
    ks = opks(pred.keypoints, gt[..., :2], area)
    labelled = gt[..., 2] > 0
    has = labelled.any(1)
    gt_oks = (ks * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
    report = {
        "pose_score_pearson": {m: _r(pearson(s[has], gt_oks[has])) for m, s in scores.items()},
        "pose_score_spearman": {m: _r(spearman(s[has], gt_oks[has])) for m, s in scores.items()},
        # Does a pose score of 0.3 mean an OKS of 0.3? (15 bins; only meaningful for the learned modes)
        "pose_score_ece": {m: _r(ece(np.clip(s[has], 0, 1), gt_oks[has])) for m, s in scores.items()},
        "keypoint_ece": {"heatmap": _r(ece(pred.heatmap_scores[labelled], ks[labelled]))},
    }
    conf = keypoint_confidence(pred)
    keep = None
    if pred.opks is not None:
        mean_pred = (pred.opks * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
        report["mean_opks_pearson"] = _r(pearson(mean_pred[has], gt_oks[has]))
        report["keypoint_ece"]["opks"] = _r(ece(pred.opks[labelled], ks[labelled]))
        # Ablation: the opks pose score without the visibility branch (mean over all K keypoints).
        opks_all = pred.opks.mean(1)
        report["opks_without_visibility"] = {"pose_score_pearson": _r(pearson(opks_all[has], gt_oks[has])),
                                             "pose_score_spearman": _r(spearman(opks_all[has], gt_oks[has]))}
        vis_pred = visibility_classes(pred.visibility_probs, pred.occluded_over_visible, pred.opks,   # as reported
                                  pred.in_frame)
        v = gt[..., 2].astype(int)
        if pred.visibility_probs.shape[-1] == 3:
            report["visibility"] = {"ternary": classification_report(v, vis_pred, 3),
                                    "binary": binary_report(v > 0, vis_pred > 0), "labels": list(VIS_LABELS)}
        else:
            report["visibility"] = {"binary": binary_report(v > 0, vis_pred > 0)}
        keep = predicted_labelled(pred)
        dropped = ~keep
        report["drop_unlabelled"] = {
            "dropped_keypoints": int(dropped.sum()),
            "dropped_that_were_labelled": int((dropped & labelled).sum()),
            "kept_precision_labelled": _r((keep & labelled).sum() / max(keep.sum(), 1)),
            "labelled_recall": _r((keep & labelled).sum() / max(labelled.sum(), 1))}
    report["mapk"] = {"confidence": "opks" if pred.opks is not None else "heatmap",
                      "all": mapk(ks, conf, labelled)}
    if keep is not None:
        report["mapk"]["drop_unlabelled"] = mapk(ks, conf, labelled, keep)
    report["errors"] = error_breakdown(pred.keypoints, gt, area)
    report["errors_note"] = ("swap needs other persons' annotations; each crop carries one person, "
                             "so swaps are not counted (0)")
    if pictures is not None:
        pictures.reliability = {"heatmap peak": pred.heatmap_scores[labelled]}
        if pred.opks is not None:
            pictures.reliability["predicted OPKS"] = pred.opks[labelled]
        pictures.reliability_truth = ks[labelled]
        pictures.pose_scores, pictures.pose_truth = {m: s[has] for m, s in scores.items()}, gt_oks[has]
        if "visibility" in report and "ternary" in report["visibility"]:
            pictures.confusion = np.asarray(report["visibility"]["ternary"]["confusion"])
            pictures.confusion_labels = VIS_LABELS
    return report


def evaluate(cfg: EvalConfig) -> Evaluation:
    """The `posecal eval` job: results.json and metrics.json in cfg.out. With cfg.plots the returned
    Evaluation carries what the pictures are drawn from (posecal.viz.report.draw_evaluation draws them)."""
    out = check_output_dir(cfg.out, "--out")
    actor_threads = cfg.threads   # --engine ray: per actor (None: the cores Ray sees shared among the workers)
    cfg = dataclasses.replace(cfg, threads=cfg.threads or default_threads())
    t0 = time.time()
    check_backend(cfg.backend, cfg.device)
    require_model(cfg.model)   # a missing model is said before the inputs are read
    # the inputs before the model: a file that would be refused is refused before a model is loaded or exported
    with strict_reading(cfg.skip_invalid) as skips:
        records = load_coco_persons(cfg.annotations, cfg.images, boxes_file=cfg.boxes)
        truth = read_coco(cfg.annotations)
    if not records and cfg.boxes:   # a detector that found nobody: no model to run
        return _nobody_detected(cfg, out, truth, skips, t0)
    if not records:
        raise PosecalInputError(f"{cfg.annotations}: no person with labelled keypoints to evaluate")
    precision, _ = decide_precision(cfg.model, cfg.precision, cfg.backend, cfg.device, cfg.flip)
    # one settings form: the posing's, the workers' and the fingerprint's; threads per process (on Ray per actor)
    posing = RecordPosing(cfg.model, cfg.backend, cfg.flip, posing_threads(cfg.engine, cfg.threads, actor_threads),
                          cfg.calibrated, cfg.decode, cfg.orientations, cfg.batch_size, cfg.device, precision)
    with opened_posing(posing) as predictor:   # the model opened once in this process: its worker poses with it
        mcfg = predictor.config
        _refuse_unusable(cfg, mcfg)
        pred = pose_records(records, posing, cfg.engine, out / "results.json", cfg.progress)
    if not pred.records:
        raise PosecalInputError(f"{cfg.images}: none of the {len(records)} persons' images could be read")
    scores = pose_scores(pred)
    mode = cfg.score_mode or ("oks" if "oks" in scores else "heatmap")
    if mode not in scores:
        raise PosecalInputError(f"score mode {mode!r} needs a model with quality heads (available: {sorted(scores)})")
    pictures = Pictures() if cfg.plots else None
    image_ids = [r.image_id for r in pred.records]
    conf = keypoint_confidence(pred)
    gt = load_coco_gt(truth)   # checked: pycocotools gets no entry it would fail on
    metrics = {"num_instances": len(pred.records), "num_skipped": len(records) - len(pred.records),
               "invalid_entries": skips.summary(),
               "boxes": "detections" if cfg.boxes else "gt", "flip_test": predictor.flip,
               "decode": cfg.decode or default_decode(mcfg),
               "orientations": cfg.orientations, "backend": predictor.backend, "precision": predictor.precision,
               "score_mode": mode, "calibrated": pred.calibrated,
               "fingerprint": digest(record_fingerprint(posing)), "ap": {}, "ap50": {}, "ap75": {}, "ar": {}}
    for m, s in scores.items():
        # each pose ranked by its own score, as `predict` writes it for the same boxes (PersonPose.to_dict), not
        # times the box's score: eval --boxes scores what predict reports (GT boxes score 1: the same either way)
        ap = coco_keypoint_ap(gt, coco_keypoint_results(image_ids, pred.keypoints, conf, s))
        for key in ("ap", "ap50", "ap75", "ar"):
            metrics[key][m] = round(ap[key], 3)
    if cfg.boxes is None:
        metrics.update(trust_report(pred, scores, pictures))
    written_conf = np.where(predicted_labelled(pred), conf, 0.0) if cfg.drop_unlabelled and pred.opks is not None \
        else conf
    results = [eval_entry(res, person, rec) for res, person, rec in
               zip(coco_keypoint_results(image_ids, pred.keypoints, written_conf, scores[mode]),
                   pred.people, pred.records)]
    # The contract keys every results file gets (`posecal eval --results`), from this results.json itself.
    result_set = results_from_entries(results, "results.json")
    contract = results_metrics(result_set, gt)
    merge_metrics(metrics, contract)
    if pictures is not None:
        results_pictures(result_set, contract, gt, cfg.images, pictures)
        pictures.risk_coverage = metrics.get("risk_coverage")
    metrics["seconds"] = round(time.time() - t0, 2)
    write_json_atomic(results, out / "results.json", indent=None)
    write_json_atomic(metrics, out / "metrics.json")
    return Evaluation(metrics, out, pictures)


def eval_entry(coco: dict, person, record) -> dict:
    """One results entry: the person as `posecal predict` writes it (PersonPose.to_dict: qualities,
    visibility, in_frame, radius, pose source, box score) with the COCO fields pycocotools scores (image id,
    category, keypoints with the confidence eval was asked to write, score by the chosen mode x box score) and
    the file name, which `posecal calibrate --images` crops again for posecal's evidence on these results."""
    return person.to_dict() | coco | {"file_name": record.file_name}


def _refuse_unusable(cfg: EvalConfig, mcfg) -> None:
    """A model this evaluation cannot run, in one line, before any picture is posed."""
    require_coco_keypoints(mcfg, cfg.model)
    if cfg.decode == "movenet" and default_decode(mcfg) != "movenet":
        raise PosecalInputError(f"--decode movenet needs a MoveNet model; {cfg.model or 'the default model'} is "
                                f"{mcfg.backbone} (use dark, argmax or soft_argmax)")


def _nobody_detected(cfg: EvalConfig, out, truth: dict, skips: Skips, t0: float) -> Evaluation:
    """A detections file without a person in it (a detector that found nobody): an empty results.json and the
    metrics that follow, every GT person missed (AP 0), instead of a refusal that breaks a pipeline."""
    mode = cfg.score_mode or "oks"
    metrics = {"num_instances": 0, "num_skipped": 0, "invalid_entries": skips.summary(),
               "boxes": "detections", "flip_test": cfg.flip, "orientations": cfg.orientations,
               "num_gt_persons": sum(1 for a in truth["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0),
               "score_mode": mode, "ap": {mode: 0.0}, "ap50": {mode: 0.0}, "ap75": {mode: 0.0}, "ar": {mode: 0.0},
               "seconds": round(time.time() - t0, 2)}
    write_json_atomic([], out / "results.json", indent=None)
    write_json_atomic(metrics, out / "metrics.json")
    return Evaluation(metrics, out, None)
