"""The `posecal audit` job: every labelled person of a COCO keypoint file estimated once (posecal's calibrated
model on the GT boxes by default, or any estimator's calibrated results), its labels held against the
estimate (posecal/audit/findings.py), and the findings written as OUT/findings.json (highest score first)
and OUT/report.html (a gallery of the top findings to accept or reject at a glance).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecal.audit.estimates import Estimates, from_predictions, from_result_set, from_results_file
from posecal.audit.fiftyone_export import check_fiftyone_output, write_audit_fiftyone
from posecal.audit.findings import KINDS, AuditThresholds, find_label_errors
from posecal.data.coco import load_coco_persons, read_json
from posecal.errors import PosecalInputError
from posecal.evaluation.results import ResultSet
from posecal.inference.opener import decide_precision
from posecal.inference.record_posing import RecordPosing, opened_posing, pose_records, posing_threads
from posecal.models.shipped import packaged_graph
from posecal.io import check_output_dir, write_json_atomic
from posecal.parallel import default_threads
from posecal.parallel.runner import Engine
from posecal.skeleton import NUM_KEYPOINTS

FINDINGS = "findings.json"


@dataclass
class AuditConfig:
    annotations: str
    out: str
    images: str | None = None      # needed to run the model; for --results only the report's pictures need it
    model: str | None = None       # None: the shipped default model
    boxes: str | None = None       # COCO detection results; None: the GT boxes
    results: str | None = None     # calibrated COCO keypoint results of any estimator instead of the model
    flip: bool = True
    batch_size: int = 32
    threads: int = 2
    device: str = "cpu"            # where the model runs: "cuda" (a GPU), the CPU with one warning line where it cannot
    precision: str = "auto"        # a shipped model's graphs on the CPU (devices.choose_precision), decided here once
    progress: bool = True
    report_top: int = 60           # findings drawn in report.html
    thresholds: AuditThresholds = AuditThresholds()
    engine: Engine | None = None      # None: posed in this process; else through the runner on that engine
                                      # (--engine ray: Ray actors; inference/record_posing.py), the findings
                                      # computed here all the same
    fiftyone: str | None = None       # also a folder FiftyOne loads (audit/fiftyone_export.py): the labels with
                                      # the findings' scores on them; needs images


def read_annotations(path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise PosecalInputError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations')")
    return data


def annotation_labels(data: dict, annotation_ids, source) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, K, 3), areas (N,)) of the annotations with these ids, in their order."""
    by_id = {a.get("id"): a for a in data["annotations"]}
    labels, areas = [], []
    for i in annotation_ids:
        a = by_id.get(int(i))
        if a is None:
            raise PosecalInputError(f"{source}: no annotation with id {int(i)}")
        try:
            labels.append(np.asarray(a["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3))
            areas.append(float(a.get("area", a["bbox"][2] * a["bbox"][3])))
        except (KeyError, TypeError, ValueError, IndexError):
            raise PosecalInputError(f"{source}: annotation {int(i)}: 'keypoints' must be {NUM_KEYPOINTS}x3 numbers "
                                    "and 'area' or 'bbox' given") from None
    return np.array(labels).reshape(-1, NUM_KEYPOINTS, 3), np.array(areas)


def estimate_with_model(cfg: AuditConfig) -> Estimates:
    """posecal's calibrated estimate of every labelled person of cfg.annotations (one network pass each)."""
    # a shipped model with graphs runs its packaged graph; a .pt file in PyTorch (no export for a one-off audit);
    # an exported .onnx file in onnxruntime
    precision, _ = decide_precision(cfg.model, cfg.precision, None, cfg.device, cfg.flip)
    backend = "onnx" if packaged_graph(cfg.model, True, cfg.device, precision) is not None else "torch"
    # one settings form: the posing's, the workers' and the fingerprint's; threads per process (on Ray per actor)
    posing = RecordPosing(cfg.model, backend, cfg.flip, posing_threads(cfg.engine, cfg.threads or default_threads(),
                                                                       cfg.threads),
                          batch_size=cfg.batch_size, device=cfg.device, precision=precision)
    with opened_posing(posing) as predictor:   # the model opened once in this process: its worker poses with it
        calibration = predictor.calibration
        if calibration is None or not predictor.config.quality_heads:
            raise PosecalInputError(f"{cfg.model or 'the default model'}: the audit needs a model with quality "
                                    "heads and a stored calibration (`posecal pack --calibrate-on`)")
        records = load_coco_persons(cfg.annotations, cfg.images, boxes_file=cfg.boxes)
        if not records:
            raise PosecalInputError(f"{cfg.boxes or cfg.annotations}: no person to audit")
        pred = pose_records(records, posing, cfg.engine, Path(cfg.out) / FINDINGS, cfg.progress)
    if not pred.records:
        raise PosecalInputError(f"{cfg.images}: none of the {len(records)} persons' images could be read")
    coverage = calibration.radii.target
    if cfg.boxes is None:
        return from_predictions(pred, coverage)
    # detector boxes: the estimates are matched to the labelled persons as results files are
    res = ResultSet([{"bbox": [float(v) for v in r.bbox]} for r in pred.records],
                    np.array([r.image_id for r in pred.records]), pred.keypoints, pred.heatmap_scores,
                    pred.oks * np.array([r.score for r in pred.records]), pred.oks, pred.opks, None,
                    pred.visibility_probs, pred.keypoint_radius)
    return from_result_set(res, cfg.annotations, cfg.images, str(cfg.boxes), coverage)


def audit(cfg: AuditConfig) -> dict:
    """The job: OUT/findings.json and OUT/report.html (and the --fiftyone folder); returns a summary (counts per
    kind, seconds)."""
    from posecal.audit.gallery import write_gallery

    out = check_output_dir(cfg.out, "--out")
    if cfg.fiftyone:
        check_fiftyone_output(cfg.fiftyone, cfg.images)
    t0 = time.time()
    data = read_annotations(cfg.annotations)
    if cfg.results:
        est = from_results_file(cfg.results, cfg.annotations, cfg.images)
    else:
        if not cfg.images:
            raise PosecalInputError("--images is needed to run a model (or give --results)")
        est = estimate_with_model(cfg)
    labels, area = annotation_labels(data, est.annotation_ids, cfg.annotations)
    findings = find_label_errors(labels, area, est, cfg.thresholds)
    write_json_atomic(findings, Path(out) / FINDINGS)
    write_gallery(out / "report.html", findings[:cfg.report_top], est, labels, len(findings))
    if cfg.fiftyone:
        write_audit_fiftyone(cfg.annotations, cfg.images, findings, cfg.fiftyone)
    return {"persons": len(est.annotation_ids), "findings": len(findings),
            "per_kind": {k: sum(f["kind"] == k for f in findings) for k in KINDS},
            "seconds": round(time.time() - t0, 1)}
