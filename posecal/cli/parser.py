"""posecal's command line declared: one sub-parser per command, the options shared by several declared once each
(`_model_option`, `_device_options`, ...), each saying what it does and its default (tests/cli/test_cli_help.py checks
that), each command bound to its function in posecal/cli/commands.py."""
from __future__ import annotations

import argparse

from posecal.cli import commands
from posecal.devices import BACKENDS, CPU_BATCH_SIZE, CUDA_BATCH_SIZE, DEVICES, PRECISIONS
from posecal.inference.orientation import AUTO_BELOW, AUTO_TILT, parse_orientations
from posecal.inference.person_policy import DUPLICATE_OKS, MIN_POSE_QUALITY, NMS_MODES, VIDEO
from posecal.inference.scoring import SCORE_MODES
from posecal.inference.topdown import DECODES
from posecal.models.shipped import DEFAULT_MODEL_NAME
from posecal.parallel.runner import ENGINES
from posecal.tracking.cadence import BETWEEN, REPOSE_AFTER
from posecal.validation import NON_NEGATIVE, POSITIVE, PROBABILITY, THREADS, Rule, parse_float, parse_int


def _number(kind: type, rule: Rule):
    """An argparse `type=` for an int or float option held to `rule`: a bad value then ends in argparse's
    one-line usage error naming the option (exit 2), not in a traceback deep inside a command."""
    def parse(text: str):
        value = parse_int(text) if kind is int else parse_float(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        problem = rule.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return parse


def orientations_arg(text: str):
    """--orientations: '1' and '4' as ints, 'auto' as is (posecal/inference/orientation.py says which); anything
    else ends in argparse's one-line usage error naming the option."""
    try:
        return parse_orientations(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


DESCRIPTION = ("2D human pose estimation with trust you can act on: per person a pose quality (the expected OKS), "
               "per keypoint a quality (the expected OPKS), visibility and a radius, all calibrated. "
               "`posecal COMMAND --help` for each command; `posecal models` for the shipped models.")
POSITIVE_INT = _number(int, POSITIVE)
THREADS_INT = _number(int, THREADS)
NON_NEGATIVE_FLOAT = _number(float, NON_NEGATIVE)
POSITIVE_FLOAT = _number(float, POSITIVE)
NON_NEGATIVE_INT = _number(int, NON_NEGATIVE)
PROBABILITY_FLOAT = _number(float, PROBABILITY)
ORIENTATIONS_HELP = ("4: also try each person turned by 90/180/270 degrees and keep the pose the quality head "
                     "trusts most (people lying or upside down; 4x the network time); auto: those turns only for "
                     f"the persons whose upright pose quality is below {AUTO_BELOW:g} or whose torso leans more "
                     f"than {AUTO_TILT:g} degrees (a model without quality heads: upright only) (default: 1)")
RAY_THREADS_HELP = ("CPU threads (default: the cores this process may use; --engine ray: per worker, the cores "
                    "Ray sees shared among the workers, at least 1)")
THREADS_HELP = "CPU threads (default: the cores this process may use)"


MODEL_HELP = ("accurate, published, fast, lite0, a posecal model file (.pt; a training run's best_model.pt or "
              "last.pt) or an exported .onnx file")
FLIP_HELP = ("flip test: the network also runs on the mirrored crop and the two are averaged; --no-flip runs it "
             "once per person, a little less accurate")
BACKEND_HELP = ("onnx: onnxruntime, from the model's ONNX export, made once and kept in the user's cache folder "
                "($POSECAL_CACHE_DIR); torch: PyTorch; an .onnx --model always runs in onnxruntime")


# The options the commands that run the pose network share, each defined here once.
def _model_option(p, default: str | None = None) -> None:
    p.add_argument("--model", default=default,
                   help=f"{MODEL_HELP} (default: {default or DEFAULT_MODEL_NAME + ', the shipped default model'})")


def _flip_option(p, default: bool | None) -> None:
    note = {None: "on; an exported .onnx model: as it was exported", True: "on", False: "off in video"}[default]
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=default,
                   help=f"{FLIP_HELP} (default: {note})")


def _backend_option(p, default: str | None = "onnx") -> None:
    note = "onnx, on the CPU or CUDA" if default is None else default
    p.add_argument("--backend", choices=BACKENDS, default=default, help=f"{BACKEND_HELP} (default: {note})")


def _threads_option(p, ray: bool = False) -> None:
    p.add_argument("--threads", type=THREADS_INT, help=RAY_THREADS_HELP if ray else THREADS_HELP)


def _engine_options(p, what: str) -> None:
    """--engine, --address and --workers (predict, track, eval, audit); `what`: the work one Ray actor call does."""
    p.add_argument("--engine", choices=ENGINES, default="process",
                   help=f"process: this process; ray: Ray Data actors, each holding the model, {what}, on a local "
                        "Ray or the cluster at --address, each unit's results written by its worker as it is done (a "
                        "run started again resumes) then merged into one file; needs pip install 'posecal[ray]' "
                        "(default: process)")
    p.add_argument("--address", help="--engine ray: the Ray cluster to run on, e.g. ray://head:10001 or auto "
                                     "(default: a local Ray started for the run)")
    p.add_argument("--workers", type=POSITIVE_INT,
                   help="--engine ray: actors, each with its own model (default: one per CPU Ray sees)")


def _batch_option(p, default: int | None) -> None:
    said = (f"{CPU_BATCH_SIZE} on the CPU, where batching saves no time and costs memory; {CUDA_BATCH_SIZE} with "
            "--device cuda") if default is None else default
    p.add_argument("--batch-size", type=POSITIVE_INT, default=default,
                   help=f"person crops per forward pass (default: {said})")


def _orientations_option(p) -> None:
    p.add_argument("--orientations", type=orientations_arg, default=1, metavar="{1,4,auto}", help=ORIENTATIONS_HELP)


def _progress_option(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_predict(sub) -> None:
    """`posecal predict`: its sub-parser."""
    p = sub.add_parser("predict", help="poses with pose quality, keypoint quality and visibility on images, "
                                       "folders or videos")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or video files")
    p.add_argument("--out", default="predictions.json",
                   help="X.json: COCO keypoint results, written at the end; X.jsonl or - (stdout): one JSON record "
                        "per image or video frame, written as it is made (its fields: "
                        "docs/schemas/frame_record.schema.json in posecal's source tree) (default: predictions.json)")
    p.add_argument("--render", metavar="DIR", help="write overlay images here: NAME.png per image, NAME/frame_N.png "
                   "per video frame (default: none)")
    p.add_argument("--show-all", action="store_true", help="overlays: draw keypoints predicted absent, faintly")
    p.add_argument("--radius", action="store_true",
                   help="overlays: circles that hold the true keypoint with probability 0.9 (calibrated models)")
    p.add_argument("--boxes", help="person boxes: COCO detection results JSON or {file name: [[x,y,w,h(,score)]]}")
    p.add_argument("--annotations", help="COCO file: results use its image ids (matched by file name)")
    p.add_argument("--detector", metavar="ssd|nanodet|ssd+nanodet|MODEL.onnx|none", help="person detector: the "
                   "shipped SSD-MobileNetV2 (the default), NanoDet-m, or both with their boxes merged (ssd+nanodet: "
                   "finds a few more people, slower), a YOLOX-style ONNX file, or 'none' for one person per whole "
                   "image, always reported with its pose quality (not with --boxes)")
    p.add_argument("--detector-threshold", type=PROBABILITY_FLOAT,
                   help="keep the detector's boxes scored at least this (default: the person policy's: the shipped "
                        "detector runs at a permissive threshold and a box it is unsure of is kept when the person "
                        "verifier says a person is there; a YOLOX file: 0.3)")
    p.add_argument("--verifier", default="default", metavar="default|none|FILE.onnx",
                   help="the person verifier that judges each box from the picture (default: the shipped one; none: "
                        "off, the pose alone decides)")
    p.add_argument("--min-pose-quality", type=PROBABILITY_FLOAT, default=MIN_POSE_QUALITY,
                   help="drop a pose on a detector's box below this pose quality or with no keypoint predicted "
                        "visible, i.e. nobody there; 0 keeps all. A person given (--boxes, or the whole image with "
                        f"--detector none) is always kept (default: {MIN_POSE_QUALITY})")
    p.add_argument("--nms", choices=NMS_MODES, default="oks",
                   help="pose NMS on detector boxes: OKS-NMS, soft-OKS-NMS or none (default: oks)")
    p.add_argument("--nms-threshold", type=PROBABILITY_FLOAT, default=DUPLICATE_OKS,
                   help="OKS over the keypoints both poses see above which --nms oks drops the pose of lower "
                        f"quality as the same person, and --nms soft lowers its score (default: {DUPLICATE_OKS})")
    p.add_argument("--score-mode", choices=SCORE_MODES,
                   help="the results' score (default: oks = pose_quality, the best calibrated one)")
    p.add_argument("--every", type=POSITIVE_INT, default=1, help="videos: use every N-th frame (default: 1)")
    p.add_argument("--max-frames", type=POSITIVE_INT, metavar="N",
                   help="stop after N frames (images and video frames, all inputs together; after --every) "
                        "(default: no limit)")
    _batch_option(p, None)
    _engine_options(p, "posing whole input files")
    _device_options(p)
    _backend_option(p, None)
    _model_option(p)
    _flip_option(p, None)
    _orientations_option(p)
    _threads_option(p, ray=True)
    _progress_option(p)
    p.set_defaults(func=commands.cmd_predict)


def _device_options(p) -> None:
    """--device and --precision: where the networks run and which shipped graphs."""
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where the networks run: cuda = onnxruntime's CUDA provider (pip install 'posecal[gpu]'; "
                        "no PyTorch) or PyTorch's (--backend torch), the CPU with one warning line where it cannot "
                        "run (default: cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="a shipped model's graphs on the CPU: int8, float, or auto = int8 where the CPU multiplies "
                        "int8 exactly (AVX-512 VNNI, AVX-VNNI), float elsewhere; the run's first line says which "
                        "(default: auto)")


def _add_track(sub) -> None:
    """`posecal track`: its sub-parser."""
    p = sub.add_parser("track", help="multi-person pose tracking on videos: poses with track ids, smoothed")
    p.add_argument("videos", nargs="+", metavar="SOURCE",
                   help="video files (or folders of them), or live sources: a camera index (0, 1, ...), a stream URL "
                        "(rtsp://, http(s):// MJPEG, udp://, tcp://, rtmp://, srt://: what OpenCV's FFmpeg reads), "
                        "or a named pipe (a FIFO path, or pipe:PATH)")
    p.add_argument("--out", default="tracks.json",
                   help="X.json: COCO keypoint results with image_id = frame index and track_id, written at the end; "
                        "X.jsonl or - (stdout): one JSON record per frame, written as it is made (its fields: "
                        "docs/schemas/frame_record.schema.json in posecal's source tree) (default: tracks.json)")
    p.add_argument("--max-frames", type=POSITIVE_INT, metavar="N",
                   help="stop after N frames, all sources together (default: no limit)")
    p.add_argument("--duration", type=POSITIVE_FLOAT, metavar="SECONDS",
                   help="stop this many seconds after the models are loaded (default: no limit)")
    p.add_argument("--reconnect", type=NON_NEGATIVE_INT, default=3, metavar="N",
                   help="live sources: reopen a stream that stalled or dropped up to N times in a row, one line on "
                        "stderr each (a pipe's end is the end) (default: 3)")
    p.add_argument("--stall", type=POSITIVE_FLOAT, default=5.0, metavar="SECONDS",
                   help="live sources: no frame for this long means the stream stalled; also the open timeout "
                        "(default: 5)")
    p.add_argument("--no-drop", action="store_true",
                   help="live sources: queue every frame instead of taking the newest (falls behind real time when "
                        "the pipeline is slower than the source) (default: real time, frames it cannot take are "
                        "dropped and counted)")
    p.add_argument("--show", action="store_true",
                   help="show the overlay in a window as frames are tracked (q or Esc stops); where no display or GUI "
                        "exists, one line and the run goes on (default: off)")
    p.add_argument("--render", metavar="OUT.mp4|OUT.avi|DIR",
                   help="overlay video with track ids (one source: OUT.mp4 or OUT.avi; several: a folder, one "
                        "NAME.mp4 per source) (default: none)")
    p.add_argument("--rerun", metavar="OUT.rrd",
                   help="also write a rerun recording of one source (open it with `rerun OUT.rrd`): the frames, each "
                        "track's keypoints with their calibrated radii (the true keypoint within, probability 0.9) and "
                        "skeleton, boxes, and pose quality over time; written to a temp file and put in place at the "
                        "end (pip install 'posecal[rerun]') (default: none)")
    p.add_argument("--detector", metavar="ssd|nanodet|ssd+nanodet|MODEL.onnx|none", help="person detector: the "
                   "shipped SSD-MobileNetV2 (the default), NanoDet-m, or both with their boxes merged (ssd+nanodet), a "
                   "YOLOX-style ONNX file, or 'none' (the whole frame, then boxes from the poses)")
    p.add_argument("--detector-threshold", type=PROBABILITY_FLOAT,
                   help="keep the detector's boxes scored at least this (default: the person policy's video preset, "
                        "0.3 for the shipped detector, every box judged by the person verifier)")
    p.add_argument("--verifier", default="default", metavar="default|none|FILE.onnx",
                   help="the person verifier that judges each box from the picture (default: the shipped one; none: "
                        "off, the pose alone decides)")
    p.add_argument("--detect-every", type=POSITIVE_INT, default=3, metavar="N",
                   help="run the detector on every N-th frame; in between, each track's last box moved by its "
                        "velocity (default: 3)")
    p.add_argument("--second-look", action="store_true",
                   help="the detector also on square tiles of a wide frame: finds more small and far people "
                        "at the cost of more false tracks and 3 detector runs per detector frame (default: off)")
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                   help="live sources: when the pipeline is slower than the stream, frames that arrive during a "
                        "detector frame wait while it can catch up, and the detector runs less often (down to twice "
                        "a second) when it cannot; --no-adaptive takes the newest frame, detector every N-th "
                        "(default: adaptive)")
    p.add_argument("--between", choices=BETWEEN, default="flow",
                   help="between detector frames: flow carries each tracked person's keypoints by optical flow (no "
                        "pose network on those frames); pose estimates them afresh in each track's "
                        "carried box (default: flow)")
    p.add_argument("--repose-after", type=NON_NEGATIVE_INT, default=REPOSE_AFTER, metavar="N",
                   help="with --between flow: a track is posed again by the network once N frames have passed "
                        "since its last pose, spread over the frames (a few crops a frame, the longest waiting "
                        "first; a track whose flow was lost at once), and a detection that confirms a track posed "
                        f"more recently is not posed again; 0: every detection is posed on detector frames "
                        f"(default: {REPOSE_AFTER})")
    p.add_argument("--max-misses", type=POSITIVE_INT, default=30,
                   help="frames a track survives unmatched (occlusion) before it ends (default: 30)")
    p.add_argument("--min-birth-quality", type=PROBABILITY_FLOAT, default=VIDEO.birth_quality,
                   help="pose quality a new track needs: doubtful poses (a tripod, a poster) start none "
                        f"(default: {VIDEO.birth_quality})")
    p.add_argument("--min-pose-quality", type=PROBABILITY_FLOAT, default=MIN_POSE_QUALITY,
                   help="the person rule, as predict's: a pose below this pose quality or with no keypoint "
                        f"predicted visible is nobody; 0 keeps all (default: {MIN_POSE_QUALITY})")
    p.add_argument("--missed-detections", type=NON_NEGATIVE_INT, default=2, metavar="N",
                   help="detector frames in a row a track may go unseen by the detector and still be followed in "
                        "boxes propagated from its pose; then it waits for a detection (default: 2)")
    p.add_argument("--keep-parts", action="store_true",
                   help=f"report every tracked person, also one whose box lies mostly ({VIDEO.part_inside} of its "
                        f"area) inside another person's and is at most {VIDEO.part_height} of its height, such as a "
                        "track left on a walker's legs (default: such parts are not reported; their tracks live on "
                        "either way)")
    p.add_argument("--timing", action="store_true",
                   help="also print the busy milliseconds per frame of each stage (read, detect, pose, render, ...)")
    p.add_argument("--no-smooth", action="store_true", help="no One-Euro keypoint smoothing")
    _flip_option(p, False)
    _backend_option(p)
    _model_option(p, "accurate")
    _device_options(p)
    _engine_options(p, "tracking one whole video at a time")
    _threads_option(p, ray=True)
    _progress_option(p)
    p.set_defaults(func=commands.cmd_track)


