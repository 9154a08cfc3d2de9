"""Does p(person) as reported mean what it says? (issue 63 item 4)

The event p(person) claims: the reported box frames a labelled person (IoU >= 0.5 with one). For every person the
product reports (`Predictor` with its defaults: the shipped detector, verifier and STILL policy) this bench keeps
p(person), the detector's box and the box the tracker reports (posecal.inference.fitted_box: the box the detector
gave, pulled to the one around the keypoints the model sees), and each box's best IoU with the labelled people of
its picture. Printed per world: people reported, mean p(person), the share that frames a labelled person with
either box, the ECE of p(person) against that event beside its floor (the ECE a perfectly calibrated p shows on
this many people), and the reliability table.

Worlds: COCO val crops with even image ids (where a remapping of p(person) may be chosen) and odd ids, with each
crop's labelled person and the others of its photograph (persons with no labelled keypoint are not in the data:
a box on one counts as framing nobody, so the event rate is a lower bound); LSPET photos numbered 0 mod 5 (one
labelled athlete a photo, the box around their joints grown as the verifier's training did).

    python bench/person_probability.py [--limit 300] [--cache runs/person_probability.npz] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from detector_recall import iou  # noqa: E402
from person_worlds import coco_pictures, lspet_pictures  # noqa: E402

from posecal.inference.fitted_box import fitted_box  # noqa: E402
from posecal.calibration.maps import fit_logistic  # noqa: E402
from posecal.detect.verifier import SHIPPED_VERIFIER, remapped  # noqa: E402
from posecal.io import file_digest, write_json_atomic  # noqa: E402
from posecal.metrics.calibration import binary_ece_floor, ece, reliability_bins  # noqa: E402

BINS = 10
BOXES = ("det", "fit", "loose")
# a detector box is loose when the box around the keypoints the model sees fills less than this share of it
LOOSE = 0.5


def records(predictor, pictures) -> dict[str, np.ndarray]:
    """Per reported person: p(person), the detector's box, the fitted box and the loose box's share (the
    keypoints' box area over the detector box's: small where the box is loose); best IoU of each box with a
    labelled one."""
    out: dict[str, list] = {k: [] for k in ("p", "iou_det", "iou_fit", "tightness")}
    for bgr, labelled in pictures:
        h, w = bgr.shape[:2]
        for person in predictor(bgr).people:
            if person.person_probability is None:
                continue
            out["p"].append(person.person_probability)
            for key, box in (("iou_det", person.box), ("iou_fit", fitted_box(person, w, h))):
                out[key].append(float(iou(np.asarray(box, float)[None], labelled).max()) if len(labelled) else 0.0)
            xy = np.asarray(person.keypoints, float)[np.asarray(person.visibility) > 0] \
                if person.visibility is not None and (np.asarray(person.visibility) > 0).sum() >= 3 else person.keypoints
            span = np.ptp(np.asarray(xy, float), 0)
            out["tightness"].append(float(span.prod() / max(person.box[2] * person.box[3], 1e-9)))
    return {k: np.array(v) for k, v in out.items()}


def figures(p: np.ndarray, event: np.ndarray) -> dict:
    floor_mean, floor_p90 = binary_ece_floor(p, BINS)
    _, count, mean_c, mean_t = reliability_bins(p, event, BINS)
    return {"people": int(len(p)), "mean_p": round(float(p.mean()), 4), "event_rate": round(float(event.mean()), 4),
            "ece": round(ece(p, event, BINS), 4), "floor_mean": round(floor_mean, 4), "floor_p90": round(floor_p90, 4),
            "bins": [[int(n), round(float(c), 3), round(float(t), 3)] for n, c, t in zip(count, mean_c, mean_t) if n]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--limit", type=int, default=300, help="pictures per world (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "person_probability.npz")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    worlds = {"val even ids": lambda: ((bgr, others) for _, bgr, _, others in coco_pictures(0, args.limit)),
              "val odd ids": lambda: ((bgr, others) for _, bgr, _, others in coco_pictures(1, args.limit)),
              "LSPET 0 mod 5": lambda: ((bgr, target[None]) for bgr, target in lspet_pictures(args.limit))}
    cached = dict(np.load(args.cache)) if args.cache.is_file() else {}
    key = f"{args.model}|{args.limit}|{file_digest(SHIPPED_VERIFIER)}|"   # a remapped verifier: anew
    if not all(key + w + "|p" in cached for w in worlds):
        from posecal import Predictor
        predictor = Predictor(args.model, threads=args.threads)
        for world, pictures in worlds.items():
            cached |= {key + world + "|" + k: v for k, v in records(predictor, pictures()).items()}
            print(f"{world}: done", file=sys.stderr, flush=True)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, **cached)
    report = {"command": " ".join(["python", "bench/person_probability.py"] + sys.argv[1:]), "worlds": {}}
    for world in worlds:
        r = {k: cached[key + world + "|" + k] for k in ("p", "iou_det", "iou_fit", "tightness")}
        loose = r["tightness"] < LOOSE
        r["iou_loose"] = np.where(loose, r["iou_fit"], r["iou_det"])
        report["worlds"][world] = {box: figures(r["p"], r[f"iou_{box}"] >= 0.5) for box in BOXES}
        report["worlds"][world]["mean_iou"] = {box: round(float(r[f"iou_{box}"].mean()), 4) for box in BOXES}
        report["worlds"][world]["loose_share"] = round(float(loose.mean()), 4)
        report["worlds"][world]["sure_p_0.8"] = {
            box: round(float((r[f"iou_{box}"][r["p"] >= 0.8] >= 0.5).mean()), 4) for box in BOXES}
    for world, w in report["worlds"].items():
        print(f"\n{world}: {w['det']['people']} people reported, mean p(person) {w['det']['mean_p']:.3f}")
        print(f"({100 * w['loose_share']:.0f} % of the detector's boxes loose)")
        print(f"{'box':>18} {'mean IoU':>9} {'frames one':>11} {'of p>=0.8':>10} {'ECE':>7} {'floor':>13}")
        for box, name in (("det", "detector"), ("fit", "fitted"), ("loose", "fitted where loose")):
            f = w[box]
            print(f"{name:>18} {w['mean_iou'][box]:9.3f} {f['event_rate']:11.3f} {w['sure_p_0.8'][box]:10.3f} "
                  f"{f['ece']:7.4f} {f['floor_mean']:6.4f}/{f['floor_p90']:.4f}")
        print("  reliability (detector box): " + ", ".join(f"p {c:.2f} -> {t:.2f} (n {n})" for n, c, t in w["det"]["bins"]))
    report["refit"] = refit({w: {k: cached[key + w + "|" + k] for k in ("p", "iou_det")} for w in worlds},
                            "val even ids")
    if args.json:
        write_json_atomic(report, args.json)


def refit(worlds: dict[str, dict], tuning: str) -> dict:
    """p(person) remapped as a * logit(p) + b, fitted on the tuning world's reported people (the event: the
    detector's box frames a labelled person), judged on every world against its floor; and the person policy's
    thresholds through the same map (the map is monotone, so the decisions stay as they were)."""
    t = worlds[tuning]
    p = np.clip(t["p"], 1e-6, 1 - 1e-6)
    score = fit_logistic(np.log(p / (1 - p))[:, None], t["iou_det"] >= 0.5, signs=[1])
    a = float(score.weights[0] / score.std[0])
    b = float(score.bias - a * score.mean[0])
    print(f"\np(person) refitted on {tuning}: logit' = {a:.3f} logit + {b:+.3f}")
    print(f"{'world':>14} {'ECE before':>11} {'after':>7} {'floor p90 after':>16} {'mean p after':>13} {'event':>6}")
    out = {"a": round(a, 4), "b": round(b, 4), "fitted_on": tuning, "worlds": {}}
    for world, r in worlds.items():
        event, after = r["iou_det"] >= 0.5, remapped(r["p"], a, b)
        row = {"ece_before": round(ece(r["p"], event, BINS), 4), "ece_after": round(ece(after, event, BINS), 4),
               "floor_p90_after": round(binary_ece_floor(after, BINS)[1], 4),
               "mean_p_after": round(float(after.mean()), 4), "event_rate": round(float(event.mean()), 4)}
        out["worlds"][world] = row
        print(f"{world:>14} {row['ece_before']:11.4f} {row['ece_after']:7.4f} {row['floor_p90_after']:16.4f} "
              f"{row['mean_p_after']:13.3f} {row['event_rate']:6.3f}")
    print("thresholds: " + ", ".join(f"{v:g} -> {remapped(v, a, b):.3f}" for v in (0.1, 0.2, 0.3, 0.5, 0.6, 0.8)))
    return out


if __name__ == "__main__":
    main()
