"""The docs' numbers in one machine-readable file (python bench/doc_numbers.py [--print readme|val|conditions] [--update-docs]).

Reads what holds measured numbers and writes bench/results/doc_numbers.json, from which README.md's models table
and MODEL_CARD.md's val and per-condition tables are printed (tests/cli/test_docs.py checks that those tables equal
what this file gives; after a bench or a model changes, run this script with --update-docs, which rewrites those
tables and MODEL_CARD's tracking table in place, then read the prose around them):

- docs/eval-val/MODEL/metrics.json: `posecal eval --model MODEL --annotations VAL --images IMAGES --out
  docs/eval-val/MODEL` (val split, 822 persons, GT boxes, flip test; the model's stored calibration, which was
  fitted on this same split, so ECEs there are in-sample); `docs/eval-val/MODEL_noflip/` likewise with --no-flip
  where it exists;
- bench/results/trust_conditions_accurate.json: `python bench/trust_conditions.py --model accurate --video-scenes
  9 10 11 12 13 14 --video-other-background 0 1 2 3 4 5` (the accurate model per condition; val conditions
  cross-fitted); its video rows from the same with `--video-only --video-degrade half jpeg blur`, merged in;
- the shipped model files (posecal/weights/): their size, and what `posecal pack --calibrate-on` stored in them
  (5-fold cross-fitted figures on val, the visibility rule's ratio);
- bench/results/track_ids_MODEL.json: `python bench/track_ids.py --cache-detections --held-out 6 --track
  model=MODEL --json OUT` (tuning and held-out scenes, vtest ids), printed as MODEL_CARD's tracking table;
- bench/results/live_latency_walking.json and live_latency_vtest.json: `python bench/live_latency.py` (adaptive
  and fixed cadence side by side);
- RECORDED below: figures of bench scripts that write no JSON, each with the command that measured it.

Every figure says where it came from ("source").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "doc_numbers.json"
EVAL = ROOT / "docs" / "eval-val"
WEIGHTS = ROOT / "posecal" / "weights"
MODELS = ("accurate", "published", "fast")
sys.path.insert(0, str(ROOT))
from posecal.models.shipped import graph_weights, shipped_graph  # noqa: E402

VAL = ("val split of the COCO val2017 person crops (../shared/data/coco-val2017-crops): 822 persons on 276 "
       "photographs, GT boxes; also the selection split (it chose the epoch, the calibration and every threshold); "
       "OKS areas approximated as 0.5 x box area for 721 of the 822 (official for 101)")

# What each model is, in the docs' words (not numbers).
ABOUT = {
    "accurate": {"what": "MoveNet Thunder fine-tuned by posecal + posecal's trust model", "input": "256x256",
                 "use": "default: predict, track, eval, audit, demo, Predictor"},
    "published": {"what": "MoveNet Thunder as Google published it + posecal's trust model", "input": "256x256",
                  "use": "Google's network as published"},
    "fast": {"what": "MoveNet Lightning as Google published it + posecal's trust model", "input": "192x192",
             "use": "speed"},
}

# Measured by bench scripts that write no JSON file; each with its command (numbers as they printed them).
RECORDED = {
    "onnx_forward_ms": {
        "command": "python bench/latency.py --onnx published.onnx --shipped accurate fast --int8 --peer "
                   "../shared/models/movenet_singlepose_lightning_int8.tflite --rounds 2 --n 40 (published.onnx "
                   "from posecal export --model published)",
        "protocol": "ONNX Runtime, the float graphs with the flip test (what precision=auto runs on this CPU), "
                    "batch 1, 2 CPU threads, median over 40 real val crops; an AMD EPYC with AVX2 and no VNNI; "
                    "the three models alternated in one run, two rounds",
        "accurate": [52.41, 62.43], "published": [47.77, 54.95], "fast": [16.8, 23.9],
        "note": "2026-11-28, after fast became MoveNet Lightning + posecal's trust model (issue 74). On a CPU with "
                "VNNI auto runs the int8 graphs: accurate 24.6 ms a crop there (CHANGELOG, issue 64)"},
    "val_ap_noflip": {
        "command": "posecal eval --model M --no-flip --annotations VAL --images IMAGES --out OUT",
        "protocol": VAL + "; no flip test",
        "published": 47.3, "fast": 37.0},
    "track_fps": {
        "command": "python bench/track_fps.py --model M --skip-startup",
        "protocol": "vtest_pedestrians_20s.avi (768x576, 5-8 people, 200 frames) with --render, process start to "
                    "files written, 2 CPU threads, warm ONNX cache, idle machine; published and accurate share "
                    "one graph; fast: 2026-11-28 on an AVX2-only AMD EPYC (float, auto's choice there), alternated "
                    "with accurate (7.61 / 7.94 fps)",
        "published": [12.8, 13.1], "fast": [13.17, 14.14]},
    "startup_s": {
        "command": "python bench/track_fps.py",
        "protocol": "process start to results file, warm ONNX cache, 2 CPU cores; the first use of a model file "
                    "exports it to ONNX once (about 20 s)",
        "track_one_frame": 2.5, "predict_one_image": 2.9},
    "orientations": {
        "command": "python bench/orientation_auto.py --model published.onnx --max-persons 400",
        "protocol": "first 400 val persons, GT boxes, flip, pose score oks; the crop turned by 0 / 90 / 180 degrees",
        "model": "published",
        "1": {"ap_0": 48.6, "ap_90": 14.0, "ap_180": 7.0, "passes": 1.0},
        "4": {"ap_0": 48.2, "ap_90": 48.2, "ap_180": 48.2, "passes": 4.0},
        "auto": {"ap_0": 48.5, "ap_90": 42.2, "ap_180": 41.6, "passes": 1.26}},
    "detector": {
        "command": "python bench/detector_recall.py",
        "protocol": "the shipped SSD on the val crops' photos; scikit-image's 22 photos without people",
        "recall_iou50": 0.76, "photos_without_people_clean": 20, "photos_without_people": 22},
    "whole_image_rule": {
        "command": "python bench/detector_recall.py --pose --pose-only",
        "protocol": "the default model (accurate), the 822 val crops seen whole (one labelled person each), "
                    "--min-pose-quality 0.3",
        "model": "accurate", "people_dropped": 0.297, "empty_photos_kept": 0, "empty_photos": 22},
    "audit_pk": {
        "command": "python bench/audit_planted.py --model M",
        "protocol": "val, 5 % of each kind's eligible labels corrupted, seed 0, GT boxes, flip; precision of the "
                    "top k findings, k = planted",
        "published": {"position": 0.645, "swap": 0.705, "visibility": 0.536, "missing": 0.620},
        "fast": {"position": 0.572, "swap": 0.647, "visibility": 0.525, "missing": 0.614},
        "lite0": {"position": 0.612, "swap": 0.590, "visibility": 0.184, "missing": 0.457}},
    "int8": {
        "command": "posecal export --model M --no-flip --int8 TRAIN.json --images IMAGES, then posecal eval "
                   "--model F.onnx --no-flip on val",
        "protocol": VAL + "; no flip; activation ranges from 200 train-split crops",
        "published": {"fp32": 47.3, "int8": 45.9}, "lite0": {"fp32": 30.2, "int8": 27.2}},
}


def mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def read_json(path: Path):
    return json.loads(path.read_text())


def torch_file(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def stored_calibration(path: Path) -> dict:
    """What `posecal pack` stored in a model file: the visibility rule's ratio and the cross-fitted figures."""
    meta = torch_file(path).get("meta", {})
    cal = meta.get("calibration") or {}
    info = cal.get("fit_info") or {}
    crossed = (info.get("cross_fitted") or {}).get("cross_fitted")
    if crossed is None:
        crossed = (info.get("cross_fitted_conditions") or {}).get("val", {})
    return {"occluded_over_visible": cal.get("occluded_over_visible", 2.0), "cross_fitted_val": crossed,
            "has_in_frame": "in_frame" in cal, "has_video_calibration": "video" in cal}