def _add_eval(sub) -> None:
    """`posecal eval`: its sub-parser."""
    p = sub.add_parser("eval", help="COCO keypoint AP of a model on a COCO keypoint file")
    p.add_argument("--annotations", required=True, help="COCO keypoint JSON (ground truth)")
    p.add_argument("--images", help="folder with the images named in the JSON (needed to run a model)")
    p.add_argument("--results", metavar="R.json",
                   help="evaluate this COCO keypoint results file (any estimator's) instead of running a model")
    p.add_argument("--out", required=True, help="output folder for results.json and metrics.json")
    _model_option(p)
    _device_options(p)
    p.add_argument("--boxes", help="COCO detection results JSON for person boxes (default: GT boxes)")
    p.add_argument("--detector", metavar="default|ssd|nanodet|ssd+nanodet|MODEL.onnx",
                   help="score what `posecal predict` reports on each annotated image with this detector (its "
                        "verifier, person policy and reported pose quality), every pose one to one against the "
                        "picture's labelled people as COCO AP counts it (default: the labelled boxes, or --boxes)")
    _flip_option(p, True)
    _orientations_option(p)
    p.add_argument("--decode", choices=DECODES, default=None,
                   help="keypoint decoding: DARK sub-pixel, plain argmax or soft-argmax of the heatmaps, or "
                        "MoveNet's centre-guided decode (MoveNet models only); default: the model's own "
                        "(movenet for MoveNet models, else dark)")
    p.add_argument("--score-mode", choices=SCORE_MODES,
                   help="pose score written to results.json (default: oks with quality heads, else heatmap)")
    p.add_argument("--no-calibration", action="store_true",
                   help="report the quality heads' raw outputs, not those of the model's stored calibration")
    p.add_argument("--drop-unlabelled", action="store_true",
                   help="give keypoints predicted not-labelled confidence 0 in results.json")
    _batch_option(p, 32)
    p.add_argument("--skip-invalid", action="store_true",
                   help="score the valid entries of malformed ground-truth, detections or results files, and list "
                        "the skipped ones with their reasons in metrics.json and report.html (default: refuse "
                        "such files, exit 2: a metric is computed on exactly the file given, or not at all)")
    _backend_option(p)
    _threads_option(p, ray=True)
    _engine_options(p, "posing the persons of a few pictures at a time (the metrics computed once, here)")
    _progress_option(p)
    p.set_defaults(func=commands.cmd_eval)


