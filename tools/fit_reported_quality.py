"""Fit the reported-pose quality (posecal/calibration/reported.py) on the poses the product reported on labelled
photographs, and judge it leave one world out.

    python bench/reported_poses.py run --world val --rows runs/reported/val.pkl      # (and lspet, train)
    python tools/fit_reported_quality.py --fit runs/reported/val.pkl [runs/reported/train.pkl] \
        --judge runs/reported/lspet.pkl [--out runs/reported/accurate_map.json --model accurate] [--json FILE]
    python tools/carry_reported_map.py accurate runs/reported/accurate_map.json   # into the shipped model

--model stamps the map with the digest of the network whose poses the rows hold (models/checkpoint.py
network_digest): a model applies only a map fitted for its own weights. The rows are `predict`'s defaults on still
photographs, which the map records as the runs it applies to (calibration/reported.py FITTED).

The rows must come from a product that reports the crop's own quality (`raw_quality`): each row's poses are
scored one to one in the order of that quality (posecal/metrics/reported.py), and the map is fitted to those
targets. Printed: on each --fit world the map cross-fitted by photograph (5 folds: each photo's poses rated by a
map fitted without it), on each --judge world the map fitted on all --fit rows; each beside the crop's own quality
on the same poses (ECE, its floor, Pearson r, share wrong among Q >= 0.7), and on --judge worlds beside the quality the
run that made the rows reported (the map it carried).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from reported_poses import calibration_line, load_rows, score_row  # noqa: E402

from posecal.calibration.reported import FEATURES, fit_reported_quality, reported_features  # noqa: E402
from posecal.metrics.reported import UNCOVERED  # noqa: E402

FOLDS = 5


def picture_features(row: dict) -> np.ndarray:
    people = row["people"]
    stack = lambda k: None if people[0][k] is None else np.stack([p[k] for p in people])  # noqa: E731
    pp = np.array([np.nan if p["person_probability"] is None else p["person_probability"] for p in people])
    return reported_features(stack("keypoints"), stack("box"), np.array([p["raw_quality"] for p in people]),
                             row["size"], stack("visibility_probs"), stack("in_frame"), pp,
                             np.array([p["box_score"] for p in people]), stack("keypoint_quality"))


def table(rows: list[dict]) -> dict:
    """Features, one-to-one target and photo of every scored pose of `rows` (in the crop quality's order)."""
    feats, target, photo, raw, ran = [], [], [], [], []
    for r in rows:
        people = r["people"]
        if not people:
            continue
        q = np.array([p["raw_quality"] for p in people])
        s = score_row(r, q)
        use = s.kind != UNCOVERED
        feats.append(picture_features(r)[use])
        target.append(s.target[use])
        photo += [f"{r['world']}:{r['photo']}"] * int(use.sum())
        raw.append(q[use])
        ran.append(np.array([p["quality"] for p in people])[use])
    return {"features": np.concatenate(feats), "target": np.concatenate(target).astype(float),
            "photo": np.array(photo), "raw": np.concatenate(raw), "ran": np.concatenate(ran)}


def cross_fitted(t: dict, l2: float) -> np.ndarray:
    photos = np.unique(t["photo"])
    fold = {p: i % FOLDS for i, p in enumerate(np.random.default_rng(0).permutation(photos))}
    f = np.array([fold[p] for p in t["photo"]])
    out = np.empty(len(f))
    for k in range(FOLDS):
        m = fit_reported_quality(t["features"][f != k], t["raw"][f != k], t["target"][f != k], l2)
        out[f == k] = m(t["features"][f == k], t["raw"][f == k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", nargs="+", required=True, help="rows to fit on (bench/reported_poses.py run)")
    ap.add_argument("--judge", nargs="*", default=[], help="rows of other worlds to judge on")
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--out", help="write the map fitted on every --fit row here")
    ap.add_argument("--model", help="with --out: the model whose poses the rows hold (its network digest is stamped)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    fit = {Path(p).stem: table(load_rows(p)) for p in args.fit}
    judge = {Path(p).stem: table(load_rows(p)) for p in args.judge}
    every = {k: np.concatenate([t[k] for t in fit.values()]) for k in ("features", "target", "photo", "raw")}
    model = fit_reported_quality(every["features"], every["raw"], every["target"], args.l2,
                                 fitted_on=" + ".join(fit))
    print("weights (per std):", {n: round(float(w), 3) for n, w in zip(FEATURES, model.score.weights)})
    figures = {}
    for name, t in fit.items():
        figures[name] = {"crop": calibration_line(t["raw"], t["target"]),
                         "reported, cross-fitted": calibration_line(cross_fitted(t, args.l2), t["target"])}
    for name, t in judge.items():
        figures[name] = {"crop": calibration_line(t["raw"], t["target"]),
                         "as the run reported it": calibration_line(t["ran"], t["target"]),
                         "reported": calibration_line(model(t["features"], t["raw"]), t["target"])}
    for name, lines in figures.items():
        for how, line in lines.items():
            print(f"{name} {how}: n {line['n']}, ECE {line['ece']} (floor {line['floor']}, p90 {line['floor_p90']}), "
                  f"r {line['pearson']}, mean Q {line['mean_q']} OKS {line['mean_oks']}, wrong among Q>=0.7 "
                  f"{line['confident_wrong_share']} of {line['confident']}")
    if args.out:
        if args.model:
            from posecal.models.checkpoint import load_model, network_digest

            model.weights = network_digest(load_model(args.model)[0])
        model.write(args.out)
        print(f"-> {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": model.to_dict(), "figures": figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
