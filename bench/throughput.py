"""Crops/s (PyTorch vs ONNX Runtime), `posecal predict` s/image and memory (python bench/throughput.py [--model F]).

Product speed on real COCO val person crops (../shared), 2 threads. Prints:

1. model crops per second, PyTorch eager vs ONNX Runtime, batch 1 and 16 (forward with all heads, no flip);
2. end-to-end `posecal predict` with a person detector on a folder of real images: seconds per image;
3. peak memory (max RSS) of that `posecal predict` process.

Usage: python bench/throughput.py [--model FILE] [--images 100] [--detector ../shared/models/...onnx]
                                  [--backend torch|onnx]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from posecal.models.checkpoint import load_model
from posecal.data.coco import load_coco_persons
from posecal.data.topdown import TopDownDataset
from posecal.export.onnx import onnx_bytes
from posecal.export.session import OnnxEstimator

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"


def crops_per_second(fn, batches: list[torch.Tensor], warmup: int = 2) -> float:
    for b in batches[:warmup]:
        fn(b)
    n, t = 0, time.perf_counter()
    for b in batches:
        fn(b)
        n += len(b)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--detector", default=str(SHARED / "models" / "light_person_detector_192.onnx"))
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="posecal predict's backend")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg, _ = load_model(args.model)
    records = load_coco_persons(CROPS / "annotations" / "val.json", CROPS / "images")[:96]
    ds = TopDownDataset(records, cfg.input_wh)
    crops = torch.stack([ds[i]["image"] for i in range(len(ds))])
    ort_model = OnnxEstimator(onnx_bytes(model, cfg), threads=args.threads)
    print(f"model crops/s ({len(crops)} real val crops, {cfg.input_wh[0]}x{cfg.input_wh[1]}, all heads, "
          f"{args.threads} threads):")
    with torch.inference_mode():
        for bs in (1, 16):
            batches = list(crops.split(bs))
            eager = crops_per_second(model, batches)
            ort = crops_per_second(lambda b: ort_model.run(b.numpy()), batches)
            print(f"  batch {bs:2d}: PyTorch eager {eager:6.1f}   ONNX Runtime {ort:6.1f}   ({ort / eager:.2f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        names = sorted({r.image_path for r in load_coco_persons(CROPS / "annotations" / "val.json",
                                                                 CROPS / "images")})[: args.images]
        for p in names:
            shutil.copy(p, folder)
        cmd = [sys.executable, "-m", "posecal.cli.main", "predict", str(folder), "--detector", args.detector,
               "--out", str(Path(tmp) / "res.json"), "--threads", str(args.threads), "--no-progress",
               "--backend", args.backend]
        if args.backend == "onnx":  # export once beforehand, as a user would (`posecal export`)
            onnx_file = Path(tmp) / "posecal.onnx"
            onnx_file.write_bytes(onnx_bytes(model, cfg))
            cmd += ["--model", str(onnx_file)]
        elif args.model:
            cmd += ["--model", args.model]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"posecal predict --detector {Path(args.detector).name} --backend {args.backend} on {len(names)} real "
          f"images (flip test on, "
          f"start-up included): {seconds:.1f}s, {1000 * seconds / len(names):.0f} ms/image; "
          f"peak memory (max RSS) {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
