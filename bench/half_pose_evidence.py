"""Can what `predict` reports tell a half pose from a whole one? (issue 84, item 5)

    python bench/half_pose_evidence.py runs/reported/val.pkl runs/reported/lspet.pkl

A half pose covers part of its person (bench/reported_poses.py's `half`: a box cut at the waist, at least two of
the person's visible keypoints beyond it); it is rated far above its OKS (LSPET: mean Q 0.67 against OKS 0.42).
Each candidate below is evidence the product has at run time (no truth), added in turn to the reported-pose map's
features (posecal/calibration/reported.py; one-sided: it can only lower Q). The map is fitted on one world's rows
and judged on the other's (both ways), against the map as shipped fitted the same way; printed per candidate: how
well it ranks the half poses (AUROC), and the judged world's ECE, Pearson r, share wrong among Q >= 0.7 and the
half poses' mean Q against their OKS. The rows are bench/reported_poses.py `run`'s.

Candidates (per pose, each 0 where there is no evidence):
- `absent_inside`: mean p(not labelled) x in_frame: keypoints the model calls absent though inside the picture;
- `absent_beyond_box`: the share of keypoints called absent that lie outside the box and inside the picture;
- `absent_box_inside`: mean p(not labelled) where the box touches no edge of the picture;
- `absent_at_box_edge`: the share of keypoints called absent that lie in the outer tenth of the box, inside the
  picture (where a box cut at the waist leaves the legs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))
from fit_reported_quality import picture_features  # noqa: E402
from reported_poses import calibration_line, load_rows, score_row  # noqa: E402

from posecal.calibration.conditional import edges_touched  # noqa: E402
from posecal.calibration.reported import fit_reported_quality  # noqa: E402
from posecal.metrics.calibration import auroc  # noqa: E402
from posecal.metrics.reported import UNCOVERED  # noqa: E402

CANDIDATES = ("absent_inside", "absent_beyond_box", "absent_box_inside", "absent_at_box_edge")
ABSENT = 0.5        # a keypoint called absent: p(not labelled) above this (the visibility rule's threshold)
BOX_EDGE = 0.1      # the outer band of a box, as a share of its width or height


def candidates(row: dict) -> np.ndarray:
    """(P, len(CANDIDATES)) the candidate evidence of each pose of one picture (module docstring)."""
    w, h = row["size"]
    out = []
    for p in row["people"]:
        absent_p = np.asarray(p["visibility_probs"])[:, 0]
        xy, (x, y, bw, bh) = np.asarray(p["keypoints"]), p["box"]
        absent = absent_p > ABSENT
        in_picture = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        beyond = (xy[:, 0] < x) | (xy[:, 0] > x + bw) | (xy[:, 1] < y) | (xy[:, 1] > y + bh)
        edge = (np.minimum(xy[:, 0] - x, x + bw - xy[:, 0]) < BOX_EDGE * bw) | \
               (np.minimum(xy[:, 1] - y, y + bh - xy[:, 1]) < BOX_EDGE * bh)
        touches = edges_touched(np.asarray(p["box"])[None], np.array([[w, h]]))[0].any()
        k = len(absent_p)
        out.append([float((absent_p * np.asarray(p["in_frame"])).mean()),
                    float((absent & beyond & in_picture).sum() / k),
                    0.0 if touches else float(absent_p.mean()),
                    float((absent & edge & in_picture).sum() / k)])
    return np.array(out).reshape(-1, len(CANDIDATES))


def table(rows: list[dict]) -> dict:
    """Every scored pose of `rows`: the map's features then the candidates, the crop's quality, the one-to-one
    target (in the crop quality's order, as tools/fit_reported_quality.py scores them) and the half flag."""
    cols = {k: [] for k in ("features", "raw", "target", "half")}
    for r in rows:
        if not r["people"]:
            continue
        q = np.array([p["raw_quality"] for p in r["people"]])
        s = score_row(r, q)
        use = s.kind != UNCOVERED
        cols["features"].append(np.c_[picture_features(r), candidates(r)][use])
        cols["raw"].append(q[use])
        cols["target"].append(s.target[use].astype(float))
        cols["half"].append(s.half[use].astype(bool))
    return {k: np.concatenate(v) for k, v in cols.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs=2, help="two worlds' rows (bench/reported_poses.py run): each fits, the other judges")
    args = ap.parse_args()
    worlds = {Path(p).stem: table(load_rows(p)) for p in args.rows}
    shipped = worlds[next(iter(worlds))]["features"].shape[1] - len(CANDIDATES)
    for name, t in worlds.items():
        ranks = {c: round(auroc(t["features"][:, shipped + i], t["half"]), 3) for i, c in enumerate(CANDIDATES)}
        print(f"{name}: {int(t['half'].sum())} half poses of {len(t['half'])}; AUROC of each candidate: {ranks}")
    for label, extra in [("as shipped", [])] + [(f"+ {c}", [shipped + i]) for i, c in enumerate(CANDIDATES)]:
        cols = list(range(shipped)) + extra
        for (fit_name, fit), (judge_name, judge) in (tuple(worlds.items()), tuple(worlds.items())[::-1]):
            m = fit_reported_quality(fit["features"][:, cols], fit["raw"], fit["target"])
            q = m(judge["features"][:, cols], judge["raw"])
            line, half = calibration_line(q, judge["target"]), judge["half"]
            weight = f", weight {m.score.weights[-1]:.3f}" if extra else ""
            print(f"{label:22s} fitted on {fit_name:6s} judged on {judge_name:6s}: ECE {line['ece']} (floor "
                  f"{line['floor']}), r {line['pearson']}, wrong among Q>=0.7 {line['confident_wrong_share']}; half "
                  f"poses mean Q {q[half].mean():.3f} OKS {judge['target'][half].mean():.3f}{weight}")


if __name__ == "__main__":
    main()
