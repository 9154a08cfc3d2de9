"""Does the flip test's disagreement say more than the trust model already does? (issue 84, item 1)

    python bench/flip_evidence.py collect --world val --rows runs/flip/val.npz
    python bench/flip_evidence.py collect --world lspet --rows runs/flip/lspet.npz [--persons -600:]
    python bench/flip_evidence.py judge runs/flip/val.npz runs/flip/lspet.npz

`collect` poses every labelled person of a world on their labelled box with `accurate` (its PyTorch model file,
flip test on, calibrated as shipped) and keeps, per keypoint, how far apart the two passes put it (the crop's
and the mirror's, mirrored back with left and right swapped, in crop widths: what `merge_flip` compares with
FLIP_AGREE) and their score gap, beside the pose and keypoint quality, the visibility probabilities, p(inside the
picture) and the truth (OKS, OPKS). Worlds: `val` (822 COCO val persons), `lspet` (LSPET's persons, by default the
last 600: bench/lspet_ap.py's).

`judge` fits, on each world in turn, the one-sided correction the reported-pose map uses (Q x (1 - p_failure),
p_failure a logistic over the evidence with weights >= 0; posecal/calibration/reported.py) with and without the
flip evidence, and judges it on the other world: pose and keypoint ECE beside their floors, Pearson r, the share
wrong (OKS < 0.5) among Q >= 0.7, and how well each piece of evidence ranks the confident wrong poses (AUROC).
Evidence that adds nothing leaves the fitted weight at 0 and the figures where the bias-only fit has them.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from posecal.codec.movenet import FLIP_AGREE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WRONG_BELOW, CONFIDENT = 0.5, 0.7
PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]   # COCO's left/right pairs


@contextmanager
def flip_gaps(into: list):
    """While inside: every flip merge of MoveNet's centre-guided decode also appends its (N, 2K) evidence (the two
    passes' distance per keypoint in crop widths, then their score gap) to `into`. The graph and the model stay
    as shipped; the merge is wrapped, not changed."""
    import torch
    import posecal.codec.movenet as movenet

    merge = movenet.merge_flip

    def recording(xy, scores, xy_mirror, scores_mirror, width):
        back, back_scores = movenet.mirrored_back(xy_mirror, scores_mirror, width)
        into.append(torch.cat([torch.linalg.vector_norm(xy - back, dim=-1) / width,
                               (scores - back_scores).abs()], -1).numpy())
        return merge(xy, scores, xy_mirror, scores_mirror, width)

    movenet.merge_flip = recording
    try:
        yield
    finally:
        movenet.merge_flip = merge


def collect(world: str, rows: Path, persons: str, threads: int) -> None:
    import torch
    from posecal.calibration.quality import calibration_from_meta, truth_of
    from posecal.data.coco import load_coco_persons, load_lspet
    from posecal.inference.estimator import predict_records
    from posecal.models.checkpoint import load_model

    torch.set_num_threads(threads)
    if world == "val":
        records = load_coco_persons(SHARED / "coco-val2017-crops/annotations/val.json",
                                    SHARED / "coco-val2017-crops/images")
    else:
        start, _, stop = persons.partition(":")
        records = load_lspet(SHARED / "lspet/annotations/lspet.json", SHARED / "lspet/images")[
            int(start) if start else None:int(stop) if stop else None]
    model, cfg, meta = load_model("accurate")
    gaps: list = []
    with flip_gaps(gaps):
        pred = predict_records(model, records, cfg.input_wh, flip=True, progress=False,
                               calibration=calibration_from_meta(meta, "accurate"), batch_size=32)
    # the merge runs twice a batch (the trust model reads the merged keypoints, then the outputs decode them)
    evidence = np.concatenate(gaps[::2])
    assert len(evidence) == len(pred.records), (len(evidence), len(pred.records))
    gt = np.stack([r.keypoints for r in pred.records])
    k = gt.shape[1]
    true_opks, _, true_oks = truth_of(pred.keypoints, gt, np.array([r.area for r in pred.records]))
    rows.parent.mkdir(parents=True, exist_ok=True)
    np.savez(rows, q=pred.oks, opks=pred.opks, vis=pred.visibility_probs, gap=evidence[:, :k],
             score_gap=evidence[:, k:], true_oks=true_oks, true_opks=true_opks, gtv=gt[..., 2], in_frame=pred.in_frame)
    print(f"{world}: {len(evidence)} persons -> {rows}")


def pose_evidence(d: dict) -> dict[str, np.ndarray]:
    """Per person, over the keypoints the model calls present (p(absent) < 0.5)."""
    present = d["vis"][..., 0] < 0.5
    n = np.maximum(present.sum(1), 1)
    g = d["gap"]
    both_far = np.mean([(g[:, a] > 0.1) & (g[:, b] > 0.1) for a, b in PAIRS], 0)
    return {"gap_mean": (g * present).sum(1) / n,
            "gap_far": ((g > FLIP_AGREE) & present).sum(1) / n,    # apart by merge_flip's measure
            "gap_max": np.where(present, g, 0).max(1),
            "score_gap": (d["score_gap"] * present).sum(1) / n,
            "pairs_apart": both_far}                               # both sides of a pair apart: a swap's trace


def figures(q, t) -> str:
    """ECE beside its floor, r and the share wrong among the confident, as bench/reported_poses.py counts them."""
    from reported_poses import calibration_line

    ok = np.isfinite(t)
    c = calibration_line(np.asarray(q, np.float64)[ok], np.asarray(t, np.float64)[ok])
    return (f"ECE {c['ece']:.4f} (floor {c['floor']:.4f}, p90 {c['floor_p90']:.4f})  r {c['pearson']:.3f}  "
            f"wrong among Q>=0.7 {100 * c['confident_wrong_share']:.2f} % of {c['confident']}")


def judge(paths: list[Path]) -> None:
    from posecal.calibration.reported import fit_reported_quality
    from posecal.metrics.calibration import auroc

    worlds = {p.stem: dict(np.load(p)) for p in paths}

    def level_rows(d, names, level):
        """(evidence (M, F), quality, truth) of one world: per person, or per labelled keypoint. No evidence
        named: one column of zeros, which the fit leaves at weight 0 (the bias alone)."""
        if level == "pose":
            x = np.stack([pose_evidence(d)[n] for n in names], 1) if names else np.zeros((len(d["q"]), 1))
            return x, d["q"], d["true_oks"]
        lab = d["gtv"] > 0
        return (d["gap"][lab][:, None] if names else np.zeros((lab.sum(), 1))), d["opks"][lab], d["true_opks"][lab]

    def lowered(fit_on, judge_on, names, level):
        (xa, qa, ta), (xb, qb, _) = level_rows(fit_on, names, level), level_rows(judge_on, names, level)
        ok = np.isfinite(ta)
        score = fit_reported_quality(xa[ok], qa[ok], ta[ok]).score   # weights >= 0 on evidence >= 0
        return np.clip(qb, 0, 1) * (1.0 - score(xb)), score

    for name, d in worlds.items():
        t, q = d["true_oks"], d["q"]
        conf = (q >= CONFIDENT) & np.isfinite(t)
        wrong = t[conf] < WRONG_BELOW
        ranks = {n: round(auroc(v[conf], wrong), 3) for n, v in pose_evidence(d).items()}
        print(f"{name}: {len(q)} persons, {conf.sum()} with Q >= 0.7 of which {wrong.sum()} wrong; AUROC at the "
              f"confident wrong: 1 - Q {auroc(-q[conf], wrong):.3f}, {ranks}")
    names = list(worlds)
    for fit_name in names:
        for judge_name in names:
            if judge_name == fit_name:
                continue
            a, b = worlds[fit_name], worlds[judge_name]
            print(f"--- fitted on {fit_name}, judged on {judge_name}")
            print(f"  pose Q as shipped               {figures(b['q'], b['true_oks'])}")
            for evidence in ([], ["gap_mean"], ["gap_far"], ["pairs_apart"],
                             ["gap_mean", "gap_far", "gap_max", "score_gap", "pairs_apart"]):
                q, score = lowered(a, b, evidence, "pose")
                print(f"  pose, {'+'.join(evidence) or 'bias only':24s} {figures(q, b['true_oks'])}  "
                      f"weights {np.round(score.weights, 2).tolist()} bias {score.bias:.2f}")
            lb = b["gtv"] > 0
            print(f"  keypoints as shipped            {figures(b['opks'][lb], b['true_opks'][lb])}")
            for evidence in ([], ["gap"]):
                q, score = lowered(a, b, evidence, "keypoint")
                print(f"  keypoints, {'+'.join(evidence) or 'bias only':19s} {figures(q, b['true_opks'][lb])}  "
                      f"weights {np.round(score.weights, 2).tolist()} bias {score.bias:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--world", choices=("val", "lspet"), required=True)
    c.add_argument("--rows", type=Path, required=True)
    c.add_argument("--persons", default="-600:", help="LSPET persons as a Python slice (start:stop)")
    c.add_argument("--threads", type=int, default=2)
    j = sub.add_parser("judge")
    j.add_argument("rows", type=Path, nargs="+")
    args = ap.parse_args()
    if args.cmd == "collect":
        collect(args.world, args.rows, args.persons, args.threads)
    else:
        judge(args.rows)


if __name__ == "__main__":
    main()
