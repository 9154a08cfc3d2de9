"""Per-crop latency of a posecal model on real crops (python bench/latency.py [--model F | --onnx F ...]).

Batch 1, 2 threads, median over >= 50 crops.
Prints GFLOPs (pose network alone and with the heads, one pass), the model forward time with all its heads
(eager, TorchScript-frozen, which folds BatchNorm into the convolutions, and ONNX Runtime; with --flip-test
each forward is the in-model flip test, one batch of 2) and the whole per-crop pipeline (affine crop +
ONNX Runtime flip-test forward as one batch of 2 + the model's own decode: DARK, or MoveNet's centre-guided decode).
Without --model it times an untrained model of the given backbone and input size (latency does not depend on
the weights): pose network only, or with the heads with --quality-heads.
--onnx FILE ...: only the ONNX Runtime forward of exported files (`posecal export`, fp32 or `--int8`; flip test
as exported), each on the same real crops.
Usage: python bench/latency.py [--model CKPT | --backbone efficientnet_lite1 --input-wh 192 256] [--flip-test]
       [--n 100] [--threads 2] [--cpu-time]
       python bench/latency.py --onnx fp32.onnx int8.onnx [--n 100] [--threads 2] [--cpu-time] [--rounds 1]
--rounds R: the --onnx files timed in turn, R times (a model against another in one run, alternated so that the
machine's drift falls on both alike).
--shipped NAME ...: with or instead of --onnx, a shipped model's two packaged graphs (flip test in the graph, and
without), as `posecal predict` runs them; --int8: their int8 versions too (tools/quantize_shipped_graphs.py).
--peer FILE.tflite: a MoveNet SinglePose .tflite (e.g. ../shared/models/movenet_singlepose_lightning_int8.tflite,
the `movenet` extra) timed in the same rounds on the same persons (its own uint8 square crops, batch 1, same
threads; set_tensor + invoke + get_tensor), and each graph's time printed as a multiple of it (issue 55's
per-crop yardstick): python bench/latency.py --shipped accurate fast --peer ../shared/models/movenet_singlepose_lightning_int8.tflite --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from posecal.models.checkpoint import load_model, model_from_config
from posecal.inference.topdown import decode_outputs
from posecal.models.config import ModelConfig, default_decode, network_input
from posecal.data.coco import load_coco_persons
from posecal.data.topdown import TopDownDataset
from posecal.export.onnx import OutputTuple, onnx_bytes
from posecal.export.session import OnnxEstimator
from posecal.models.shipped import int8_graph, shipped_graph

CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-val2017-crops"


def median_ms(fn, inputs, warmup: int = 5, clock=time.perf_counter) -> float:
    for x in inputs[:warmup]:
        fn(x)
    times = []
    for x in inputs:
        t = clock()
        fn(x)
        times.append((clock() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", help="model file (default: the shipped model, unless --backbone/--input-wh)")
    ap.add_argument("--backbone", help="without --model: time an untrained model with this backbone")
    ap.add_argument("--input-wh", type=int, nargs=2, metavar=("W", "H"), help="without --model: input size")
    ap.add_argument("--quality-heads", action="store_true", help="without --model: with the quality heads")
    ap.add_argument("--flip-test", action="store_true", help="time forwards with the flip test (batch of 2)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the process's CPU time, not wall time: with --threads 1 it hardly depends on what else "
                         "the machine runs (with more threads it also counts their spin-waits)")
    ap.add_argument("--onnx", nargs="+", metavar="FILE", help="time these exported .onnx files only")
    ap.add_argument("--rounds", type=int, default=1, help="with --onnx: time the files in turn this many times")
    ap.add_argument("--shipped", nargs="+", metavar="NAME", help="time these shipped models' packaged graphs "
                    "(flip and no flip), as --onnx does")
    ap.add_argument("--int8", action="store_true", help="with --shipped: also each model's int8 graphs "
                    "(tools/quantize_shipped_graphs.py), in the same rounds")
    ap.add_argument("--peer", metavar="FILE.tflite", help="with --onnx/--shipped: a MoveNet .tflite timed in the "
                    "same rounds, each graph's time also given as a multiple of it")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.onnx or args.shipped:
        graphs = (shipped_graph, int8_graph) if args.int8 else (shipped_graph,)
        files = list(args.onnx or []) + [str(graph(name, flip)) for name in args.shipped or []
                                         for graph in graphs for flip in (True, False)]
        onnx_latency(files, args.n, args.threads, clock, args.rounds, args.peer)
        return
    if args.peer:
        ap.error("--peer is timed beside --onnx or --shipped graphs")
    torch.set_num_threads(args.threads)
    untrained = args.backbone is not None or args.input_wh is not None or args.quality_heads
    if untrained and args.model:
        ap.error("--backbone, --input-wh and --quality-heads build an untrained model; leave out --model")
    if untrained:
        default = ModelConfig()
        cfg = ModelConfig(backbone=args.backbone or default.backbone, input_wh=tuple(args.input_wh or default.input_wh),
                          quality_heads=args.quality_heads)
        # a network that fixes its input (MoveNet) gets it unless --input-wh says otherwise
        cfg = network_input(cfg, given={"backbone", "quality_heads"} | ({"input_wh"} if args.input_wh else set()))
        model, name = model_from_config(cfg, imagenet=False).eval(), f"untrained {cfg.backbone}"
    else:
        (model, cfg, _), name = load_model(args.model), args.model or "default"
    records = load_coco_persons(CROPS / "annotations" / "val.json", CROPS / "images")[: args.n]
    ds = TopDownDataset(records, cfg.input_wh)
    inputs = [ds[i]["image"][None] for i in range(len(ds))]
    gflops = {}
    for part, fn in (("pose", model.forward_pose), ("all", model)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(inputs[0])
        gflops[part] = counter.get_total_flops() / 1e9
    flip = args.flip_test
    ort = OnnxEstimator(onnx_bytes(model, cfg, flip_test=flip), threads=args.threads)
    with torch.inference_mode():
        eager = median_ms(lambda x: model(x, flip_test=flip), inputs, clock=clock)
        frozen = torch.jit.freeze(torch.jit.trace(OutputTuple(model, flip).eval(), inputs[0]))
        jit = median_ms(frozen, inputs, clock=clock)
        ort_ms = median_ms(ort.run, [x.numpy() for x in inputs], clock=clock)
        ort_flip = OnnxEstimator(onnx_bytes(model, cfg, flip_test=True), threads=args.threads)

        def pipeline(i):   # what `posecal predict --backend onnx` does per crop
            return decode_outputs(ort_flip.outputs(ds[i]["image"][None].numpy(), True))

        full = median_ms(pipeline, list(range(len(ds))), clock=clock)
    print(f"model {name} (backbone {cfg.backbone}), input {cfg.input_wh[0]}x{cfg.input_wh[1]} (w x h), "
          f"{args.threads} threads, batch 1, flip test {'on (batch of 2)' if flip else 'off'}, "
          f"median {'CPU' if args.cpu_time else 'wall'} time over {len(inputs)} real val crops")
    extra = gflops["all"] / gflops["pose"] - 1
    print(f"compute (one pass, no flip):  {gflops['all']:6.3f} GFLOPs/crop with all heads, {gflops['pose']:.3f} "
          f"pose only (heads +{100 * extra:.1f} %)")
    print(f"forward, eager:               {eager:6.2f} ms/crop")
    print(f"forward, TorchScript frozen:  {jit:6.2f} ms/crop")
    print(f"forward, ONNX Runtime:        {ort_ms:6.2f} ms/crop")
    print(f"crop + ONNX Runtime flip-test forward + the model's decode ({default_decode(cfg)}): {full:6.2f} ms/crop")


def onnx_latency(files, n: int, threads: int, clock, rounds: int = 1, peer: str | None = None) -> None:
    """Batch-1 ONNX Runtime forward of exported posecal files, median over the first n val crops; the files in
    turn, `rounds` times, with a MoveNet .tflite peer (when given) timed in the same turns and each file's time
    as a multiple of the peer's in that round."""
    records = load_coco_persons(CROPS / "annotations" / "val.json", CROPS / "images")[:n]
    print(f"{threads} thread(s), batch 1, median {'CPU' if clock is time.process_time else 'wall'} time over "
          f"{len(records)} real val crops, {rounds} round(s)")
    models = {path: OnnxEstimator(path, threads=threads) for path in files}
    crops = {}
    for path, model in models.items():
        ds = TopDownDataset(records, model.config.input_wh)
        crops[path] = [ds[i]["image"][None].numpy() for i in range(len(ds))]
    tflite = TflitePeer(peer, records, threads) if peer else None
    for r in range(rounds):
        peer_ms = median_ms(tflite.run, tflite.inputs, clock=clock) if tflite else None
        if tflite:
            print(f"round {r + 1}: {peer}: {peer_ms:6.2f} ms/crop (the yardstick)")
        for path, model in models.items():
            ms = median_ms(model.run, crops[path], clock=clock)
            times = f" = {ms / peer_ms:5.2f}x the peer" if tflite else ""
            print(f"round {r + 1}: {path}: {ms:6.2f} ms/crop{times} "
                  f"(flip test {'in the graph, batch of 2' if model.flip_test else 'off'})")


class TflitePeer:
    """A MoveNet SinglePose .tflite on the same persons: its uint8 RGB square crops (posecal/evaluation/
    movenet_peer.py's crop), and `run` = one invoke (set_tensor, invoke, get_tensor), the part its per-crop time
    compares with posecal's graph forward."""

    def __init__(self, path, records, threads: int):
        from posecal.data.coco import read_image
        from posecal.data.transforms import box_to_center_scale, crop_matrix, warp
        from posecal.evaluation.movenet_peer import MoveNet

        self.movenet = MoveNet(path, threads=threads)
        size, dtype = self.movenet.size, self.movenet.input["dtype"]
        self.inputs = []
        for rec in records:
            center, scale = box_to_center_scale(rec.bbox, 1.0)
            m = crop_matrix(center, scale, 0.0, (size, size))
            bgr = warp(read_image(rec.image_path), m, (size, size))
            self.inputs.append(bgr[None, ..., ::-1].astype(dtype))

    def run(self, x):
        interp = self.movenet.interp
        interp.set_tensor(self.movenet.input["index"], x)
        interp.invoke()
        return interp.get_tensor(self.movenet.output["index"])


if __name__ == "__main__":
    main()
