"""The visibility decision rule, measured on a labelled results file (python bench/visibility_rule.py R.json A.json).

R.json: results with `visibility_probs` (e.g. `posecal eval`'s results.json, GT boxes); A.json: its COCO
ground truth. Prints, over the keypoints of the matched persons:
- binary visibility (labelled vs not) F1 when "not labelled" is the most likely class (the rule posecal uses);
- not-labelled recall at precision >= 0.85 and >= 0.9 (sweeping a threshold on p(not labelled)): what a user
  who sets their own threshold on `visibility_probs` can get;
- occluded F1 and ternary weighted F1 for the rule "occluded when p(occluded) >= r x p(visible)" over r
  (posecal.inference.scoring.OCCLUDED_OVER_VISIBLE is the r that ships), with the absent decision as above.
"""
from __future__ import annotations

import argparse

import numpy as np

from posecal.evaluation.results import gt_persons, load_results, match
from posecal.inference.scoring import OCCLUDED_OVER_VISIBLE, visibility_classes
from posecal.metrics.coco_ap import load_coco_gt
from posecal.metrics.visibility import binary_report, classification_report

RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


def recall_at_precision(truth: np.ndarray, score: np.ndarray, precision: float) -> tuple[float, float]:
    """Highest recall of `truth` among thresholds on `score` whose precision is >= `precision`, and the
    threshold."""
    order = np.argsort(-score)
    t = truth[order]
    tp = np.cumsum(t)
    prec = tp / np.arange(1, len(t) + 1)
    ok = np.flatnonzero(prec >= precision)
    if not len(ok):
        return 0.0, float("nan")
    i = ok.max()
    return float(tp[i] / max(t.sum(), 1)), float(score[order][i])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("annotations")
    args = ap.parse_args()
    res = load_results(args.results)
    idx, g, _ = match(res, gt_persons(load_coco_gt(args.annotations)))
    probs = np.array([res.entries[i]["visibility_probs"] for i in idx], np.float64)
    v = g[..., 2].astype(int).ravel()
    p = probs.reshape(-1, 3)
    absent = v == 0
    b = binary_report(~absent, p.argmax(-1) > 0)
    print(f"{len(idx)} persons, {v.size} keypoints: not labelled {absent.mean():.3f}, occluded {(v == 1).mean():.3f}")
    print(f"binary visibility (labelled vs not, argmax): F1 {b['f1']:.3f} (P {b['precision']:.3f} / R {b['recall']:.3f})")
    a = classification_report(absent, p.argmax(-1) == 0, 2)
    print(f"not labelled (argmax): precision {a['precision'][1]:.3f}, recall {a['recall'][1]:.3f}")
    for target in (0.85, 0.9):
        r, th = recall_at_precision(absent, p[:, 0], target)
        print(f"not labelled recall at precision >= {target}: {r:.3f} (p(not labelled) >= {th:.3f})")
    print("| r (occluded when p(occ) >= r x p(vis)) | occluded F1 | occluded P / R | ternary weighted F1 | accuracy |")
    print("|---|---|---|---|---|")
    for r in sorted(set(RATIOS) | {OCCLUDED_OVER_VISIBLE}):
        rep = classification_report(v, visibility_classes(p, r), 3)
        mark = " (ships)" if r == OCCLUDED_OVER_VISIBLE else ""
        print(f"| {r:g}{mark} | {rep['f1'][1]:.3f} | {rep['precision'][1]:.3f} / {rep['recall'][1]:.3f} | "
              f"{rep['f1_weighted']:.3f} | {rep['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
