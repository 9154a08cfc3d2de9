"""Add the conditional quality map (issue 46), or radii of their own for persons at the picture's edge (issue 53),
to a model file's calibration and write the result as a new file.

    python tools/fit_conditional_calibration.py IN.pt OUT.pt [--part conditional|edge-radii] [--work runs/conditions]

IN.pt: a packed model file (or a shipped name, e.g. accurate) whose calibration was fitted over the conditions
(`posecal pack --calibrate-on --conditions`). The map is fitted on the same conditions (val, val_noflip, val_cut,
val_jitter; posecal.evaluation.conditions.MIXTURE) on the outputs of IN.pt's own isotonic maps, which it is
applied after; every other part of the calibration (isotonic maps, visibility, radii, in_frame, video, person)
is kept as it is. `--part edge-radii` instead refits the conformal radii apart for persons whose box touches the
picture's edge and for the others (posecal.evaluation.conditions.add_edge_radii), on IN.pt's own isotonic maps'
outputs, and keeps every other part. The raw outputs come from bench/trust_conditions.py's cache in --work (run
there when missing). The cross-fitted figures per condition, before and after, are printed and stored in the
calibration's fit_info.

OUT.pt holds the same network, so judge it without running the network again:
    python bench/trust_conditions.py --model OUT.pt --raw-of IN.pt
(its `shipped` rows then are OUT.pt's calibration; val_cut2 and lspet_out are never fitted on).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from trust_conditions import build_runs  # noqa: E402

from posecal.calibration.quality import META_KEY, calibration_from_meta  # noqa: E402
from bench.lab.condition_judging import HELD_OUT_CUTS  # noqa: E402
from posecal.evaluation.conditions import (MIXTURE, add_conditional, add_edge_radii, condition_figures,  # noqa: E402
                                           cross_fit_over_conditions)
from posecal.models.checkpoint import atomic_save, model_file, read_torch_file  # noqa: E402

REPORTED = ("keypoint_ece", "pose_ece", "pose_pearson", "radius_coverage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="packed model file or shipped name, calibrated over the conditions")
    ap.add_argument("out", help="model file to write: the same with the conditional quality map (or edge radii)")
    ap.add_argument("--part", choices=("conditional", "edge-radii"), default="conditional",
                    help="what to add to the calibration")
    ap.add_argument("--work", default=str(ROOT / "runs" / "conditions"), help="bench/trust_conditions.py's cache")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    src = model_file(args.model)
    if Path(args.out).resolve() == src.resolve():
        raise SystemExit(f"{args.out}: write to another file than the model it is fitted for")
    ckpt = read_torch_file(src)
    cal = calibration_from_meta(ckpt.get("meta"), str(src))
    if cal is None:
        raise SystemExit(f"{src}: has no calibration to add {args.part} to")
    edge = args.part == "edge-radii"
    if (cal.edge_radii if edge else cal.conditional) is not None:
        raise SystemExit(f"{src}: already has {args.part}; fit on a file without")
    runs, _ = build_runs(args.model, Path(args.work), 1000, False, threads=args.threads)
    mixture = [r for r in runs if r.name in MIXTURE]
    judged = [r for r in runs if r.name in HELD_OUT_CUTS]
    report = {}
    for label, added in (("before", False), ("after", True)):     # cross-fitted, without and with the part
        outputs, ratios = cross_fit_over_conditions(mixture, conditional=added and not edge, judged=judged,
                                                    edge_radii=edge and added)
        for r, o, q in zip(mixture + judged, outputs, ratios):
            f = condition_figures(r, o, q)
            report.setdefault(r.name, {})[label] = {k: round(float(f[k]), 4) for k in REPORTED}
    shown = REPORTED[3:] if edge else REPORTED[:2]
    print(f"{'condition':<12}" + "".join(f"{k + ' ' + c:>24}" for k in shown for c in ("before", "after")))
    for name, by in report.items():
        print(f"{name:<12}" + "".join(f"{by[c][k]:>24.4f}" for k in shown for c in ("before", "after")))
    if edge:
        add_edge_radii(cal, mixture)
        if cal.edge_radii is None:
            raise SystemExit("too few persons at the picture's edge among the conditions for radii of their own")
    else:
        add_conditional(cal, mixture)
    cal.fit_info["edge_radii" if edge else "conditional"]["cross_fitted_conditions"] = report
    ckpt["meta"][META_KEY] = cal.to_dict()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
