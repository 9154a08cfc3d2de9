"""Planted label errors on the val split: precision@k and recall per kind of `posecal audit`, beside a
raw-heatmap baseline, and the top 20 findings on the unmodified val split
(python bench/audit_planted.py --model fast).

The network runs ONCE, on the GT boxes of the unmodified val file (the crops depend only on the boxes, so its
output is the same for every label set); its calibrated estimates and the baseline's heatmap readings are
cached in an .npz (--cache, with the raw heatmaps as float16) and reused for every label set.

Corruptions (seed --seed, 5 % of the eligible labels of each kind, one label set per kind so the kinds do not
mix; the rest of each set is the unmodified val labels):

* position: a labelled keypoint (v > 0) moved by 0.25 to 0.5 x sqrt(box w x h) in a random direction, kept
  inside the image (a new direction is drawn until it is): a click on the wrong place, a forearm's to a
  thigh's length away; a slip of a few pixels is not an error anyone needs found.
* swap: a left/right pair (skeleton.FLIP_PAIRS) with both labelled and at least 0.1 x sqrt(w x h) apart has
  its two x, y, v triples exchanged. Pairs closer than that (a profile's eyes, hips seen from the side) are
  not planted: swapping two near-coincident points changes nothing a person or a metric could see.
* visibility: a labelled keypoint's v flipped 2 <-> 1 (visible <-> occluded). This is the visibility mistake
  that leaves the rest of the label right (the position stays); "labelled where absent" would need a made-up
  position, and "absent where labelled" is the missing kind.
* missing: a visible keypoint (v = 2) set to 0, 0, 0 (COCO's not labelled).

Measures, per kind: precision@k, k = the number planted, of the audit's ranking of every candidate of that
kind (findings.json's order with every threshold of that kind opened, its exclusions kept: position by
P(a correct label this far), swap by the odds of the mirrored fit, visibility by p(the other labelled class),
missing by 1 - p(absent)); since k = planted, recall@k is the same number. Beside it the same without the
rule that a person finding explains its keypoints (no person findings at all). Then the recall and precision of the findings the audit writes at its stated thresholds
(posecal.audit.findings.AuditThresholds). Baseline, raw heatmaps only (no quality head, no calibration,
no radius): position = peak of the keypoint's heatmap minus its value at the label; swap = the heatmaps'
values at the mirrored labels minus at the labelled ones (summed over the pair); visibility = the heatmap
peak for a label v = 1 (a confident peak contradicts "occluded"), 1 - peak for v = 2; missing = the peak.

Usage: python bench/audit_planted.py [--model fast|accurate|FILE] [--annotations VAL.json --images DIR]
                                     [--seed 0] [--cache FILE.npz] [--report DIR] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecal.audit.estimates import Estimates  # noqa: E402
from posecal.audit.findings import AuditThresholds, find_label_errors  # noqa: E402
from posecal.audit.gallery import write_gallery  # noqa: E402
from posecal.audit.job import AuditConfig, annotation_labels, estimate_with_model, read_annotations  # noqa: E402
from posecal.data.crops import crops_to_batch, input_to_heatmap  # noqa: E402
from posecal.data.images import read_image  # noqa: E402
from posecal.data.transforms import apply_affine, person_crop_matrix, warp  # noqa: E402
from posecal.inference.opener import open_model  # noqa: E402
from posecal.models.outputs import HEATMAP_OUTPUT  # noqa: E402
from posecal.skeleton import FLIP_PAIRS, flip_permutation  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-val2017-crops"
FRACTION = 0.05
KINDS = ("position", "swap", "visibility", "missing")


def _pick(rng, candidates: list, fraction: float = FRACTION) -> list:
    n = max(1, int(round(fraction * len(candidates))))
    return [candidates[i] for i in sorted(rng.choice(len(candidates), n, replace=False))]


def plant(labels, boxes, sizes, kind: str, rng) -> tuple[np.ndarray, set]:
    """A corrupted copy of labels (N, K, 3) and the planted (row, keypoint) set (swap: the pair's left one)."""
    out = labels.copy()
    scale = np.sqrt(boxes[:, 2] * boxes[:, 3])
    v = labels[..., 2]
    if kind == "position":
        chosen = _pick(rng, list(zip(*np.nonzero(v > 0))))
        for i, k in chosen:
            w, h = sizes[i]
            for _ in range(100):
                angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.5) * scale[i]
                xy = labels[i, k, :2] + dist * np.array([np.cos(angle), np.sin(angle)])
                if 0 <= xy[0] <= w - 1 and 0 <= xy[1] <= h - 1:
                    break
            out[i, k, :2] = np.round(xy)
    elif kind == "swap":
        cands = [(i, a, b) for i in range(len(labels)) for a, b in FLIP_PAIRS
                 if v[i, a] > 0 and v[i, b] > 0 and np.linalg.norm(labels[i, a, :2] - labels[i, b, :2]) >= 0.1 * scale[i]]
        chosen = _pick(rng, cands)
        for i, a, b in chosen:
            out[i, [a, b]] = labels[i, [b, a]]
        chosen = [(i, a) for i, a, _ in chosen]
    elif kind == "visibility":
        chosen = _pick(rng, list(zip(*np.nonzero(v > 0))))
        for i, k in chosen:
            out[i, k, 2] = 3 - labels[i, k, 2]
    else:
        chosen = _pick(rng, list(zip(*np.nonzero(v == 2))))
        for i, k in chosen:
            out[i, k] = 0
    return out, {(int(i), int(k)) for i, k in chosen}


