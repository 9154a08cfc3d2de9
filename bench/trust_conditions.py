"""Trust under the conditions users run posecal in: one table (python bench/trust_conditions.py [--model M]).

Conditions (issue 38), all from data posecal has (../shared/data), GT keypoints exact:
- val:         the val split's 822 persons, GT boxes, flip test (what calibration was fitted on until now);
- val_noflip:  the same without the flip test;
- val_cut:     each val person cut by the frame (seeded: the picture keeps the top, the bottom or one side at
               35-70 % of the keypoints' extent; cut-off keypoints become not labelled; `area` unchanged), flip;
- val_jitter:  val with detector-like boxes (centre and sides jittered by 10 %), flip;
- val_cut2:    val cut another way (posecal.evaluation.conditions.HELD_OUT_CUT: another seed, every side alike,
               20-80 % of the extent), flip; never fitted on;
- lspet_out:   the 1,000 LSPET persons the trust model never trains on (posecal.training.trust_samples), flip
               (12 body joints; LSPET's labels do not tell visibility apart, so no visibility figures there);
- video (--video-scenes 9 10 11 12 13 14): scenes of val people walking and crossing over a real background
               (bench.lab.moving_people, bench/track_ids.py's scenes; scene i has seed i; scenes 0-8 tune the
               shipped video calibration, tools/fit_video_calibration.py), run through `posecal track`'s defaults
               with --model; each record matched to the truth by box IoU; figures of the records' own fields, for
               all records and per pose_source (detected on the frame / carried by optical flow / held hidden);
               --video-other-background 0 1 2 3 4 5: the tracking bench's held-out scenes (another room as it is
               and mirrored, one row each too); --video-degrade half jpeg: every scene also downscaled by 2 or
               compressed hard (bench/lab/video_worlds.py); --video-only: these rows alone. Each video row twice,
               each ECE beside its floor (intervals by track): `records as written` (through the model's video
               calibration, if it has one, as `track` applies it) and `no map` (without it).

Three calibrations per condition:
- `shipped`: the model file's own stored calibration, as a user gets it;
- `mixture (cross-fitted)`: the isotonic maps fitted on val + val_noflip + val_cut + val_jitter together, each
  person's figures from maps fitted without its photograph (5 folds by photo; val_cut2 too, though never fitted
  on); lspet_out gets the maps fitted on the whole mixture (it is held out from everything);
- `conditional (cross-fitted)`: the same, with the conditional quality map after the isotonic maps
  (posecal.calibration.conditional).

Every keypoint and pose ECE is printed with its floor (the ECE a perfectly calibrated predictor shows on as many
samples: mean and 90th percentile) and a 95 % bootstrap interval by photograph, per condition and per subgroup a
user can see at run time (keypoint type, distance to the picture's edge, predicted visibility class, box at the
picture's edge; flip on/off is val against val_noflip), with the count of subgroups of >= 300 keypoints above
their floor's 90th percentile (a calibrated predictor: about 1 in 10) and above twice it.

The raw outputs are cached in --work (the cut pictures too), so a second run only refits. Figures go to
stdout and to --json (default bench/results/trust_conditions_MODEL.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.lab.video_worlds import DEGRADED, model_without_video_map, tracked_pairs, world_scenes  # noqa: E402
from posecal.calibration.quality import calibration_from_meta, truth_of  # noqa: E402
from posecal.data.coco import load_coco_persons, load_lspet  # noqa: E402
from posecal.data.images import image_size  # noqa: E402
from posecal.evaluation.calibrate_model import photo_groups  # noqa: E402
from bench.lab.condition_judging import (HELD_OUT_CUTS, calibration_against_floors, ece_against_floor,  # noqa: E402
                                         held_out_cut_plan, subgroup_names)
from posecal.evaluation.conditions import (MIXTURE, ConditionRun, condition_figures,  # noqa: E402
                                           cross_fit_over_conditions, fit_over_conditions, mixture_plan,
                                           run_condition, shipped_outputs)
from posecal.export.cache import cached_onnx  # noqa: E402
from posecal.io import write_atomic, write_json_atomic  # noqa: E402
from posecal.models.checkpoint import load_model, model_file  # noqa: E402
from posecal.training.trust_samples import lspet_trust_split  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
COLUMNS = (("keypoint_ece", "kp ECE"), ("pose_ece", "pose ECE"), ("pose_pearson", "pose r"),
           ("pose_ece_either_side", "pose ECE sides"), ("pose_pearson_either_side", "pose r sides"),
           ("binary_vis_f1", "vis F1"), ("occluded_f1", "occ F1"), ("absent_recall", "abs rec"),
           ("absent_precision", "abs prec"), ("labelled_called_absent", "in-frame->abs"),
           ("cut_off_called_absent", "cut->abs"), ("radius_coverage", "radius cov"),
           ("radius_coverage_min", "cov min"), ("radius_coverage_max", "cov max"), ("in_frame_ece", "in-frame ECE"),
           ("in_frame_auroc", "in-frame AUC"))


# the calibrations compared, fitted on MIXTURE (value: fit_over_conditions' conditional flag)
CALIBRATIONS = {"mixture": False, "conditional": True}


def load_run(path: Path) -> ConditionRun | None:
    if not path.is_file():
        return None
    z = {"image_wh": None} | dict(np.load(path, allow_pickle=False))
    raw = {k[4:]: z.pop(k) for k in list(z) if k.startswith("raw_")}
    return ConditionRun(name=str(z.pop("name")), flip=bool(z.pop("flip")), raw=raw, **z)


def save_run(run: ConditionRun, path: Path) -> None:
    arrays = {k: getattr(run, k) for k in ("keypoints", "boxes", "gt", "area", "groups", "visibility_known",
                                           "cut_off", "image_wh")}
    arrays |= {f"raw_{k}": v for k, v in run.raw.items()} | {"name": np.array(run.name), "flip": np.array(run.flip)}
    write_atomic(path, lambda f: np.savez(f, **arrays))


def build_runs(model_spec: str, work: Path, lspet_n: int, progress: bool, limit: int = 0, threads: int = 2,
               raw_of: str | None = None) -> tuple[list[ConditionRun], dict]:
    """Every condition's run, from --work's cache where it is there; the model runs in onnxruntime (its cached
    export, as `posecal predict` runs it). raw_of: the model file whose cache (and network) to use; the meta
    (calibration) stays model_spec's."""
    coco = DATA / "coco-val2017-crops"
    val_json = coco / "annotations" / "val.json"
    val = load_coco_persons(val_json, coco / "images")
    val = val[:limit] if limit else val
    groups = dict(zip([r.ann_id for r in val], photo_groups(val_json, [r.ann_id for r in val]).tolist()))
    lspet = load_lspet(DATA / "lspet" / "annotations" / "lspet.json", DATA / "lspet" / "images")
    _, held = lspet_trust_split(len(lspet))
    lspet_out = [lspet[i] for i in held[:lspet_n]]
    plan = (mixture_plan(val, work / "val_cut_images") + held_out_cut_plan(val, work / "val_cut2_images")
            + [("lspet_out", lspet_out, True, None)])
    crowd = crowded_persons(val_json)
    raw_spec = raw_of or model_spec
    stamp = model_file(raw_spec).stat()
    tag = f"{model_file(raw_spec).stem}_{stamp.st_size}_{int(stamp.st_mtime)}_onnx"
    _, cfg, meta = load_model(model_spec)
    runs = []
    for name, records, flip, cut_off in plan:
        path = work / f"{tag}_{name}_{len(records)}.npz"
        run = load_run(path)
        model = cached_onnx(raw_spec, flip, threads) if run is None else None
        if run is not None and run.image_wh is None:   # a cache written before image sizes were kept
            run.image_wh = np.array([image_size(r.image_path) for r in records], np.float64)
            save_run(run, path)
        if run is None:
            t0 = time.time()
            with torch.no_grad():
                run = run_condition(name, model, cfg.input_wh, records, flip, groups, cut_off, progress=progress)
            save_run(run, path)
            print(f"{name}: {len(run)} persons in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        if len(run) == len(records) and all(r.ann_id in crowd for r in records):
            run.crowded = np.array([crowd[r.ann_id] for r in records])
        runs.append(run)
    return runs, meta


CROWDED_SHARE = 0.25   # the share of a person's box another labelled person's box covers: a crowd


def crowded_persons(annotations: Path) -> dict[int, bool]:
    """ann_id -> whether another labelled person's box covers at least CROWDED_SHARE of the person's box in the
    original photograph (the crops' `orig_bbox` and `orig_image_id`, data README)."""
    from posecal.metrics.boxes import inside_share

    anns = json.loads(annotations.read_text())["annotations"]
    by_photo: dict[int, list[dict]] = {}
    for a in anns:
        by_photo.setdefault(a["orig_image_id"], []).append(a)
    return {a["id"]: any(inside_share(np.asarray(a["orig_bbox"]), np.asarray(o["orig_bbox"])) >= CROWDED_SHARE
                         for o in by_photo[a["orig_image_id"]] if o is not a) for a in anns}


def video_figures(pairs: list[tuple[dict, dict]], occluded_over_visible: float = 2.0) -> dict[str, float]:
    """condition_figures of tracked poses (their records' calibrated fields, as `posecal track` writes them) against
    the truth they matched (bench/lab/video_worlds.py's video_pairs)."""
    k = 17
    gt = np.array([np.reshape(a["keypoints"], (k, 3)) for a, _ in pairs], np.float64)
    kp = np.array([np.reshape(r["keypoints"], (k, 3))[:, :2] for _, r in pairs], np.float64)
    boxes = np.array([r["bbox"] for _, r in pairs], np.float64)
    area = np.array([a["area"] for a, _ in pairs], np.float64)
    vis = np.array([r.get("visibility", [2] * k) for _, r in pairs])
    probs = np.eye(3)[vis]          # the records' classes as one-hot probabilities: the rule's own output
    run = ConditionRun(name="video", flip=False, keypoints=kp, boxes=boxes, gt=gt, area=area,
                       groups=np.arange(len(pairs)), visibility_known=np.ones(len(pairs), bool),
                       cut_off=np.zeros((len(pairs), k), bool), raw={}, image_wh=np.zeros((len(pairs), 2)))
    out = {"oks": np.array([r["pose_quality"] for _, r in pairs], np.float64),
           "opks": np.array([r["keypoint_quality"] for _, r in pairs], np.float64),
           "visibility_probs": probs,
           "keypoint_radius": np.array([r.get("keypoint_radius", [np.inf] * k) for _, r in pairs], np.float64)}
    # against their floors, with intervals by track (a track's poses are not independent); no subgroups: the
    # records do not say where the picture's edges were
    ks, labelled, gt_oks = truth_of(kp, gt, area)
    has = np.isfinite(gt_oks)
    tracks = np.array([r.get("track_id", i) for i, (_, r) in enumerate(pairs)])
    floors = {"keypoint": ece_against_floor(out["opks"][labelled], ks[labelled],
                                            np.broadcast_to(tracks[:, None], labelled.shape)[labelled]),
              "pose": ece_against_floor(np.clip(out["oks"][has], 0, 1), gt_oks[has], tracks[has]), "subgroups": {},
              "subgroup_counts": {"subgroups": 0, "min_keypoints": 300, "above_p90": 0, "above_2x_p90": 0}}
    return condition_figures(run, out, occluded_over_visible) | {"against_floors": floors}


def video_rows(model: str, video, work: Path, scenes: list[int], held_out: list[int], frames: int, threads: int,
               degrade: tuple[str, ...] = ()) -> dict[str, dict[str, dict]]:
    """Tracked scenes' records against their truth, each row twice: `records as written` (through the model's
    video calibration `video`, as `track` applies it) and `no map` (without one): the records are tracked once
    by the model without its video calibration (bench/lab/video_worlds.py). Rows: `video` (scenes over the
    tuning room) and `video_other_background` (the held-out scenes: another room, people no tuning scene shows),
    each also per pose_source; then one row per world kind (video_intel, video_intel_mirrored, and with degrade
    every kind downscaled or compressed: bench/lab/video_worlds.py)."""
    worlds = tracked_pairs(model_without_video_map(model, work), world_scenes(work, scenes, held_out, frames, degrade),
                           work, threads)
    groups = {"video": worlds.get("vtest", []),
              "video_other_background": worlds.get("intel", []) + worlds.get("intel_mirrored", [])}
    rows_of = {}
    for name, pairs in groups.items():
        rows_of[name] = pairs
        for source in ("detected", "carried", "held"):
            rows_of[f"{name}_{source}"] = [(a, r) for a, r in pairs if r.get("pose_source", "detected") == source]
    rows_of |= {f"video_{kind}": pairs for kind, pairs in worlds.items() if kind != "vtest"}
    rows = {}
    for name, pairs in rows_of.items():
        if len(pairs) < 10:
            continue
        written = pairs if video is None else [(a, video.apply_record(r)) for a, r in pairs]
        rows[name] = {"records as written": video_figures(written), "no map": video_figures(pairs)}
    return rows


COND = 31   # the condition column: video rows are named by world kind and pose source


def table(rows: dict[str, dict[str, dict]]) -> str:
    head = f"{'condition':<{COND}} {'calibration':<27}" + "".join(f"{label:>14}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for cond, by_cal in rows.items():
        for cal, figs in by_cal.items():
            cells = "".join(f"{figs[k]:>14.3f}" if k in figs else f"{'-':>14}" for k, _ in COLUMNS)
            lines.append(f"{cond:<{COND}} {cal:<27}{cells}")
    return "\n".join(lines)


def floors_table(rows: dict[str, dict[str, dict]]) -> str:
    """Keypoint and pose ECE with their 95 % intervals (by photograph) and floors (mean, 90th percentile), and the
    count of subgroups (>= 300 keypoints) above their floor's p90 and twice it."""
    head = (f"{'condition':<{COND}} {'calibration':<27}{'kp ECE':>8} {'interval':>15} {'floor':>7} {'p90':>7}"
            f"{'pose ECE':>10} {'interval':>15} {'floor':>7} {'p90':>7}{'subgroups':>11}{'>p90':>6}{'>2xp90':>8}")
    lines = [head, "-" * len(head)]
    for cond, by_cal in rows.items():
        for cal, figs in by_cal.items():
            f = figs.get("against_floors")
            if f is None:
                continue
            cells = ""
            for part, width in (("keypoint", 8), ("pose", 10)):
                e = f[part]
                cells += (f"{e['ece']:>{width}.4f} {'[%.4f, %.4f]' % tuple(e['interval']):>15} {e['floor']:>7.4f}"
                          f" {e['floor_p90']:>7.4f}")
            c = f["subgroup_counts"]
            counts = f"{c['subgroups']:>11}{c['above_p90']:>6}{c['above_2x_p90']:>8}"
            lines.append(f"{cond:<{COND}} {cal:<27}{cells}{counts}")
    return "\n".join(lines)


def subgroup_table(rows: dict[str, dict[str, dict]], calibrations: tuple[str, ...]) -> str:
    """Per subgroup (rows) and condition x calibration (columns): keypoint ECE over its floor's 90th percentile,
    where the subgroup has >= 300 keypoints ('.' otherwise); * above 1, ** above 2."""
    cols = [(cond, cal) for cond, by_cal in rows.items() for cal in by_cal
            if cal.split(" (")[0] in calibrations and "against_floors" in by_cal[cal]]
    seen = {n for c, k in cols for n in rows[c][k]["against_floors"]["subgroups"]}
    names = [n for n in subgroup_names() if n in seen]
    short = {"mixture": "iso", "conditional": "cond"}
    labels = [f"{c[:10]}/{short.get(k.split(' (')[0], k[:4])}" for c, k in cols]
    width = max(len(x) for x in labels) + 1
    lines = [f"{'subgroup (kp ECE / floor p90)':<30}" + "".join(f"{x:>{width}}" for x in labels)]
    lines.append("-" * len(lines[0]))
    for name in names:
        cells = ""
        for c, k in cols:
            f = rows[c][k]["against_floors"]["subgroups"].get(name, {}).get("keypoint")
            if f is None or f["n"] < rows[c][k]["against_floors"]["subgroup_counts"]["min_keypoints"]:
                cells += f"{'.':>{width}}"
                continue
            r = f["ece"] / f["floor_p90"]
            cells += f"{'%.2f' % r + ('**' if r > 2 else '*' if r > 1 else ''):>{width}}"
        lines.append(f"{name:<30}{cells}")
    return "\n".join(lines)


def same_network(a: str, b: str) -> bool:
    """Do two model files hold the same network (config and weights)? Then one's raw outputs are the other's."""
    (ma, ca, _), (mb, cb, _) = load_model(a), load_model(b)
    sa, sb = ma.state_dict(), mb.state_dict()
    return ca == cb and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--raw-of", help="use the cached raw outputs of this model file: for a --model that differs "
                                     "from it only in its calibration (checked: the networks must be equal)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "conditions"))
    ap.add_argument("--json", help="where the figures go (default bench/results/trust_conditions_MODEL.json)")
    ap.add_argument("--lspet", type=int, default=1000, help="held-out LSPET persons to run (of 1,000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N val persons (a quick look)")
    ap.add_argument("--draws", type=int, default=100, help="redraws per floor (and twice as many per interval)")
    ap.add_argument("--video-scenes", type=int, nargs="*", default=[],
                    help="also these tracked scenes (seeds; 0-8 tune the video calibration: judge on others)")
    ap.add_argument("--video-other-background", type=int, nargs="*", default=[],
                    help="also these held-out tracking scenes (another room, people no tuning scene shows)")
    ap.add_argument("--video-degrade", nargs="*", default=[], choices=sorted(DEGRADED),
                    help="also the video scenes downscaled by 2 (half) or at MJPG quality 20 (jpeg), a row each")
    ap.add_argument("--video-only", action="store_true", help="only the video rows (no photo conditions)")
    ap.add_argument("--frames", type=int, default=90, help="frames per --video scene")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the shared data this benchmark runs on is not here")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.raw_of and not same_network(args.model, args.raw_of):
        raise SystemExit(f"--raw-of {args.raw_of}: its network differs from {args.model}'s")
    if args.video_only and not (args.video_scenes or args.video_other_background):
        raise SystemExit("--video-only: name --video-scenes or --video-other-background")
    runs, meta = (([], load_model(args.model)[2]) if args.video_only else
                  build_runs(args.model, work, args.lspet, args.progress, args.limit, args.threads,
                             raw_of=args.raw_of))
    shipped = calibration_from_meta(meta, str(args.model))
    mixture = [r for r in runs if r.name in MIXTURE]
    judged = [r for r in runs if r.name in HELD_OUT_CUTS]
    rows: dict[str, dict[str, dict]] = {run.name: {} for run in runs}
    if shipped is not None:
        for run in runs:
            out = shipped_outputs(run, shipped)
            rows[run.name]["shipped"] = condition_figures(run, out, shipped.occluded_over_visible) | {
                "against_floors": calibration_against_floors(run, out, shipped.occluded_over_visible,
                                                             draws=args.draws)}
    ratios_of = {}
    for label, conditional in CALIBRATIONS.items() if runs else ():
        fitted = fit_over_conditions(mixture, conditional=conditional)
        ratios_of[label] = fitted.occluded_over_visible
        outputs, ratios = cross_fit_over_conditions(mixture, conditional=conditional, judged=judged)
        honest = {r.name: (o, q) for r, o, q in zip(mixture + judged, outputs, ratios)}
        for run in runs:
            out, ratio = honest.get(run.name) or (shipped_outputs(run, fitted), fitted.occluded_over_visible)
            name = f"{label} (cross-fitted)" if run.name in honest else f"{label} (held out)"
            rows[run.name][name] = condition_figures(run, out, ratio) | {
                "against_floors": calibration_against_floors(run, out, ratio, draws=args.draws)}
    if args.video_scenes or args.video_other_background:
        rows |= video_rows(args.model, None if shipped is None else shipped.video, work, args.video_scenes,
                           args.video_other_background, args.frames, args.threads, tuple(args.video_degrade))
    print(f"model {args.model} ({model_file(args.model).name})")
    print("\nCalibration against its floor (what a perfectly calibrated predictor shows on as many samples; "
          "interval: 95 % bootstrap by photograph, video by track). flip on/off: val vs val_noflip; val_cut2 and "
          "lspet_out are never fitted on; video: `no map` is the records without the model's video calibration.")
    print(floors_table(rows))
    if runs:
        print("\nSubgroups a user can see at run time")
        print(subgroup_table(rows, tuple(CALIBRATIONS)))
    print("\nEvery figure")
    print(table(rows))
    only = "_video" if args.video_only else ""
    dest = Path(args.json) if args.json else ROOT / "bench" / "results" / f"trust_conditions_{args.model}{only}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"model": str(args.model), "file": model_file(args.model).name, "conditions": rows}
                      | ({"mixture_occluded_over_visible": ratios_of["mixture"]} if ratios_of else {}), dest)
    print(f"figures: {dest}")


if __name__ == "__main__":
    main()
