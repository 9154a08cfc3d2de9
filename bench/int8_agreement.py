"""How closely the shipped int8 graphs answer as the float graphs, on the CPU this runs on (issue 64 item 1).

    python bench/int8_agreement.py [--models accurate fast] [--flip on off] [--limit N] [--int8-dir DIR]

onnxruntime picks its int8 kernels by CPU: AVX2 and AVX-512 without VNNI multiply uint8 by int8 in 16-bit pairs
that can saturate, VNNI does not, so one graph can agree with float on one machine and not on another. This names
the CPU's instruction sets (as numpy's runtime dispatch reads them, so an emulated CPU, e.g.
`qemu-x86_64 -cpu Haswell .venv/bin/python bench/int8_agreement.py --limit 60`, is named as what it emulates),
runs each model's float and int8 graph on the same val persons (GT boxes, `posecal eval`'s path) and prints per
model and flip setting: mean and worst |ΔOKS| between the two graphs' poses (each scored against the truth), and
each graph's AP, keypoint and pose ECE (with the floor's 90th percentile) and visibility F1s
(bench/paired_eval.py's figures). --limit N: N persons spread evenly over val (an emulated CPU is ~50x slower).
--int8-dir: judge candidate int8 graphs (tools/quantize_shipped_graphs.py --out DIR) instead of the shipped ones.
Writes bench/results/int8_agreement_<cpu kind>.json unless --no-write.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from paired_eval import VAL, figures  # noqa: E402

from posecal.calibration.quality import truth_of  # noqa: E402
from posecal.evaluation.evaluate import EvalConfig, evaluate  # noqa: E402
from posecal.metrics.coco_ap import load_coco_gt  # noqa: E402
from posecal.models.shipped import int8_graph, shipped_graph  # noqa: E402

IMAGES = VAL.parent.parent / "images"
KERNEL_FEATURES = ("AVX2", "AVX512F", "AVX512BW", "AVX512VNNI", "AVX_VNNI", "ASIMD", "ASIMDDP")


def cpu_kind() -> dict:
    """The CPU's name and the instruction sets onnxruntime's int8 kernels choose between, as numpy's runtime
    dispatch (CPUID on x86) sees them; 'kind' is the short label the result file is named by."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    have = [f for f in KERNEL_FEATURES if features.get(f)]
    kind = ("vnni" if {"AVX512VNNI", "AVX_VNNI"} & set(have) else "avx512" if "AVX512BW" in have
            else "avx2" if "AVX2" in have else "arm-dotprod" if "ASIMDDP" in have else platform.machine())
    return {"kind": kind, "machine": platform.machine(), "name_in_cpuinfo": name, "features": have}


def subset(annotations: Path, limit: int | None, folder: Path) -> tuple[Path, dict]:
    data = json.loads(annotations.read_text())
    if limit and limit < len(data["annotations"]):
        keep = np.unique(np.linspace(0, len(data["annotations"]) - 1, limit).round().astype(int))
        data["annotations"] = [data["annotations"][i] for i in keep]
        ids = {a["image_id"] for a in data["annotations"]}
        data["images"] = [im for im in data["images"] if im["id"] in ids]
        annotations = folder / "val_subset.json"
        annotations.write_text(json.dumps(data))
    return annotations, data


def run_graph(graph: Path, flip: bool, annotations: Path, out: Path, threads: int) -> dict:
    evaluate(EvalConfig(annotations=str(annotations), images=str(IMAGES), out=str(out), model=str(graph), flip=flip,
                        threads=threads, progress=False, plots=False))
    return {r["image_id"]: r for r in json.loads((out / "results.json").read_text())}


def person_oks(results: dict, ids, anns) -> np.ndarray:
    kp = np.array([np.array(results[i]["keypoints"]).reshape(-1, 3)[:, :2] for i in ids])
    truth = np.array([np.array(anns[i]["keypoints"]).reshape(-1, 3) for i in ids], float)
    return truth_of(kp, truth, np.array([anns[i]["area"] for i in ids]))[2]


def agreement(name: str, flip: bool, int8_dir: Path | None, annotations: Path, data: dict, tmp: Path,
              threads: int) -> dict:
    int8 = int8_graph(name, flip) if int8_dir is None else int8_dir / int8_graph(name, flip).name
    runs = [run_graph(g, flip, annotations, tmp / f"{name}-{flip}-{i}", threads)
            for i, g in enumerate((shipped_graph(name, flip), int8))]
    anns = {a["image_id"]: a for a in data["annotations"]}
    ids = sorted(set(runs[0]) & set(runs[1]))
    groups = np.array([anns[i].get("orig_image_id", i) for i in ids])
    gt = load_coco_gt(data)
    oks = [person_oks(r, ids, anns) for r in runs]
    delta = np.abs(oks[1] - oks[0])
    delta = delta[np.isfinite(delta)]
    return {"model": name, "flip": flip, "int8_graph": str(int8), "persons": len(ids),
            "mean_abs_delta_oks": round(float(delta.mean()), 4), "worst_abs_delta_oks": round(float(delta.max()), 4),
            "persons_delta_oks_over_0.05": int((delta > 0.05).sum()),
            "float": figures(runs[0], ids, anns, groups, gt), "int8": figures(runs[1], ids, anns, groups, gt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["accurate", "fast"], choices=["accurate", "fast"])
    ap.add_argument("--flip", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--limit", type=int, default=None, help="persons spread evenly over val (default: all 822)")
    ap.add_argument("--int8-dir", type=Path, default=None, help="candidate int8 graphs (default: the shipped ones)")
    ap.add_argument("--annotations", type=Path, default=VAL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not args.annotations.is_file():
        ap.error(f"{args.annotations}: not here (../shared)")
    cpu = cpu_kind()
    print(f"CPU: {cpu['kind']} ({cpu['name_in_cpuinfo']}; {' '.join(cpu['features']) or 'none of ' + str(KERNEL_FEATURES)})")
    import onnxruntime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        annotations, data = subset(args.annotations, args.limit, Path(tmp))
        for name in args.models:
            for flip in args.flip:
                row = agreement(name, flip == "on", args.int8_dir, annotations, data, Path(tmp), args.threads)
                rows.append(row)
                f, q = row["float"], row["int8"]
                print(f"{name} flip {flip}: {row['persons']} persons, |ΔOKS| mean {row['mean_abs_delta_oks']:.4f} "
                      f"worst {row['worst_abs_delta_oks']:.3f} (> 0.05: {row['persons_delta_oks_over_0.05']}); "
                      f"AP {f['ap']:.1f} -> {q['ap']:.1f}; keypoint ECE {f['keypoint_ece']:.4f} -> "
                      f"{q['keypoint_ece']:.4f} (floor p90 {q['keypoint_ece_floor_p90']:.4f}); pose ECE "
                      f"{f['pose_ece']:.4f} -> {q['pose_ece']:.4f} (floor p90 {q['pose_ece_floor_p90']:.4f}); "
                      f"visibility F1 {f['visibility_f1_macro']:.3f} -> {q['visibility_f1_macro']:.3f}", flush=True)
    out = {"cpu": cpu, "onnxruntime": onnxruntime.__version__, "limit": args.limit, "rows": rows}
    if not args.no_write:
        path = ROOT / "bench" / "results" / f"int8_agreement_{cpu['kind']}{'' if args.int8_dir is None else '_candidate'}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
