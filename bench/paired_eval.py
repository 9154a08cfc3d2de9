"""Two `posecal eval` runs of the same persons compared with their noise (issue 55 item 6: int8 against float).

    python bench/paired_eval.py FLOAT_EVAL_DIR INT8_EVAL_DIR [--annotations val.json] [--draws 60]

Reads each folder's results.json. AP: the second run's AP minus the first's on half-samples of the photographs
(--draws draws without replacement), their spread scaled to the whole set (sd / sqrt 2), beside the first run's AP
spread the same way: a difference inside a few of the former is no difference. Keypoint and pose ECE: each run's
95 % bootstrap interval by photograph (posecal.metrics.calibration.ece_interval) and the floor's 90th percentile
(what a perfectly calibrated predictor shows on as many samples, ece_floor). Visibility: ternary macro F1 and
binary (labelled or not) F1. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from posecal.calibration.quality import truth_of  # noqa: E402
from posecal.metrics.calibration import ece, ece_floor, ece_interval  # noqa: E402
from posecal.metrics.coco_ap import coco_keypoint_ap, load_coco_gt  # noqa: E402

VAL = ROOT.parent / "shared" / "data" / "coco-val2017-crops" / "annotations" / "val.json"


def figures(results: dict, ids, anns, groups, gt) -> dict:
    kp = np.array([np.array(results[i]["keypoints"]).reshape(-1, 3)[:, :2] for i in ids])
    truth = np.array([np.array(anns[i]["keypoints"]).reshape(-1, 3) for i in ids], float)
    ks, labelled, oks = truth_of(kp, truth, np.array([anns[i]["area"] for i in ids]))
    kq = np.array([results[i]["keypoint_quality"] for i in ids])
    pq = np.array([results[i]["pose_quality"] for i in ids])
    vis, v = np.array([results[i]["visibility"] for i in ids]), truth[..., 2].astype(int)
    has = np.isfinite(oks)
    kgroups = np.repeat(groups[:, None], kq.shape[1], 1)[labelled]
    f1 = [2 * ((vis == c) & (v == c)).sum() / max((vis == c).sum() + (v == c).sum(), 1) for c in range(3)]
    tp = ((vis > 0) & (v > 0)).sum()
    out = {"ap": coco_keypoint_ap(gt, list(results.values()))["ap"],
           "keypoint_ece": ece(kq[labelled], ks[labelled]),
           "keypoint_ece_interval": list(ece_interval(kq[labelled], ks[labelled], kgroups)),
           "keypoint_ece_floor_p90": ece_floor(kq[labelled], ks[labelled])[1],
           "pose_ece": ece(pq[has], oks[has]), "pose_ece_interval": list(ece_interval(pq[has], oks[has], groups[has])),
           "pose_ece_floor_p90": ece_floor(pq[has], oks[has])[1],
           "visibility_f1_macro": float(np.mean(f1)),
           "visibility_binary_f1": float(2 * tp / max((vis > 0).sum() + (v > 0).sum(), 1))}
    return {k: [round(float(x), 4) for x in val] if isinstance(val, list) else round(float(val), 4)
            for k, val in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs=2, metavar="EVAL_DIR", help="two `posecal eval --out` folders: reference, other")
    ap.add_argument("--annotations", default=str(VAL))
    ap.add_argument("--draws", type=int, default=60)
    args = ap.parse_args()
    data = json.loads(Path(args.annotations).read_text())
    gt = load_coco_gt(data)
    anns = {a["image_id"]: a for a in data["annotations"]}
    photo = {a["image_id"]: a.get("orig_image_id", a["image_id"]) for a in data["annotations"]}
    ids = sorted(anns)
    groups = np.array([photo[i] for i in ids])
    runs = [{r["image_id"]: r for r in json.loads((Path(d) / "results.json").read_text())} for d in args.runs]
    out = {name: figures(r, ids, anns, groups, gt) for name, r in zip(args.runs, runs)}
    rng = np.random.default_rng(0)
    photos = np.unique(groups)
    diffs, first = [], []
    for _ in range(args.draws):
        picked = set(rng.choice(photos, len(photos) // 2, replace=False).tolist())
        sub = [i for i in ids if photo[i] in picked]
        a, b = (coco_keypoint_ap(gt, [r[i] for i in sub if i in r], sub)["ap"] for r in runs)
        diffs.append(b - a)
        first.append(a)
    out["ap_difference"] = round(out[args.runs[1]]["ap"] - out[args.runs[0]]["ap"], 3)
    out["ap_difference_sd"] = round(float(np.std(diffs) / np.sqrt(2)), 3)
    out["ap_sd"] = round(float(np.std(first) / np.sqrt(2)), 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
