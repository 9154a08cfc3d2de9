"""Trust-guided fusion, measured first (issue 30 part 2): which candidate keypoints posecal already has, how good
the best pick among them could be (the oracle, by true OPKS), and how much of that the trust model's predicted
OPKS recovers (python bench/fusion_candidates.py).

Usage: python bench/fusion_candidates.py [--model published] [--annotations val.json] [--images DIR]
                                         [--max-persons 0 (all)] [--cache /tmp/fusion_val.npz] [--scales 1.2]
                                         [--threads 2]
--model: the MoveNet model with a trust model whose candidates are measured; MODEL_CARD.md's table is for
`published` (the accurate model before the fine-tune; the cache holds one model's values: --recompute on a change).

Candidates, all of one person, mapped into the accurate model's own 256x256 crop of the GT box:
* `merged`: MoveNet Thunder with the flip test, as shipped (the crop's and the mirror's decodes merged);
* `crop`, `mirror`: the two passes of the flip test decoded alone (free: the flip test computes them);
* `trust`: the peaks of the trust model's own heatmaps (free: the trust model computes them to judge);
* `thunder@S`: Thunder with the flip test on the box scaled by S about its centre (one more Thunder pass);
* `lightning`: MoveNet Lightning with the flip test (192x192);
* `fast`: posecal's `fast` model (EfficientNet-Lite0, 192x144, flip test, DARK).
Each is judged by the accurate model's trust model on the base crop (predicted pose OKS, OPKS, visibility), and
scored against the truth (true OPKS). It prints each candidate's AP alone (score: its own predicted OKS), the
per-keypoint oracle's AP, and the AP of fusion rules that use predicted OPKS only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from posecal.codec.heatmap import decode
from posecal.codec.movenet import decode_passes
from posecal.data.coco import PersonRecord, load_coco_persons, read_coco
from posecal.data.topdown import TopDownDataset, heatmap_to_input
from posecal.data.transforms import apply_affine, invert_affine
from posecal.inference.topdown import predict_records
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.metrics.oks import opks
from posecal.models.checkpoint import load_model
from posecal.models.estimator import build_estimator
from posecal.models.config import MOVENET_CONVENTION
from posecal.models.trust.network import TRUST_INPUT

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"


def scaled(records: list[PersonRecord], s: float) -> list[PersonRecord]:
    out = []
    for r in records:
        x, y, w, h = r.bbox
        box = np.array([x + w / 2 - s * w / 2, y + h / 2 - s * h / 2, s * w, s * h])
        out.append(PersonRecord(r.image_path, r.image_id, box, r.keypoints, r.area, ann_id=r.ann_id,
                                file_name=r.file_name))
    return out


@torch.no_grad()
def movenet_candidates(model, records, size: int, batch: int = 32):
    """Thunder/Lightning (a TopDownEstimator with a MoveNet backbone) on `records`: image-pixel keypoints and
    scores of the merged flip test, the crop's pass alone and the mirror's pass alone (codec.movenet.decode_passes,
    as the fusing model decodes them)."""
    loader = DataLoader(TopDownDataset(records, (size, size)), batch_size=batch)
    out = {k: [] for k in ("merged", "crop", "mirror", "merged_s", "crop_s", "mirror_s")}
    for b in loader:
        m = model.forward_flip_test(b["image"]).movenet
        passes = decode_passes(m.center, m.regress, m.heatmap, m.offset, b["image"].shape[0])
        inv = [invert_affine(mm.numpy()) for mm in b["matrix"]]
        for key, (pts, scores) in zip(("merged", "crop", "mirror"), passes):
            out[key] += [apply_affine(p.double().numpy(), a) for p, a in zip(pts, inv)]
            out[key + "_s"] += list(scores.double().numpy())
    return {k: np.array(v) for k, v in out.items()}


@torch.no_grad()
def judge(model, records, candidates: dict[str, tuple[np.ndarray, np.ndarray | None]], batch: int = 32):
    """The accurate model's trust model on its base crops, for each candidate (image-pixel keypoints, scores or
    None) and for the peaks of its own heatmaps ("trust"): predicted oks (N,), opks logits (N, K), visibility
    logits (N, K, 3); and the trust's own peaks in image pixels."""
    size = 256
    loader = DataLoader(TopDownDataset(records, (size, size)), batch_size=batch)
    res = {name: {"oks": [], "opks": [], "vis": []} for name in [*candidates, "trust"]}
    trust_xy, start = [], 0
    for b in loader:
        images, n = b["image"], b["image"].shape[0]
        mats = b["matrix"].numpy()
        look = model.trust.look(images)
        own, _ = decode(look.heatmaps.numpy(), "dark")
        own = (heatmap_to_input(own) + 0.5) * size / TRUST_INPUT - 0.5       # in base-crop pixels
        own_img = np.array([apply_affine(p, invert_affine(m)) for p, m in zip(own, mats)])
        trust_xy += list(own_img)
        sets = {name: (xy[start:start + n], None if sc is None else sc[start:start + n])
                for name, (xy, sc) in candidates.items()} | {"trust": (own_img, None)}
        for name, (xy, sc) in sets.items():
            crop_xy = torch.tensor(np.stack([apply_affine(p, m) for p, m in zip(xy, mats)]), dtype=torch.float32)
            scores = None if sc is None else torch.tensor(sc, dtype=torch.float32)
            o = model.trust.judge(look, crop_xy, scores)
            res[name]["oks"].append(o.oks.numpy())
            res[name]["opks"].append(o.opks_logits.numpy())
            res[name]["vis"].append(o.vis_logits.numpy())
        start += n
    return {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in res.items()}, np.array(trust_xy)


