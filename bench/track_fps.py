"""`posecal track` fps per option on a real video, per-crop latency beside MoveNet's (python bench/track_fps.py).

Usage: python bench/track_fps.py [--video ../shared/data/videos/vtest_pedestrians_20s.avi] [--frames 60]
                                 [--threads 2] [--calibration 200] [--skip-fps] [--skip-ap]

Prints, for each option set (backend, int8, flip, detector every N): frames per second over the first
--frames frames, detector and everything included (wall clock, and per process CPU second, which with
--threads 1 hardly depends on what else the machine runs), tracks and tracked poses. Then per-crop latency,
batch 1: the pose network fp32 (onnxruntime), int8 (static quantisation, ranges from --calibration real crops of
the train split, as `posecal export --int8` makes it) and MoveNet Lightning int8 (ai-edge-litert, skipped when not
installed or the model is missing).
Without --skip-ap it also prints the int8 model's COCO AP on the val crops beside fp32 (GT boxes, no flip).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
CROPS = SHARED / "data" / "coco-val2017-crops"
MOVENET = SHARED / "models" / "movenet_singlepose_lightning_int8.tflite"


def trimmed(video: Path, frames: int, folder: Path) -> Path:
    """The first `frames` frames of the video, written as-is (mp4v) so that every option decodes the same."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10
    out, writer = folder / f"{video.stem}_{frames}.avi", None
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return out


def val_crops(n: int, input_wh) -> np.ndarray:
    from posecal.export.quantize import calibration_crops

    return calibration_crops(CROPS / "annotations" / "val.json", CROPS / "images", input_wh, n)


def model_files(folder: Path, n_calib: int) -> dict[str, Path]:
    """The shipped model exported without flip (fp32) and its int8 quantisation, as files in `folder`
    (what `posecal export --no-flip [--int8 train.json --images DIR]` writes)."""
    from posecal.models.checkpoint import load_model
    from posecal.export.onnx import export_onnx
    from posecal.export.quantize import calibration_crops

    model, cfg, meta = load_model(None)
    files = {"fp32": folder / "pose_fp32.onnx", "int8": folder / "pose_int8.onnx"}
    # int8 ranges from train-split crops: AP is measured on val, which they must not have seen
    crops = calibration_crops(CROPS / "annotations" / "train.json", CROPS / "images", cfg.input_wh, n_calib)
    for name, int8 in (("fp32", None), ("int8", crops)):
        export_onnx(model, cfg, files[name], flip_test=False, calibration=meta.get("calibration"), int8_crops=int8)
    return files


def track_fps(video: Path, model: Path | None, backend: str, flip: bool, every: int, threads: int) -> str:
    """fps from the first frame's end to the last's (model loading and export left out), wall and CPU."""
    from posecal.tracking.job import TrackConfig, run_track

    if model is not None and flip:
        return "n/a (ONNX files here are exported without flip)"
    stamps = []
    cfg = TrackConfig([str(video)], out=str(video.with_suffix(".json")), model=str(model) if model else None,
                      backend=backend, flip=flip, detect_every=every, threads=threads, progress=False)
    s = run_track(cfg, keep=lambda frame, tracked: stamps.append((time.perf_counter(), time.process_time())))
    n = len(stamps) - 1
    wall, cpu = stamps[-1][0] - stamps[0][0], stamps[-1][1] - stamps[0][1]
    return (f"{n / wall:6.2f} fps wall, {n / cpu:6.2f} fps per CPU-second; "
            f"{s.tracks} tracks, {s.results} tracked poses in {s.frames} frames")


def crop_latency(files: dict[str, Path], threads: int) -> None:
    import onnxruntime as ort

    from posecal.export.onnx import OnnxEstimator

    x = val_crops(50, OnnxEstimator(files["fp32"], threads=1).config.input_wh)
    for name, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        ms = median_ms(lambda i: sess.run(None, {"images": x[i:i + 1]}), len(x))
        print(f"pose network {name} (onnxruntime, batch 1): {ms:6.2f} ms/crop")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("MoveNet Lightning: skipped (pip install ai-edge-litert)")
        return
    if not MOVENET.is_file():
        print(f"MoveNet Lightning: skipped ({MOVENET} missing)")
        return
    interp = Interpreter(model_path=str(MOVENET), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    frame = np.zeros(inp["shape"], inp["dtype"])

    def run(_):
        interp.set_tensor(inp["index"], frame)
        interp.invoke()

    print(f"MoveNet Lightning int8 (LiteRT, 192x192, batch 1):  {median_ms(run, 50):6.2f} ms/crop")


def median_ms(fn, n: int) -> float:
    for i in range(3):
        fn(i)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def int8_ap(files: dict[str, Path], threads: int) -> None:
    from posecal.evaluation.evaluate import EvalConfig, evaluate

    for name, path in files.items():
        with tempfile.TemporaryDirectory() as tmp:
            m = evaluate(EvalConfig(annotations=str(CROPS / "annotations" / "val.json"), images=str(CROPS / "images"),
                                    out=tmp, model=str(path), flip=False, threads=threads, progress=False)).metrics
        print(f"val AP, {name}, no flip, GT boxes: {m['ap'][m['score_mode']]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=SHARED / "data" / "videos" / "vtest_pedestrians_20s.avi")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--skip-fps", action="store_true")
    ap.add_argument("--skip-ap", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = model_files(tmp, args.calibration)
        print(f"{args.threads} thread(s); {args.frames} frames of {args.video.name}")
        if not args.skip_fps:
            video = trimmed(args.video, args.frames, tmp)
            options = [("torch, flip on, detector every frame", None, "torch", True, 1),
                       ("onnx, flip on, detector every frame", None, "onnx", True, 1),
                       ("onnx, flip off, detector every frame", files["fp32"], "onnx", False, 1),
                       ("onnx, flip off, detector every 3rd frame", files["fp32"], "onnx", False, 3),
                       ("onnx int8, flip off, detector every frame", files["int8"], "onnx", False, 1),
                       ("onnx int8, flip off, detector every 3rd frame", files["int8"], "onnx", False, 3)]
            for label, model, backend, flip, every in options:
                print(f"{label:48s} {track_fps(video, model, backend, flip, every, args.threads)}")
        crop_latency(files, args.threads)
        if not args.skip_ap:
            int8_ap(files, args.threads)


if __name__ == "__main__":
    main()
