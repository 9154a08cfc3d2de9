"""Calibration quality per calibrator input set (python bench/calibrator_inputs.py --fit R.json ... --report ...).

What each calibrator input adds: `posecal calibrate fit` on an estimator's results on one labelled split,
reported on another, for the input sets (a) base (raw score, keypoint type, person size), (b) + posecal's
trust model's keypoint quality of the estimator's keypoint, (c) + its visibility probabilities, (d) all; plus the raw estimator, apply time per person with and without images, and the
calibrator's file size.

Usage: python bench/calibrator_inputs.py --fit R_train.json --fit-annotations train.json
           --report R_val.json --report-annotations val.json --images DIR [--evidence-cache PREFIX] [--threads 1]

The results files come from e.g. `posecal run-peer movenet` (GT boxes). Metrics are those of
`posecal eval --results` (metrics.json's contract) on the calibrated report split: keypoint ECE (keypoint
quality), pose-score ECE and Pearson vs true OKS (pose quality), binary visibility F1 (labelled vs not), radius
coverage at 0.9 (all labelled keypoints; min-max over keypoint types). The raw row uses the estimator's own
confidences and score, and "confidence > 0.2" as labelled. --evidence-cache PREFIX keeps posecal's evidence
in PREFIX_fit.npz / PREFIX_report.npz so that the table can be printed again without running posecal
(a convenience of this script; posecal itself keeps evidence in memory only).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from posecal.evaluation.calibrate_results import fit_results_calibrator, results_evidence
from posecal.evaluation.evidence import Evidence, PosecalEvidence
from posecal.data.coco import read_json
from posecal.metrics.coco_ap import load_coco_gt
from posecal.metrics.visibility import binary_report
from posecal.evaluation.results import gt_persons, load_results, match, results_from_entries, results_metrics

INPUT_SETS = (("(a) base", ()), ("(b) + trust keypoint quality", ("trust keypoint quality",)),
              ("(c) + trust visibility probs", ("trust visibility probs",)),
              ("(d) all", ("trust keypoint quality", "trust visibility probs")))
RAW_LABELLED = 0.2
TIMED = 100   # persons timed for apply with images


def evidence_for(res, results, annotations, images, source, cache: Path | None):
    if cache is not None and cache.is_file():
        z = np.load(cache)
        return Evidence(z["keypoint_quality"], z["visibility_probs"], z["pose_quality"])
    data = read_json(annotations)
    id_to_file = {im["id"]: im["file_name"] for im in data["images"]}
    ev, _ = results_evidence(res, results, images, source, id_to_file)
    if cache is not None:
        np.savez(cache, keypoint_quality=ev.keypoint_quality, visibility_probs=ev.visibility_probs,
                 pose_quality=ev.pose_quality)
    return ev


def row(m: dict, kq: str, pose: str, f1: float) -> list:
    r = m.get("keypoint_radius")
    per = [v for v in (r or {}).get("coverage_per_keypoint", {}).values() if v is not None]
    return [m["keypoint_ece"][kq], m["pose_score_ece"][pose], m["pose_score_pearson"][pose], f1,
            f"{r['coverage']:.3f} ({min(per):.3f}-{max(per):.3f})" if r else "-", f"{m['ap'][pose]:.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", required=True)
    ap.add_argument("--fit-annotations", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--report-annotations", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--evidence-cache", help="PREFIX of .npz files holding posecal's evidence between runs")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fit_res, rep_res = load_results(args.fit), load_results(args.report)
    fit_gt, rep_gt = load_coco_gt(args.fit_annotations), load_coco_gt(args.report_annotations)
    t0 = time.perf_counter()
    source = PosecalEvidence()
    load_s = time.perf_counter() - t0
    cache = (lambda s: Path(f"{args.evidence_cache}_{s}.npz")) if args.evidence_cache else (lambda s: None)
    fit_ev = evidence_for(fit_res, args.fit, args.fit_annotations, args.images, source, cache("fit"))
    rep_ev = evidence_for(rep_res, args.report, args.report_annotations, args.images, source, cache("report"))

    idx, g, _ = match(rep_res, gt_persons(rep_gt))
    lab = g[..., 2] > 0
    raw_m = results_metrics(rep_res, rep_gt)
    raw_f1 = binary_report(lab, rep_res.confidence[idx] > RAW_LABELLED)["f1"]
    header = ["inputs", "keypoint ECE", "pose ECE", "pose Pearson", "vis. F1", "radius coverage", "AP", "file KB",
              "apply ms/person (maps)"]
    rows = [["raw estimator", *row(raw_m, "confidence", "score", raw_f1), "-", "-"]]
    for name, inputs in INPUT_SETS:
        cal = fit_results_calibrator(fit_res, fit_gt, evidence=fit_ev if inputs else None, evidence_inputs=inputs,
                                     evidence_model=source.description)
        maps_ms = float("inf")
        for _ in range(3):   # best of 3: the machine may be busy
            t = time.perf_counter()
            entries = cal.apply(rep_res, rep_ev if inputs else None)
            maps_ms = min(maps_ms, (time.perf_counter() - t) * 1000 / len(entries))
        m = results_metrics(results_from_entries(entries, "calibrated"), rep_gt)
        f1 = m["visibility"]["binary"]["f1"]
        size_kb = len(json.dumps(cal.to_dict()).encode()) / 1024
        rows.append([name, *row(m, "keypoint_quality", "pose_quality", f1), f"{size_kb:.1f}", f"{maps_ms:.2f}"])

    # apply with images: posecal's evidence on persons it has not seen (no cache), then the maps
    fresh = PosecalEvidence()
    sub = results_from_entries(rep_res.entries[:TIMED], args.report)
    t = time.perf_counter()
    results_evidence(sub, args.report, args.images, fresh)
    ev_ms = (time.perf_counter() - t) * 1000 / len(sub.entries)

    print(f"fit: {args.fit} ({len(fit_res.entries)} results); report: {args.report} ({len(rep_res.entries)} "
          f"results, {len(idx)} matched); threads {args.threads}")
    fmt = lambda r: " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r)  # noqa: E731
    print("| " + fmt(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + fmt(r) + " |")
    print(f"apply with images: + {ev_ms:.0f} ms/person for posecal's evidence ({TIMED} persons, the trust model in "
          f"PyTorch, {args.threads} thread(s)); loading posecal's model once: {load_s:.1f} s")


if __name__ == "__main__":
    main()
