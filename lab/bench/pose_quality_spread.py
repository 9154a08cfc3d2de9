"""Pose quality against the true OKS, with the truth's spread (python lab/bench/pose_quality_spread.py RESULTS.json ...
[--annotations val.json]).

Why: a Pearson correlation falls when the truth spreads less, at the same error. When a better pose network makes
most poses good, the pose quality's Pearson with the true OKS can fall while its error does not; this prints both
(MODEL_CARD.md, "Fine-tuning on a GPU"). RESULTS.json: `posecal eval`'s results.json (GT boxes), matched to the
truth as metrics.json's figures are (posecal.evaluation.results.match).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from posecal.evaluation.results import gt_persons, load_results, match
from posecal.metrics.coco_ap import load_coco_gt
from posecal.metrics.oks import opks

VAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco-val2017-crops" / "annotations" / "val.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--annotations", default=str(VAL))
    args = ap.parse_args()
    persons = gt_persons(load_coco_gt(args.annotations))
    print("results | true OKS mean / std | pose quality - true OKS: mean abs / RMS / mean | Pearson")
    for path in args.results:
        res = load_results(path)
        idx, g, area = match(res, persons)
        lab = g[..., 2] > 0
        true = (opks(res.keypoints[idx], g[..., :2], area) * lab).sum(1) / np.maximum(lab.sum(1), 1)
        err = res.pose_quality[idx] - true
        print(f"{path} | {true.mean():.3f} / {true.std():.3f} | {np.abs(err).mean():.3f} / "
              f"{np.sqrt((err ** 2).mean()):.3f} / {err.mean():+.3f} | {np.corrcoef(res.pose_quality[idx], true)[0, 1]:.3f}")


if __name__ == "__main__":
    main()