OPEN = {"position": {"position_tail": 1.0}, "swap": {"swap": 0.0}, "visibility": {"visibility": 0.0},
        "missing": {"missing": 0.0}}   # thresholds that let every candidate of the kind through


def audit_ranking(labels, area, est: Estimates, kind: str, person_rule: bool = True) -> tuple[np.ndarray, list]:
    """The audit's order of every candidate of `kind` (findings.json's order, its exclusions included: a swap
    or a person finding explains the keypoints it covers), as descending scores and (row, keypoint) keys.
    person_rule False: no person findings, so nothing is explained by one."""
    thresholds = replace(AuditThresholds(), **OPEN[kind], **({} if person_rule else {"person_shortfall": np.inf}))
    row = {int(a): i for i, a in enumerate(est.annotation_ids)}
    found = [f for f in find_label_errors(labels, area, est, thresholds) if f["kind"] == kind]
    return -np.arange(len(found), dtype=float), [(row[f["annotation_id"]], f["keypoint"]) for f in found]


def baseline_ranking(labels, base: dict, kind: str) -> tuple[np.ndarray, list]:
    """The raw-heatmap baseline's score of every candidate of `kind`."""
    peak, at, mirrored = base["peak"], base[f"at_label_{kind}"], base[f"at_mirror_{kind}"]
    v = labels[..., 2]
    if kind == "position":
        s = np.where(v > 0, peak - at, np.nan)
    elif kind == "swap":
        s = np.full((len(labels), len(FLIP_PAIRS)), np.nan)
        for j, (a, b) in enumerate(FLIP_PAIRS):
            both = (v[:, a] > 0) & (v[:, b] > 0)
            s[:, j] = np.where(both, mirrored[:, a] + mirrored[:, b] - at[:, a] - at[:, b], np.nan)
        return _candidates(s, [a for a, _ in FLIP_PAIRS])
    elif kind == "visibility":
        s = np.where(v == 1, peak, np.where(v == 2, 1 - peak, np.nan))
    else:
        s = np.where(v == 0, peak, np.nan)
    return _candidates(s, list(range(s.shape[1])))


def _candidates(s, columns) -> tuple[np.ndarray, list]:
    rows, cols = np.nonzero(np.isfinite(s))
    return s[rows, cols], [(int(r), int(columns[c])) for r, c in zip(rows, cols)]


def precision_at_k(scores, keys, planted: set) -> float:
    order = np.argsort(-scores, kind="mergesort")[:len(planted)]
    return sum(keys[i] in planted for i in order) / len(planted)


def baseline_cache(cache: Path) -> Path:
    """Where the baseline's raw heatmaps are kept beside the audit's estimates."""
    return cache.with_name(cache.stem + "_heatmaps.npz")


