"""Per-crop latency of a posecal model on real crops: batch 1, 2 threads, median over >= 50 crops.

Prints GFLOPs (pose network alone and with the heads), the model forward time with all its heads
(eager, TorchScript-frozen, which folds BatchNorm into the convolutions, and ONNX Runtime) and the whole
per-crop pipeline (affine crop + flip-test forward as one batch of 2 + DARK decode).
Usage: python bench/latency.py [--model CKPT] [--n 100]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from posecal.checkpoint import load_model
from posecal.codec import decode
from posecal.data.coco import load_coco_persons
from posecal.data.topdown import TopDownDataset
from posecal.export import OnnxEstimator, OutputTuple, onnx_bytes

CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-val2017-crops"


def median_ms(fn, inputs, warmup: int = 5) -> float:
    for x in inputs[:warmup]:
        fn(x)
    times = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg, _ = load_model(args.model)
    records = load_coco_persons(CROPS / "annotations" / "val.json", CROPS / "images")[: args.n]
    ds = TopDownDataset(records, cfg.input_wh)
    inputs = [ds[i]["image"][None] for i in range(len(ds))]
    gflops = {}
    for name, fn in (("pose", model.forward_pose), ("all", model)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(inputs[0])
        gflops[name] = counter.get_total_flops() / 1e9
    ort = OnnxEstimator(onnx_bytes(model, cfg, flip_test=False), threads=args.threads)
    with torch.inference_mode():
        eager = median_ms(model, inputs)
        frozen = torch.jit.freeze(torch.jit.trace(OutputTuple(model, False).eval(), inputs[0]))
        jit = median_ms(frozen, inputs)
        ort_ms = median_ms(ort.run, inputs)
        frozen_flip = torch.jit.freeze(torch.jit.trace(OutputTuple(model, True).eval(), inputs[0]))

        def pipeline(i):
            return decode(frozen_flip(ds[i]["image"][None])[0].numpy())

        full = median_ms(pipeline, list(range(len(ds))))
    print(f"model {args.model or 'default'}, input {cfg.input_wh[0]}x{cfg.input_wh[1]} (w x h), "
          f"{args.threads} threads, batch 1, median over {len(inputs)} real val crops")
    extra = gflops["all"] / gflops["pose"] - 1
    print(f"compute:                      {gflops['all']:6.3f} GFLOPs/crop with all heads, {gflops['pose']:.3f} "
          f"pose only (heads +{100 * extra:.1f} %)")
    print(f"forward, eager:               {eager:6.2f} ms/crop")
    print(f"forward, TorchScript frozen:  {jit:6.2f} ms/crop")
    print(f"forward, ONNX Runtime:        {ort_ms:6.2f} ms/crop")
    print(f"crop + flip-test forward + DARK decode (frozen): {full:6.2f} ms/crop")


if __name__ == "__main__":
    main()
