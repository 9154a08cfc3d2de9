"""Params, GMACs and CPU latency of every pose network posecal builds, beside the reference
(python lab/bench/backbones.py).

For each model.backbone: parameters and multiply-adds of the pose network (backbone + heatmap head, no quality
heads) at 256x192, counted as ../shared/reference/README.md counts them (torch.utils.flop_counter: conv,
transposed conv and matmul; GMACs = FLOPs / 2 / 1e9), next to the figures measured there on the official model
definitions and the published ones (HRNet repo tool: MACs in 2^30 units, deconvolutions counted 4x); then the
eager CPU latency per crop (batch 1, median over --n forwards after 2 warm-ups; inputs are random, the time does
not depend on the values). The hourglass is built with 16 outputs, as the MPII checkpoints the reference lists.
Usage: python lab/bench/backbones.py [--backbones resnet50 hrnet_w32 ...] [--n 10] [--threads 2] [--input-wh 192 256]
       [--cpu-time]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from posecal.models.estimator import BACKBONES, HOURGLASS_STACKS, build_estimator

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
REFERENCE_FILES = {"hrnet_w32": "hrnet_w32_256x192.json", "hrnet_w48": "hrnet_w48_256x192.json",
                   "resnet50": "pose_resnet_50_256x192.json", "resnet101": "pose_resnet_101_256x192.json",
                   "resnet152": "pose_resnet_152_256x192.json", "hourglass_2": "stacked_hourglass_2.json",
                   "hourglass_8": "stacked_hourglass_8.json"}
# Published figures (papers / repo READMEs) as the reference README quotes them: params (M), "GFLOPs".
PUBLISHED = {"hrnet_w32": (28.5, 7.1), "hrnet_w48": (63.6, 14.6), "resnet50": (34.0, 8.9),
             "resnet101": (53.0, 12.4), "resnet152": (68.6, 15.7), "hourglass_8": (25.1, 14.3)}


def reference_figures(backbone: str) -> tuple[int | None, float | None]:
    """(params, GMACs at 256x192) measured on the official definition, when ../shared/reference has them."""
    path = REFERENCE / REFERENCE_FILES.get(backbone, "-")
    if not path.is_file():
        return None, None
    ref = json.loads(path.read_text())
    gmacs = ref["at_256x192"]["gmacs"] if "at_256x192" in ref else ref["gmacs"]
    return ref["params"], gmacs


def measure(backbone: str, input_wh: tuple[int, int], n: int, clock=time.perf_counter) -> tuple[int, float, float]:
    keypoints = 16 if backbone in HOURGLASS_STACKS else 17
    model = build_estimator(num_keypoints=keypoints, imagenet=False, backbone=backbone).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, input_wh[1], input_wh[0])
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model.forward_pose(x)
        gmacs = counter.get_total_flops() / 2 / 1e9
        for _ in range(2):
            model.forward_pose(x)
        times = []
        for _ in range(n):
            t = clock()
            model.forward_pose(x)
            times.append((clock() - t) * 1000)
    return params, gmacs, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    ap.add_argument("--input-wh", type=int, nargs=2, default=(192, 256), metavar=("W", "H"))
    ap.add_argument("--n", type=int, default=10, help="timed forwards per backbone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the process's CPU time, not wall time: with --threads 1 it hardly depends on what "
                         "else the machine runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    w, h = args.input_wh
    print(f"pose network (backbone + heatmap head) at {w}x{h} (w x h); GMACs = FLOPs/2/1e9 (FlopCounterMode); "
          f"CPU latency batch 1, {args.threads} threads, median {'CPU' if args.cpu_time else 'wall'} time of {args.n}")
    print(f"{'backbone':18s} {'params':>12s} {'ref params':>12s} {'GMACs':>7s} {'ref GMACs':>9s} "
          f"{'published (M, GFLOPs)':>22s} {'ms/crop':>8s}")
    for backbone in args.backbones:
        params, gmacs, ms = measure(backbone, (w, h), args.n, clock)
        ref_params, ref_gmacs = reference_figures(backbone) if (w, h) == (192, 256) else (None, None)
        pub = PUBLISHED.get(backbone)
        ref_p = f"{ref_params:,d}" if ref_params else "-"
        ref_g = f"{ref_gmacs:.3f}" if ref_gmacs else "-"
        pub_s = f"{pub[0]}M, {pub[1]}" if pub else "-"
        print(f"{backbone:18s} {params:12,d} {ref_p:>12s} {gmacs:7.3f} {ref_g:>9s} {pub_s:>22s} {ms:8.1f}", flush=True)


if __name__ == "__main__":
    main()
