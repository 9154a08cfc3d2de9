"""Does a multi-scale test (the box at 0.9, 1.0 and 1.1 of its size, each with the flip test) pose more people
right than the box alone? (python lab/bench/scale_ensemble.py [--limit N] [--lspet 600] [--threads 2])

Issue 62 asks for poses of hard people (small, half-hidden, crowded) right given the labelled box. The pseudo-labels
of lab/tools/pseudo_labels.py use this three-scale ensemble; this bench asks whether it would serve as an inference
option: posed right (OKS >= 0.5) and mean OKS with the scale-1.0 answer against the mean of the three scales'
keypoints, on val's even and odd ids and on LSPET's last persons (another world), the shipped `accurate` graph
(float, flip). Three crops a person: three times the network's time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lab" / "tools"))
from pseudo_labels import SCALES, ensemble  # noqa: E402

from posecal.data.coco import load_coco_persons, load_lspet, read_image  # noqa: E402
from posecal.inference.record_posing import RecordPosing, record_predictor  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402
from posecal.metrics.oks import oks  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
MODEL = "accurate-float"     # the float graph: the figures of bench/hard_people.py's float runs


def answers(estimator, records) -> list[np.ndarray]:
    """(S, K, 2) keypoints at each scale, per record."""
    out, image, path = [], None, None
    for r in records:
        if r.image_path != path:
            image, path = read_image(r.image_path), r.image_path
        out.append(ensemble(estimator, image, r.bbox)[0])
    return out


def score(records, kps) -> dict:
    """Posed right and mean OKS of the scale-1.0 answer and of the scales' mean, overall and by kind."""
    one = SCALES.index(1.0)
    rows = {"single": [], "mean": []}
    for r, kp in zip(records, kps):
        for name, xy in (("single", kp[one]), ("mean", kp.mean(0))):
            rows[name].append(float(oks(xy, r.keypoints[:, :2], r.keypoints[:, 2], r.area)))
    size = np.sqrt([max(r.area, 1.0) for r in records])
    labelled = np.array([(r.keypoints[:, 2] > 0).sum() for r in records])
    groups = {"all": np.ones(len(records), bool), "small (sqrt area < 48)": size < 48, "1-9 keypoints": labelled < 10}
    out = {}
    for g, m in groups.items():
        out[g] = {"n": int(m.sum())}
        for name, v in rows.items():
            v = np.asarray(v)[m]
            out[g][name] = {"right": round(float((v >= 0.5).mean()), 4) if len(v) else None,
                            "mean_oks": round(float(v.mean()), 4) if len(v) else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="first N val persons (0: all)")
    ap.add_argument("--lspet", type=int, default=600, help="LSPET's last N persons (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scale_ensemble.json")
    args = ap.parse_args()
    estimator = record_predictor(RecordPosing(model=MODEL, threads=args.threads)).estimator
    val = load_coco_persons(SHARED / "coco-val2017-crops" / "annotations" / "val.json",
                            SHARED / "coco-val2017-crops" / "images")[: args.limit or None]
    worlds = {"val even ids": [r for r in val if r.ann_id % 2 == 0], "val odd ids": [r for r in val if r.ann_id % 2]}
    if args.lspet:
        worlds["LSPET last persons"] = load_lspet(SHARED / "lspet" / "annotations" / "lspet.json",
                                                  SHARED / "lspet" / "images")[-args.lspet:]
    result, t0 = {}, time.time()
    for name, records in worlds.items():
        result[name] = score(records, answers(estimator, records))
    print(f"scales {SCALES}, {MODEL}, flip; {time.time() - t0:.0f} s")
    print(f"{'world':<20}{'group':<24}{'n':>5} | right: single    mean | mean OKS: single    mean")
    for w, groups in result.items():
        for g, v in groups.items():
            print(f"{w:<20}{g:<24}{v['n']:>5} | {v['single']['right']!s:>13} {v['mean']['right']!s:>7} | "
                  f"{v['single']['mean_oks']!s:>16} {v['mean']['mean_oks']!s:>7}")
    command = "python lab/bench/scale_ensemble.py" + (f" --limit {args.limit}" if args.limit else "")
    write_json_atomic({"command": command, "scales": SCALES, "model": MODEL + " (flip)", "worlds": result}, args.json)


if __name__ == "__main__":
    main()