def raw_heatmaps(model, image_paths, boxes, threads: int, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's input: the model's flip-merged heatmaps (N, K, h, w) of every person's crop, made as the
    estimator makes it (person_crop_matrix of the box, upright), and the crops' (N, 2, 3) image -> input
    matrices. Only this bench reads raw heatmaps, so the estimator never carries them. A MoveNet model's heatmaps
    are its trust model's (MoveNet's own are not among its outputs)."""
    opened = open_model(model, "onnx", True, threads)
    input_wh = tuple(opened.config.input_wh)
    images: dict[str, np.ndarray] = {}
    maps, matrices = [], []
    for start in range(0, len(boxes), batch):
        crops = []
        for path, box in zip(image_paths[start:start + batch], boxes[start:start + batch]):
            if str(path) not in images:
                images = {str(path): read_image(str(path))}   # records come picture by picture: keep one
            m = person_crop_matrix(np.asarray(box, np.float64), input_wh)
            crops.append(warp(images[str(path)], m, input_wh))
            matrices.append(m)
        maps.append(opened.runner.outputs(crops_to_batch(crops), opened.flip)[HEATMAP_OUTPUT].astype(np.float32))
    return np.concatenate(maps), np.stack(matrices)


def heatmap_values(heatmaps, matrices, points) -> np.ndarray:
    """(N, K, h, w) heatmaps of crops made with (N, 2, 3) image -> input matrices, read at (N, K, 2) image
    points: bilinear, 0 outside the heatmap."""
    hm = np.asarray(heatmaps, np.float64)
    n, k = hm.shape[:2]
    xy = input_to_heatmap(np.stack([apply_affine(p, m) for p, m in zip(np.asarray(points, np.float64), matrices)]))
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    coords = np.stack([ni.ravel(), ki.ravel(), xy[..., 1].ravel(), xy[..., 0].ravel()])
    return map_coordinates(hm, coords, order=1, mode="constant", cval=0.0).reshape(n, k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="fast", help="accurate, fast or a model file (default: fast)")
    ap.add_argument("--annotations", default=str(DATA / "annotations" / "val.json"))
    ap.add_argument("--images", default=str(DATA / "images"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", help="npz of the model's estimates (default: /tmp/posecal_audit_MODEL.npz)")
    ap.add_argument("--report", help="write the clean split's findings.json and report.html here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = read_annotations(args.annotations)
    sizes_of = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    image_of = {a["id"]: a["image_id"] for a in data["annotations"]}
    rng = np.random.default_rng(args.seed)
    cache = Path(args.cache or f"/tmp/posecal_audit_{Path(str(args.model)).stem}.npz")
    t0 = time.time()
    if cache.is_file() and baseline_cache(cache).is_file():
        est = Estimates.load(cache)
        print(f"estimates from {cache} (delete it to run the model again)")
    else:
        est = estimate_with_model(AuditConfig(annotations=args.annotations, out="", images=args.images,
                                              model=args.model, threads=args.threads))
        heatmaps, matrices = raw_heatmaps(args.model, est.image_paths, est.boxes, args.threads)
        est.save(cache)
        np.savez_compressed(baseline_cache(cache), heatmaps=heatmaps.astype(np.float16), matrices=matrices)
    clean, area = annotation_labels(data, est.annotation_ids, args.annotations)
    sizes = [sizes_of[image_of[int(a)]] for a in est.annotation_ids]
    perm = flip_permutation()
    planted = {kind: plant(clean, est.boxes, sizes, kind, rng) for kind in KINDS}
    with np.load(baseline_cache(cache)) as z:   # the raw heatmaps, kept (float16) for the baseline
        hm, matrices = z["heatmaps"].astype(np.float32), z["matrices"]
    base = {"peak": hm.reshape(*hm.shape[:2], -1).max(-1)}
    for kind, (labels, _) in planted.items():   # the baseline's readings of the raw heatmaps, per label set
        base[f"at_label_{kind}"] = heatmap_values(hm, matrices, labels[..., :2])
        base[f"at_mirror_{kind}"] = heatmap_values(hm, matrices, labels[:, perm, :2])
    print(f"{len(est.annotation_ids)} persons, model {args.model}, estimates in {time.time() - t0:.0f}s, "
          f"seed {args.seed}, radius coverage {est.radius_coverage}")
    print(f"{'kind':<11}{'planted':>8}{'P@k audit':>11}{'P@k base':>10}{'findings':>10}{'recall':>8}{'precision':>10}"
          f"{'P@k no person rule':>20}")
    measured = {}
    for kind, (labels, truth) in planted.items():
        p_audit = precision_at_k(*audit_ranking(labels, area, est, kind), truth)
        p_plain = precision_at_k(*audit_ranking(labels, area, est, kind, person_rule=False), truth)
        p_base = precision_at_k(*baseline_ranking(labels, base, kind), truth)
        found = [f for f in find_label_errors(labels, area, est) if f["kind"] == kind]
        row = {int(a): i for i, a in enumerate(est.annotation_ids)}
        hits = sum((row[f["annotation_id"]], f["keypoint"]) in truth for f in found)
        measured[kind] = {"planted": len(truth), "precision_at_k": round(p_audit, 3),
                          "baseline_precision_at_k": round(p_base, 3), "findings": len(found),
                          "recall": round(hits / len(truth), 3), "precision": round(hits / max(len(found), 1), 3),
                          "precision_at_k_without_person_rule": round(p_plain, 3)}
        m = measured[kind]
        print(f"{kind:<11}{m['planted']:>8}{m['precision_at_k']:>11.3f}{m['baseline_precision_at_k']:>10.3f}"
              f"{m['findings']:>10}{m['recall']:>8.3f}{m['precision']:>10.3f}"
              f"{m['precision_at_k_without_person_rule']:>20.3f}")
    found = find_label_errors(clean, area, est, AuditThresholds())
    lab = clean[..., 2] > 0
    print(f"\nunmodified val: {len(found)} findings (" + ", ".join(
        f"{k} {sum(f['kind'] == k for f in found)}" for k in ("position", "swap", "visibility", "missing", "person"))
        + f"); position findings are {sum(f['kind'] == 'position' for f in found) / lab.sum():.3%} of the "
        f"{lab.sum()} labelled keypoints (the error model expects < 1 % if the labels were right)")
    print("top 20 findings on the unmodified val split:")
    for n, f in enumerate(found[:20], 1):
        name = Path(str(est.image_paths[list(est.annotation_ids).index(f["annotation_id"])])).name
        print(f"{n:>3} {f['id']:<24} {f['kind']:<10} {f['keypoint_name'] or '-':<15} score {f['score']:.6f} "
              f"strength {f['strength']:>7.2f}  {name}")
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "findings.json").write_text(json.dumps(found))
        write_gallery(out / "report.html", found[:60], est, clean, len(found))
        (out / "planted.json").write_text(json.dumps(measured, indent=1))
        print(f"-> {out}/report.html")


if __name__ == "__main__":
    main()
