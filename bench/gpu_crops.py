"""Per-crop time of the shipped `accurate` model on a GPU (PyTorch backend) beside the same machine's CPU
(onnxruntime), end to end through the API on one real frame's given boxes (python bench/gpu_crops.py FRAME.jpg).

Why PyTorch on the GPU: onnxruntime's CUDA build (the `gpu` extra) is a 256 MB wheel, over what the lent GPU
machine can be sent in a call, and that machine's onnxruntime is the CPU build; the figure here is what a GPU node
gives with `--backend torch --device cuda` (the `train` extra), the nearest measured stand-in for the capacity
model in docs/scale.md. The frame's seven boxes are given (no detector), repeated to fill the larger batches.
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from posecal.inference.predictor import Predictor

# six walkers of vtest_pedestrians_20s.avi frame 100 (x, y, w, h) as the shipped detector boxes them, and one box
# on the pavement: the network's time does not depend on what a crop shows
BOXES = [[277, 427, 69, 147], [637, 297, 38, 110], [559, 195, 37, 90], [667, 207, 37, 92], [447, 301, 42, 117],
         [183, 143, 28, 65], [500, 100, 30, 80]]


def per_crop_ms(predictor: Predictor, bgr: np.ndarray, boxes: list, rounds: int) -> float:
    predictor(bgr, boxes=boxes)                      # warm-up: graphs, kernels, allocators
    predictor(bgr, boxes=boxes)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        predictor(bgr, boxes=boxes)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) / len(boxes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frame")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=16, help="the CPU's onnxruntime threads")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bgr = cv2.imread(args.frame)
    rows = []
    import torch

    devices = ["cuda"] if torch.cuda.is_available() else []
    for flip in (True, False):
        for device, backend, batch, crops in [(d, "torch", b, c) for d in devices for b, c in ((1, 7), (16, 112),
                                                                                              (64, 448))] + \
                [("cpu", "onnx", 1, 7), ("cpu", "onnx", 16, 112)]:
            boxes = (BOXES * (crops // len(BOXES)))[:crops]
            pr = Predictor("accurate", device=device, backend=backend, batch_size=batch, flip=flip,
                           threads=args.threads, detector=None, verifier=None)
            ms = per_crop_ms(pr, bgr, boxes, args.rounds)
            rows.append({"device": device, "backend": backend, "batch": batch, "flip": flip, "crops": crops,
                         "ms_per_crop": round(ms, 3), "crops_per_s": round(1000 / ms, 1)})
            print(json.dumps(rows[-1]), flush=True)
            if args.json:                            # after every row: a later failure keeps what was measured
                with open(args.json, "w") as f:
                    json.dump({"gpu": torch.cuda.get_device_name(0) if devices else None, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