def compute(args) -> dict:
    torch.set_num_threads(args.threads)
    records = load_coco_persons(args.annotations, args.images)
    if args.max_persons:
        records = records[: args.max_persons]
    acc, _, _ = load_model(args.model)
    cands: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    th = movenet_candidates(acc, records, 256)
    for k in ("merged", "crop", "mirror"):
        cands[k] = (th[k], th[k + "_s"])
    for s in args.scales:
        o = movenet_candidates(acc, scaled(records, s), 256)
        cands[f"thunder@{s:g}"] = (o["merged"], o["merged_s"])
    light = build_estimator(backbone="movenet_lightning", imagenet=True, **MOVENET_CONVENTION).eval()
    o = movenet_candidates(light, records, 192)
    cands["lightning"] = (o["merged"], o["merged_s"])
    fast, fcfg, _ = load_model("fast")
    p = predict_records(fast, records, fcfg.input_wh, flip=True, progress=False)
    cands["fast"] = (p.keypoints, None)
    judged, trust_xy = judge(acc, records, cands)
    cands["trust"] = (trust_xy, None)
    gt = np.array([r.keypoints for r in records])
    area = np.array([r.area for r in records])
    out = {"names": np.array(list(cands)), "gt": gt, "area": area,
           "image_id": np.array([r.image_id for r in records]), "ann_id": np.array([r.ann_id for r in records])}
    for name, (xy, _) in cands.items():
        out[f"{name}/xy"] = xy
        out[f"{name}/true_opks"] = opks(xy, gt[..., :2], area)
        for k, v in judged[name].items():
            out[f"{name}/{k}"] = v
    return out


def ap_of(gt_coco, d, xy, score, conf):
    return coco_keypoint_ap(gt_coco, coco_keypoint_results(d["image_id"], xy, conf, score), image_ids=d["image_id"])


def report(d: dict, annotations) -> None:
    names = [str(n) for n in d["names"]]
    gt_coco = load_coco_gt(read_coco(annotations))
    labelled = d["gt"][..., 2] > 0
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    print(f"{len(d['area'])} persons; mean true OPKS over labelled keypoints, AP with its own predicted OKS:")
    print(f"| candidate | mean true OPKS | AP | AP50 | AP75 | AR |")
    print("|---|---|---|---|---|---|")
    for n in names:
        a = ap_of(gt_coco, d, d[f"{n}/xy"], d[f"{n}/oks"], sig(d[f"{n}/opks"]))
        print(f"| {n} | {d[f'{n}/true_opks'][labelled].mean():.4f} | {a['ap']:.1f} | {a['ap50']:.1f} | "
              f"{a['ap75']:.1f} | {a['ar']:.1f} |")
    true = np.stack([d[f"{n}/true_opks"] for n in names])        # (C, N, K)
    pred = np.stack([d[f"{n}/opks"] for n in names])
    xy = np.stack([d[f"{n}/xy"] for n in names])                 # (C, N, K, 2)
    base_score = d["merged/oks"]

    def fused(choice):
        return np.take_along_axis(xy, choice[None, ..., None].repeat(2, -1), 0)[0]

    def show(label, sel, pool):
        idx = [names.index(p) for p in pool]
        choice = np.array(idx)[sel]
        f = fused(choice)
        t = opks(f, d["gt"][..., :2], d["area"])
        a = ap_of(gt_coco, d, f, base_score, np.ones_like(t))
        print(f"| {label} | {'+'.join(pool)} | {t[labelled].mean():.4f} | {a['ap']:.1f} | {a['ap50']:.1f} | "
              f"{a['ap75']:.1f} | {a['ar']:.1f} |")

    print("\nFusion (score: the shipped pose OKS of `merged`, so only the keypoints change):")
    print("| rule | pool | mean true OPKS | AP | AP50 | AP75 | AR |")
    print("|---|---|---|---|---|---|---|")
    pools = [["merged"], ["merged", "crop", "mirror"], ["merged", "trust"], ["merged", "crop", "mirror", "trust"],
             [n for n in names if n.startswith("thunder@")] + ["merged"], ["merged", "lightning"], ["merged", "fast"],
             names]
    for pool in pools:
        idx = [names.index(p) for p in pool]
        show("oracle", true[idx].argmax(0), pool)
        show("max predicted OPKS", pred[idx].argmax(0), pool)
        margin = pred[idx] - pred[idx[0]][None]
        for m in (0.5, 1.0):
            sel = np.where(margin.max(0) > m, margin.argmax(0), 0)
            show(f"predicted OPKS, margin {m} logit", sel, pool)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="published")
    ap.add_argument("--annotations", default=str(CROPS / "annotations" / "val.json"))
    ap.add_argument("--images", default=str(CROPS / "images"))
    ap.add_argument("--max-persons", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/fusion_val.npz")
    ap.add_argument("--scales", type=float, nargs="*", default=[1.2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recompute", action="store_true")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    if args.recompute or not cache.is_file():
        d = compute(args)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **d)
        tmp.replace(cache)
    d = dict(np.load(cache))
    report(d, args.annotations)


if __name__ == "__main__":
    main()