def _add_model_tools(sub) -> None:
    """`posecal models`, `demo` and `export`: its sub-parser."""
    p = sub.add_parser("models", help="the shipped models: names, files, sizes and what each is for")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.add_argument("--time", action="store_true",
                   help="also measure each shipped model's ms per person crop on this CPU (a few seconds)")
    p.add_argument("--threads", type=POSITIVE_INT, default=None, help="threads for --time (default: the cores)")
    p.set_defaults(func=commands.cmd_models)
    p = sub.add_parser("demo", help="run the default model on a real photo (needs the 'demo' extra)")
    p.add_argument("--out", default="posecal-demo", help="output folder (default: posecal-demo)")
    _model_option(p)
    p.set_defaults(func=commands.cmd_demo)
    p = sub.add_parser("export", help="export a model with all heads to ONNX (dynamic batch), checked in onnxruntime")
    _model_option(p)
    p.add_argument("--out", default="posecal.onnx", help="output file (default: posecal.onnx)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="the flip test in the graph: --no-flip leaves it out (one network pass per crop instead "
                        "of two) (default: on)")
    p.add_argument("--int8", metavar="COCO.json",
                   help="int8 static quantisation, activation ranges from the persons of this labelled COCO file "
                        "(training data, not what you evaluate on; needs --images) (default: fp32)")
    p.add_argument("--images", help="--int8: folder with the images named in its COCO file")
    p.add_argument("--int8-crops", type=POSITIVE_INT, default=200,
                   help="--int8: person crops the ranges are measured on (default: 200)")
    p.set_defaults(func=commands.cmd_export)


def _add_training(sub) -> None:
    """`posecal train`, `train-trust` and `pack`: its sub-parser."""
    p = sub.add_parser("train", help="train a pose model from a YAML config")
    p.add_argument("config", help="training config YAML (see configs/)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT_DIR/last.pt, else from the config's committed resume_state")
    p.add_argument("--out-dir", help="override the config's out_dir")
    p.add_argument("--packed", metavar="DIR", help="override the config's data.packed (a pack folder)")
    p.add_argument("--max-minutes", type=NON_NEGATIVE_FLOAT, metavar="M",
                   help="override the config's max_minutes (0: no limit)")
    _progress_option(p)
    p.set_defaults(func=commands.cmd_train)
    p = sub.add_parser("train-trust", help="train the trust model from a YAML config: samples of a MoveNet "
                                           "model's keypoints, training, its model file (resumable)")
    p.add_argument("config", help="trust config YAML (see configs/trust/)")
    p.add_argument("--out-dir", help="override the config's out_dir (samples/ and train/ go there)")
    p.add_argument("--output", help="override the config's output (the model file written)")
    p.add_argument("--max-minutes", type=NON_NEGATIVE_FLOAT, metavar="M",
                   help="override the config's train.max_minutes (0: no limit)")
    _progress_option(p)
    p.set_defaults(func=commands.cmd_train_trust)
    p = sub.add_parser("pack", help="write a model file for shipping (fp16 weights, config, metadata)")
    p.add_argument("model", help="model file or training checkpoint")
    p.add_argument("out", help="output model file")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    p.add_argument("--calibrate-on", metavar="COCO.json",
                   help="fit the post-hoc calibration (quality maps, conformal radii) on this labelled set, "
                        "which the pose network must not have trained on, and store it in the model file")
    p.add_argument("--images", metavar="DIR", help="images of --calibrate-on")
    p.add_argument("--conditions", action="store_true",
                   help="fit the calibration over the conditions users meet, made from --calibrate-on: as it is, "
                        "without the flip test, cut by the frame's edge, and with detector-like boxes (also fits "
                        "in_frame, the probability that a keypoint lies inside the picture)")
    p.add_argument("--reported-quality", metavar="MAP.json",
                   help="carry this reported-pose map (tools/fit_reported_quality.py --out, fitted on the poses this "
                        "model reports) in the model file, so predict rates its detected poses with it (default: "
                        "none)")
    _threads_option(p)
    _progress_option(p)
    p.set_defaults(func=commands.cmd_pack)


def _add_calibrate(sub) -> None:
    """`posecal calibrate fit|apply`: its sub-parser."""
    p = sub.add_parser("calibrate", help="fit / apply a calibrator for any estimator's COCO keypoint results")
    csub = p.add_subparsers(dest="action", required=True, help="fit or apply")
    c = csub.add_parser("fit", help="fit on an estimator's results on a labelled set")
    c.add_argument("--results", required=True, help="the estimator's COCO keypoint results JSON")
    c.add_argument("--annotations", required=True, help="COCO keypoint JSON (ground truth)")
    c.add_argument("--out", required=True, help="calibrator file to write (JSON)")
    c.add_argument("--images", metavar="DIR", help="the results' images: adds posecal's own evidence at each "
                   "keypoint to the inputs (apply then needs the images too; needs PyTorch, the train extra, in "
                   "posecal's source tree; default: scores only, no PyTorch)")
    c.set_defaults(func=commands.cmd_calibrate)
    c = csub.add_parser("apply", help="add calibrated trust fields to results")
    c.add_argument("--calibrator", required=True, help="file written by `posecal calibrate fit`")
    c.add_argument("--results", required=True, help="COCO keypoint results JSON of the same estimator")
    c.add_argument("--out", required=True, help="results JSON to write")
    c.add_argument("--images", metavar="DIR", help="the results' images (needed when the calibrator was fitted "
                   "with --images)")
    c.add_argument("--annotations", metavar="COCO.json", help="--images: a COCO file whose images list gives "
                   "each result's file by its image_id, for results without file_name (default: file_name)")
    c.set_defaults(func=commands.cmd_calibrate)


def _add_audit(sub) -> None:
    """`posecal audit` and `audit apply`: its sub-parser."""
    p = sub.add_parser("audit", help="find wrong labels in a COCO keypoint file where the calibrated model "
                       "contradicts them (findings.json, report.html); `audit apply` applies accepted findings")
    p.add_argument("--annotations", help="COCO keypoint JSON to audit (required)")
    p.add_argument("--images", help="folder with the images named in the JSON (needed to run the model; with "
                   "--results only for the report's pictures)")
    p.add_argument("--out", help="output folder for findings.json and report.html (required)")
    _model_option(p)
    _device_options(p)
    p.add_argument("--boxes", help="COCO detection results JSON for person boxes (default: GT boxes)")
    p.add_argument("--results", metavar="R.json", help="audit against this estimator's calibrated COCO keypoint "
                   "results (`posecal calibrate apply`) instead of running a model")
    p.add_argument("--top", type=POSITIVE_INT, default=60, help="findings drawn in report.html (default: 60)")
    p.add_argument("--fiftyone", metavar="DIR", help="also write the images with their labels and the findings' "
                   "scores on them (posecal_mistakenness, per kind and per point) as a folder FiftyOne loads: "
                   "fo.Dataset.from_dir(DIR, dataset_type=fo.types.LegacyFiftyOneDataset); needs --images "
                   "(pip install 'posecal[fiftyone]') (default: none)")
    _flip_option(p, True)
    _batch_option(p, 32)
    _threads_option(p, ray=True)
    _engine_options(p, "posing the persons of a few pictures at a time (the findings computed once, here)")
    _progress_option(p)
    p.set_defaults(func=commands.cmd_audit, action=None)
    asub = p.add_subparsers(dest="action", required=False, help="apply: write a COCO file with accepted findings "
                            "applied")
    a = asub.add_parser("apply", help="apply the accepted findings to the COCO file they were found in")
    a.add_argument("--annotations", required=True, help="the COCO keypoint JSON that was audited")
    a.add_argument("--findings", required=True, help="findings.json written by `posecal audit`")
    a.add_argument("--accept", required=True, metavar="IDS_FILE_or_IDS",
                   help="the accepted findings: a file of ids (one a line, or a JSON list) or ids, comma-separated")
    a.add_argument("--out", required=True, help="COCO JSON to write with the fixes applied")
    a.set_defaults(func=commands.cmd_audit)


def _add_peers(sub) -> None:
    """`posecal import-weights` and `run-peer`: its sub-parser."""
    p = sub.add_parser("import-weights", help="convert a published checkpoint (HRNet repo, mmpose, stacked "
                       "hourglass) into a posecal model file")
    p.add_argument("src", help="the published .pth/.pt file")
    p.add_argument("--arch", required=True, help="hrnet_w32 | hrnet_w48 | resnet50 | resnet101 | resnet152 | "
                   "hourglass_2 | hourglass_8")
    p.add_argument("--out", required=True, help="posecal model file to write")
    p.add_argument("--input-wh", type=POSITIVE_INT, nargs=2, metavar=("W", "H"),
                   help="crop size the model is fed (default: the published 192 256; hourglass 256 256)")
    p.add_argument("--input-channels", choices=("rgb", "bgr"),
                   help="override the channel order of the published pipeline (detected from the file's layout)")
    p.set_defaults(func=commands.cmd_import_weights)
    p = sub.add_parser("run-peer", help="run another estimator on a COCO file's GT boxes -> COCO keypoint results")
    p.add_argument("peer", choices=("movenet",), help="the estimator to run (movenet: MoveNet SinglePose via ai-edge-litert)")
    p.add_argument("--model", required=True, metavar="MODEL.tflite", help="MoveNet SinglePose .tflite file")
    p.add_argument("--annotations", required=True, help="COCO keypoint JSON (its persons' boxes are used)")
    p.add_argument("--images", required=True, help="folder with the images named in the JSON")
    p.add_argument("--out", required=True, help="COCO keypoint results JSON to write")
    _threads_option(p)
    _progress_option(p)
    p.set_defaults(func=commands.cmd_run_peer)


class OneLineParser(argparse.ArgumentParser):
    """argparse with a user mistake said in the one line every other refusal uses (`posecal: error: ...`, exit 2)
    instead of the whole usage block before it; the sub-commands' parsers are of this class too (argparse makes
    them of the parser's own class)."""

    def error(self, message: str):
        command = self.prog.removeprefix("posecal").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"posecal: error: {where}{message} (see 'posecal {command + ' ' if command else ''}--help')\n")


def build_parser() -> argparse.ArgumentParser:
    """posecal's command line: one sub-parser per command."""
    from posecal import __version__

    parser = OneLineParser(prog="posecal", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"posecal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_predict, _add_track, _add_eval, _add_model_tools, _add_training, _add_calibrate, _add_audit,
                _add_peers):
        add(sub)
    return parser