def eval_figures(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    if not path.exists():
        return None
    m = read_json(path)
    vis = m["visibility"]
    return {"source": str(path.relative_to(ROOT)), "persons": m["num_instances"], "flip": m["flip_test"],
            "boxes": m["boxes"], "backend": m.get("backend"),
            "ap": m["ap"]["oks"], "ap50": m["ap50"]["oks"], "ap75": m["ap75"]["oks"], "ar": m["ar"]["oks"],
            "ap_heatmap_score": m["ap"]["heatmap"],
            "keypoint_ece_in_sample": m["keypoint_ece"].get("keypoint_quality", m["keypoint_ece"].get("opks")),
            "pose_ece_in_sample": m["pose_score_ece"].get("pose_quality", m["pose_score_ece"].get("oks")),
            "pose_pearson_in_sample": m["pose_score_pearson"].get("pose_quality", m["pose_score_pearson"]["oks"]),
            "radius_coverage_in_sample": (m.get("keypoint_radius") or {}).get("coverage"),
            "binary_vis_f1": vis["binary"]["f1"], "occluded_f1": vis["ternary"]["f1"][1],
            "ternary_weighted_f1": vis["ternary"]["f1_weighted"]}


def model_numbers(name: str, conditions: dict) -> dict:
    path = WEIGHTS / f"posecal_{name}.pt"
    graphs = [shipped_graph(name, True), shipped_graph(name, False), graph_weights(name)]
    if graphs[0].is_file():   # what the wheel carries: its two ONNX graphs and their weights file
        files = graphs
    else:                     # its PyTorch file, in the source tree only (and the shipped part it names)
        shared = torch_file(path).get("shared_weights")
        files = [path] + ([WEIGHTS / shared["file"]] if shared else [])
    out = {"file": str(path.relative_to(ROOT)), "files": [str(f.relative_to(ROOT)) for f in files],
           "file_mb": round(sum(f.stat().st_size for f in files) / 1e6, 1), "in_wheel": graphs[0].is_file(),
           **ABOUT[name]}
    cal = stored_calibration(path)
    out["occluded_over_visible"] = cal["occluded_over_visible"]
    out["val"] = eval_figures(EVAL / name)
    noflip = eval_figures(EVAL / f"{name}_noflip")
    if noflip is not None:
        out["val_ap_noflip"] = {"value": noflip["ap"], "source": noflip["source"]}
    elif name in RECORDED["val_ap_noflip"]:
        out["val_ap_noflip"] = {"value": RECORDED["val_ap_noflip"][name], "source": "RECORDED val_ap_noflip"}
    if name == "accurate":   # the conditions bench: maps fitted over the mixture of conditions, cross-fitted
        v = conditions["val"]["mixture (cross-fitted)"]
        src = "bench/results/trust_conditions_accurate.json: val, mixture (cross-fitted)"
    else:                    # what `posecal pack --calibrate-on` printed and stored: 5 folds by photograph
        v = cal["cross_fitted_val"]
        src = f"{out['file']}: meta.calibration.fit_info (posecal pack --calibrate-on, 5-fold cross-fitted)"
    out["cross_fitted"] = {"source": src, **{k: v.get(k) for k in (
        "keypoint_ece", "pose_ece", "pose_pearson", "radius_coverage", "radius_coverage_min",
        "radius_coverage_max")}}
    ms = RECORDED["onnx_forward_ms"][name]
    out["onnx_forward_ms"] = {"value": round(sum(ms) / len(ms), 1), "runs": ms, "source": "RECORDED onnx_forward_ms"}
    return out


def f3(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def f1(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def readme_table(models: dict) -> dict:
    header = ["model", "what it is", "input", "val AP", "AP50", "keypoint ECE", "pose ECE", "forward ms", "file",
              "for"]
    rows = []
    for name, m in models.items():
        ms = f1(m["onnx_forward_ms"]["value"])
        rows.append([f"`{name}`", m["what"], m["input"], f1(m["val"]["ap"]), f1(m["val"]["ap50"]),
                     f3(m["cross_fitted"]["keypoint_ece"]), f3(m["cross_fitted"]["pose_ece"]), ms,
                     f"{m['file_mb']} MB" + (" ONNX" if m["in_wheel"] else " .pt, source tree only"),
                     m["use"]])
    return {"header": header, "rows": rows}


def val_table(models: dict) -> dict:
    header = ["model", "AP", "AP50", "AP75", "AR", "AP no flip", "keypoint ECE (xf)", "pose ECE (xf)",
              "pose Pearson (xf)", "radius coverage (xf; per type)", "binary vis F1", "occluded F1",
              "visibility ratio r"]
    rows = []
    for name, m in models.items():
        v, x = m["val"], m["cross_fitted"]
        noflip = m.get("val_ap_noflip", {}).get("value")
        rows.append([f"`{name}`", f1(v["ap"]), f1(v["ap50"]), f1(v["ap75"]), f1(v["ar"]), f1(noflip),
                     f3(x["keypoint_ece"]), f3(x["pose_ece"]), f3(x["pose_pearson"]),
                     f"{f3(x['radius_coverage'])} ({f3(x['radius_coverage_min'])}–{f3(x['radius_coverage_max'])})",
                     f3(v["binary_vis_f1"]), f3(v["occluded_f1"]), f"{m['occluded_over_visible']:g}"])
    return {"header": header, "rows": rows}


CONDITIONS = [  # (key in the bench JSON, calibration column, row label)
    ("val", "mixture (cross-fitted)", "val, flip (cross-fitted)"),
    ("val_noflip", "mixture (cross-fitted)", "val, no flip (cross-fitted)"),
    ("val_cut", "mixture (cross-fitted)", "val cut by the frame (cross-fitted)"),
    ("val_jitter", "mixture (cross-fitted)", "val, detector-like boxes (cross-fitted)"),
    ("lspet_out", "shipped", "LSPET held out (shipped maps)"),
    ("video", "records as written", "video, scenes 9-14, `track --model accurate`"),
    ("video_detected", "records as written", "… detected on the frame"),
    ("video_carried", "records as written", "… carried by optical flow"),
    ("video_other_background", "records as written", "video, another room, people no tuning scene shows"),
]


def conditions_table(conditions: dict) -> dict:
    header = ["condition", "persons (video: poses)", "keypoint ECE", "pose ECE", "pose Pearson", "binary vis F1", "occluded F1",
              "radius coverage (per type)"]
    rows = []
    for key, col, label in CONDITIONS:
        c = conditions[key][col]
        rows.append([label, f"{int(c['persons']):,}", f3(c["keypoint_ece"]), f3(c["pose_ece"]),
                     f3(c["pose_pearson"]), f3(c.get("binary_vis_f1")), f3(c.get("occluded_f1")),
                     f"{f3(c['radius_coverage'])} ({f3(c['radius_coverage_min'])}–{f3(c['radius_coverage_max'])})"])
    return {"header": header, "rows": rows}


def build() -> dict:
    trust = read_json(RESULTS / "trust_conditions_accurate.json")
    conditions = trust["conditions"]
    models = {name: model_numbers(name, conditions) for name in MODELS}
    cut = conditions["val_cut"]["shipped"]
    numbers = {
        "about": "The numbers README.md and MODEL_CARD.md cite; written by bench/doc_numbers.py (its docstring "
                 "lists the sources). Do not edit by hand.",
        "val_protocol": VAL,
        "models": models,
        "conditions": {"source": "bench/results/trust_conditions_accurate.json",
                       "command": "python bench/trust_conditions.py --model accurate --video-scenes 9 10 11 12 13 14 --video-other-background 0 1 2 3 4 5",
                       "figures": conditions},
        "cut_by_frame_shipped": {k: cut[k] for k in ("cut_off_called_absent", "labelled_called_absent",
                                                     "in_frame_ece", "in_frame_auroc", "absent_recall",
                                                     "absent_precision")},
        "val_labelled_called_absent": conditions["val"]["shipped"]["labelled_called_absent"],
        "recorded": RECORDED,
        "readme_table": readme_table(models),
        "card_val_table": val_table(models),
        "card_conditions_table": conditions_table(conditions),
        "tracking": {name: tracking_numbers(name) for name in MODELS},
        "live_latency": {video: live_numbers(video) for video in ("walking", "vtest")},
    }
    numbers["card_tracking_table"] = tracking_table(numbers["tracking"])
    return numbers


TRACK_COMMAND = "python bench/track_ids.py --cache-detections --held-out 6 --track model=M --json OUT"
TRACK_PROTOCOL = ("track's defaults (detector every 3rd frame, flow between, no flip, 1 thread); tuning: 5 synthetic "
                  "scenes x 150 frames, 21 val-split people over vtest's background, which chose the tracker's "
                  "knobs; held-out: 6 scenes x 150 frames, 25 other people over another room (nothing chosen on "
                  "them); exact truth, box IoU >= 0.5 (motmetrics); vtest_pedestrians_20s.avi: distinct ids for "
                  "10 people seen")


def tracking_numbers(name: str) -> dict:
    """bench/track_ids.py's results for one model (bench/results/track_ids_<model>.json)."""
    path = RESULTS / f"track_ids_{name}.json"
    report = read_json(path)
    keep = ("idf1", "num_switches", "switches_per_100_frames", "mota", "num_misses", "num_objects",
            "num_false_positives", "predicted_tracks", "num_unique_objects", "keypoint_error")
    return {"source": str(path.relative_to(ROOT)), "command": TRACK_COMMAND.replace(" M ", f" {name} "),
            "protocol": TRACK_PROTOCOL,
            "tuning": {k: report["scenes"]["OVERALL"][k] for k in keep},
            "held_out": {k: report["held_out"]["OVERALL"][k] for k in keep},
            "vtest_ids": report["vtest"]["distinct_ids"]}


def live_numbers(video: str) -> dict:
    """bench/live_latency.py's results (bench/results/live_latency_<video>.json): adaptive and fixed cadence."""
    path = RESULTS / f"live_latency_{video}.json"
    rows = read_json(path)
    return {"source": str(path.relative_to(ROOT)), "command": "python bench/live_latency.py --models "
            "fast,published,accurate" + ("" if video == "walking" else " --video vtest_pedestrians_20s.avi --fps 10"),
            "rows": [{k: r[k] for k in ("model", "cadence_mode", "arrived", "processed", "share", "fps",
                                        "line_p50", "line_p95")} for r in rows]}


def tracking_table(tracking: dict) -> dict:
    header = ["model", "tuning IDF1", "tuning switches", "tuning MOTA", "held-out IDF1",
              "held-out switches (per 100 frames)", "held-out MOTA", "held-out person-frames missed",
              "held-out false pos.", "held-out ids (25 people)", "vtest ids (10 people)"]
    rows = []
    for name, t in tracking.items():
        a, b = t["tuning"], t["held_out"]
        rows.append([f"`{name}`", f3(a["idf1"]), f"{a['num_switches']:.0f}", f3(a["mota"]), f3(b["idf1"]),
                     f"{b['num_switches']:.0f} ({b['switches_per_100_frames']:.2f})", f3(b["mota"]),
                     f"{b['num_misses']:.0f} ({100 * b['num_misses'] / b['num_objects']:.1f} %)",
                     f"{b['num_false_positives']:.0f}", f"{b['predicted_tracks']}", f"{t['vtest_ids']}"])
    return {"header": header, "rows": rows}


def markdown(table: dict) -> str:
    lines = ["| " + " | ".join(table["header"]) + " |", "|" + "---|" * len(table["header"])]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines)


DOC_TABLES = [  # (document, key): the table whose header starts with the first two cells of the new one
    (ROOT / "README.md", "readme_table"),
    (ROOT / "MODEL_CARD.md", "card_val_table"),
    (ROOT / "MODEL_CARD.md", "card_conditions_table"),
    (ROOT / "MODEL_CARD.md", "card_tracking_table"),
]


def update_docs(numbers: dict) -> None:
    """Rewrite each doc table in place: the table whose header starts like the new one's is replaced."""
    for path, key in DOC_TABLES:
        table = numbers[key]
        lines = path.read_text().split("\n")
        prefix = "| " + " | ".join(table["header"][:2]) + " |"
        starts = [i for i, line in enumerate(lines) if line.lstrip().startswith(prefix)]
        if len(starts) != 1:
            raise SystemExit(f"{path.name}: expected one table starting {prefix!r}, found {len(starts)}")
        indent = lines[starts[0]][:len(lines[starts[0]]) - len(lines[starts[0]].lstrip())]   # a table in a list item
        end = starts[0]
        while end < len(lines) and lines[end].lstrip().startswith("|"):
            end += 1
        lines[starts[0]:end] = [indent + line for line in markdown(table).split("\n")]
        path.write_text("\n".join(lines))
        print(f"updated {path.name}: {key}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", choices=["readme", "val", "conditions"], action="append", default=[],
                    help="also print this table as markdown (README models table, MODEL_CARD val or conditions)")
    ap.add_argument("--update-docs", action="store_true",
                    help="rewrite README's models table and MODEL_CARD's val and conditions tables in place")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    numbers = build()
    args.out.write_text(json.dumps(numbers, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.update_docs:
        update_docs(numbers)
    key = {"readme": "readme_table", "val": "card_val_table", "conditions": "card_conditions_table"}
    for which in args.print:
        print(markdown(numbers[key[which]]) + "\n")


if __name__ == "__main__":
    main()
