"""When is a keypoint absent? The keypoint quality at which a keypoint the model places well is called present
whatever p(absent) says (calibration.quality.PLACED_AT), chosen on two worlds and judged on a third (issue 84).

    python bench/flip_evidence.py collect --world val --rows runs/flip/val.npz
    python bench/flip_evidence.py collect --world lspet --persons=-1200:-600 --rows runs/flip/lspet_choose.npz
    python bench/flip_evidence.py collect --world lspet --rows runs/flip/lspet.npz
    python bench/absent_rule.py --choose runs/flip/val.npz runs/flip/lspet_choose.npz --judge runs/flip/lspet.npz

Labelled boxes, `accurate` as shipped (flip test, calibrated). Per candidate: absent = p(absent) > 0.5 unless the
keypoint quality reaches the candidate where p(inside the picture) >= 0.5; on each world the labelled-or-not
accuracy, the labelled keypoints called absent and the unlabelled ones called absent (LSPET: its 12 limb joints
only; it labels no face). The candidate chosen has the best mean accuracy over the --choose worlds: COCO leaves out
the joints its annotators cannot place, LSPET labels every limb joint, and a rule for users of both weighs the two
alike. --judge worlds chose nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CANDIDATES = (1.01, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5)   # 1.01: the probabilities alone


def calls(rows: dict, placed_at: float, limbs_only: bool) -> tuple[float, float, float]:
    """(labelled-or-not accuracy, labelled called absent, unlabelled called absent) on one world, by
    calibration.quality.occluded_rule at `placed_at`."""
    from posecal.calibration.quality import occluded_rule

    absent = occluded_rule(rows["vis"], 2.0, rows["opks"], rows["in_frame"], placed_at) == 0
    labelled = rows["gtv"] > 0
    if limbs_only:
        absent, labelled = absent[:, 5:], labelled[:, 5:]
    unlabelled = absent[~labelled].mean() if (~labelled).any() else float("nan")
    return float((absent == ~labelled).mean()), float(absent[labelled].mean()), float(unlabelled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--choose", type=Path, nargs="+", required=True)
    ap.add_argument("--judge", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    worlds = [(p, dict(np.load(p)), "lspet" in p.stem) for p in args.choose + args.judge]
    print("placed_at | " + " | ".join(f"{p.stem}{' (judge)' if p in args.judge else ''}: accuracy, labelled "
                                     f"absent, unlabelled absent" for p, _, _ in worlds) + " | mean accuracy (choose)")
    best = None
    for t in CANDIDATES:
        figs = [calls(rows, t, limbs) for _, rows, limbs in worlds]
        mean = float(np.mean([f[0] for f, (p, _, _) in zip(figs, worlds) if p in args.choose]))
        best = max(best or (mean, t), (mean, t))
        print(f"{t:9.2f} | " + " | ".join(f"{a:.4f} {100 * lab:.1f} % {100 * un:.1f} %" for a, lab, un in figs)
              + f" | {mean:.4f}")
    print(f"chosen: {best[1]} (mean accuracy {best[0]:.4f} over {', '.join(p.stem for p in args.choose)})")


if __name__ == "__main__":
    main()
