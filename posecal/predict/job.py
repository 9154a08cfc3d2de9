"""`posecal predict`: poses with calibrated quality on images, folders and videos -> COCO keypoint results.

Boxes come from, in order of preference: a boxes file, a person detector (the shipped SSD by default, or a
YOLOX-style ONNX file; then OKS-NMS on the poses), or the whole image (`detector="none"`: each image is one person).
A boxes file's boxes and the whole image are people the user gave: each is reported, with its pose quality
(inference/person_policy.py); a boxes file with --detector is refused, as the two contradict each other.
Every problem with one file or box is one line on stderr and the run goes on; the
results file and the overlays are written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from posecal.data.coco import coco_image_ids
from posecal.data.box_files import BoxFile, check_boxes
from posecal.errors import PosecalInputError
from posecal.inference.run_identity import run_identity
from posecal.io import check_output_dir, check_output_file, publish, write_atomic
from posecal.parallel.parts import PartStore
from posecal.parallel.runner import absolute_paths, fingerprint
from posecal.inference.frame_loop import pipeline_boxes
from posecal.inference.person_policy import DUPLICATE_OKS, MIN_POSE_QUALITY, NMS_MODES, STILL
from posecal.inference.pipeline import GIVEN, PosePipeline
from posecal.inference.predictor import Predictor
from posecal.inference.scoring import SCORE_MODES
from posecal.data.sources import Frame, lookup
from posecal.records import STDOUT, ImageIds, ImageRecords, check_results_out, is_stream

@dataclass
class PredictConfig:
    inputs: list[str]
    out: str = "predictions.json"
    model: str | None = None
    boxes: str | None = None             # boxes file (COCO detection results or per-image JSON)
    annotations: str | None = None       # COCO file whose image ids the results should carry
    detector: str | None = None          # None/"default": the shipped SSD; "none": whole image; else a YOLOX ONNX
    detector_threshold: float | None = None   # None: the person policy's (inference/person_policy.py)
    verifier: str | None = "default"     # the person verifier: "default", an ONNX file, None / "none" (off)
    min_pose_quality: float = MIN_POSE_QUALITY  # a detector's box whose pose is below it (or all-absent): nobody
    nms: str = "oks"                     # pose NMS after estimation, detector boxes only
    nms_threshold: float = DUPLICATE_OKS
    score_mode: str | None = None        # default: oks (the pose quality) with quality heads, else heatmap
    render: str | None = None            # folder for overlay images
    show_all: bool = False
    radius: bool = False                 # overlays: draw the conformal keypoint radii
    every: int = 1                       # videos: every N-th frame
    max_frames: int | None = None        # stop after this many frames (images and video frames, all inputs together)
    batch_size: int | None = None        # None: the Predictor's (1 on the CPU, 16 on a GPU)
    device: str = "cpu"
    precision: str = "auto"              # a shipped model's graphs on the CPU (devices.choose_precision)
    backend: str | None = None           # None: onnx (its export cached once per model file), torch on cuda
    flip: bool | None = None             # None: on (an exported .onnx model: as it was exported)
    orientations: int | str = 1          # 4: test-time orientation search (posecal/inference/orientation.py);
                                         # auto: only for persons whose upright pose quality is low
    threads: int | None = None          # None: the machine's cores (parallel.default_threads)
    progress: bool = True


# PredictConfig's fields that are about a run's files and terminal, not about the poses or their overlays: not in a
# run's fingerprint, nor the posers' settings (posecal/predict/batches.py); each input's overlay is in its row
RUN_FIELDS = {"inputs", "out", "render", "progress", "max_frames"}
SETTINGS = tuple(f.name for f in dataclasses.fields(PredictConfig) if f.name not in RUN_FIELDS)


@dataclass
class PredictSummary:
    frames: int
    persons: int
    problems: int
    seconds: float
    precision: str = ""                   # the graphs the run decided on (decide_precision): "int8" or "float"
    fingerprint: str = ""                 # its settings' and weights' digest (runner.digest of predict_fingerprint)


def keeps_parts(cfg: PredictConfig) -> bool:
    """Does a run keep a part per finished input (as Ray's workers do), so that Ctrl-C keeps them, the same command
    resumes, and --out is written only when every input is done? A results file (.json) does; a stream of
    records (.jsonl, -) writes each frame as it is done instead, and a --max-frames preview keeps none."""
    return not is_stream(cfg.out) and cfg.max_frames is None


def open_predictor(cfg: PredictConfig, box_file: BoxFile | None) -> Predictor:
    """A predict run's one pipeline (posecal/inference/pipeline.py): a boxes file's boxes are given, else the
    detector's. The single process and each Ray actor (posecal/predict/batches.py) open it alike."""
    return Predictor(cfg.model, device=cfg.device, flip=cfg.flip, batch_size=cfg.batch_size,
                     precision=cfg.precision,
                     backend=cfg.backend, threads=cfg.threads,
                     detector=None if box_file else (cfg.detector or "default"),
                     detector_threshold=cfg.detector_threshold, orientations=cfg.orientations,
                     verifier=cfg.verifier, policy=replace(STILL, nms=cfg.nms, duplicate_oks=cfg.nms_threshold,
                                    min_pose_quality=cfg.min_pose_quality))


def score_mode_of(cfg: PredictConfig, predictor: Predictor) -> str:
    """The results' score (default: pose quality with quality heads, else the heatmap's); one line for a mode the
    model cannot give."""
    heads = bool(predictor.config.quality_heads)
    mode = cfg.score_mode or ("oks" if heads else "heatmap")
    if mode not in ("heatmap", "mmpose") and not heads:
        raise PosecalInputError(f"score mode '{mode}' needs a model with quality heads")
    return mode


def check_predict(cfg: PredictConfig) -> None:
    if cfg.boxes and cfg.detector is not None:   # a boxes file would silently win over the detector asked for
        raise PosecalInputError(f"--boxes and --detector {cfg.detector} contradict each other: --boxes gives the "
                                f"person boxes, --detector finds them (--detector none: the whole image); give one")
    if cfg.score_mode is not None and cfg.score_mode not in SCORE_MODES:
        raise PosecalInputError(f"--score-mode must be one of {SCORE_MODES}, got {cfg.score_mode!r}")
    if cfg.nms not in NMS_MODES:
        raise PosecalInputError(f"--nms must be one of {NMS_MODES}, got {cfg.nms!r}")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise PosecalInputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise PosecalInputError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    check_results_out(cfg.out)
    if str(cfg.out) != STDOUT:
        check_output_file(cfg.out, "--out")
    if cfg.render:
        check_output_dir(cfg.render, "--render")


def annotation_image_ids(path) -> dict[str, int]:
    if not Path(path).is_file():
        raise PosecalInputError(f"{path}: annotation file not found")
    return coco_image_ids(path)


def boxes_for(frame: Frame, box_file: BoxFile | None, pipeline: PosePipeline
               ) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """(boxes, scores, where they came from, messages) for one frame: the boxes file's, checked, else the
    pipeline's own (the detector's, or the whole frame; frame_loop.pipeline_boxes)."""
    if box_file is None:
        return pipeline_boxes(pipeline)(frame)
    h, w = frame.bgr.shape[:2]
    found = box_file.get(frame.name)
    if found is None and box_file.nobody:   # said once for the whole file
        return np.zeros((0, 4)), np.zeros(0), GIVEN, []
    if found is None:
        return np.zeros((0, 4)), np.zeros(0), GIVEN, [f"{frame.name}: no boxes for it in {box_file.path}"]
    boxes, scores, messages = check_boxes(*found, w, h, f"{frame.name}: {box_file.path.name}",
                                          box_file.labels_of(frame.name))
    return boxes, scores, GIVEN, messages


def render_path(name: str, folder, video: bool = False) -> Path:
    """An input's overlay as named when no other input claims it: `<name>.png` for an image (the name relative to
    its folder argument, so sub-folders are kept, the suffix replaced), a folder named after a video, its suffix
    dropped as an image's is (clip.mp4 -> clip/, holding frame_000000.png ...)."""
    if video:
        return Path(folder) / Path(name.split("#")[0]).with_suffix("")
    return (Path(folder) / name).with_suffix(".png")


class RenderNames:
    """Overlay paths, one per input file, never shared: inputs that would write the same overlay (photo.jpg
    and photo.png, or photo.jpg given from two folders) get `-2`, `-3`... on their name, in input order,
    with a line saying so, so that no overlay silently replaces another."""

    def __init__(self, folder, log):
        self.folder, self.log = Path(folder), log
        self.taken: set[Path] = set()

    def __call__(self, path: Path, name: str, video: bool) -> Path:
        """The first free overlay name for input `name` (read from `path`): its .png for an image, its frames'
        folder for a video."""
        return self.claim(render_path(name, self.folder, video), name, keep_suffix=not video)

    def claim(self, wanted: Path, name: str, keep_suffix: bool = True) -> Path:
        """`wanted` for input `name`'s overlay, or its first free `-2`, `-3`... (before its suffix, unless
        keep_suffix is False: a folder's name is all stem), said in one line."""
        suffix = wanted.suffix if keep_suffix else ""
        stem = wanted.name[: len(wanted.name) - len(suffix)]
        free, n = wanted, 1
        while free in self.taken:
            n += 1
            free = wanted.with_name(f"{stem}-{n}{suffix}")
        if free != wanted:
            self.log(f"{name}: overlay written as {free} ({wanted} belongs to another input)")
        self.taken.add(free)
        return free


def predict_fingerprint(cfg: PredictConfig) -> dict:
    """What every input's results in a predict run depend on (parallel/runner.py's fingerprint): its settings and
    the model's, verifier's and detector's digests (not the inputs: each input's part is named by its own key)."""
    return fingerprint(actor_settings(cfg), run_identity(cfg.model, cfg.verifier, cfg.detector))


def actor_settings(cfg: PredictConfig) -> dict:
    """PoseBatches' settings from the run's config, with its files (a model file, boxes, annotations) as absolute
    paths: a worker does not run in the driver's folder."""
    return absolute_paths({k: getattr(cfg, k) for k in SETTINGS}, ("model", "boxes", "annotations"))


def merge_parts(cfg: PredictConfig, store: PartStore, image_ids: dict, problems: int, t0: float) -> PredictSummary:
    """The parts of the run's inputs (store.keys), in input order, streamed into the results file run_predict
    writes (a temp file put in place when whole), then the parts kept for the next run (PartStore.finish: a photo
    added to the folder is then the only one posed). Each part is read once and let go, so the
    merge holds one input's results at a time, however many inputs the run had; the image ids are one process's
    (records.ImageIds)."""
    counts = {"frames": 0, "persons": 0, "problems": problems}

    def frames():
        for records in store.parts():
            for r in records:
                if "problem" in r:
                    counts["problems"] += 1
                    continue
                counts["frames"] += 1
                counts["persons"] += len(r["entries"])
                yield r

    write = _write_records if is_stream(cfg.out) else _write_results
    write(cfg.out, frames(), image_ids, counts)
    store.finish()
    return PredictSummary(counts["frames"], counts["persons"], counts["problems"], time.time() - t0)


def _nothing_read(counts: dict) -> None:
    if not counts["frames"]:
        raise PosecalInputError("no input could be read (see the messages above); nothing written")


def _write_results(out, frames, image_ids: dict, counts: dict) -> None:
    """The COCO results file one process writes (json.dump of its entries, each with its image id), entry by
    entry; nothing is put in place when no input could be read."""
    image_id = ImageIds(image_ids, lookup)

    def write(f) -> None:
        f.write("[")
        first = True
        for r in frames:
            frame_id = image_id(r["name"])
            for entry in r["entries"]:
                f.write(("" if first else ", ") + json.dumps(entry | {"image_id": frame_id}))
                first = False
        f.write("]")
        _nothing_read(counts)

    write_atomic(out, write, mode="w")


def _write_records(out, frames, image_ids: dict, counts: dict) -> None:
    """The .jsonl records a single process streams, written to a temp file as the parts are read and put in
    place when whole; nothing is put in place when no input could be read."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}", suffix=".tmp")
    os.close(fd)
    try:
        records = ImageRecords(tmp, image_ids, lookup)
        try:
            for r in frames:
                records(SimpleNamespace(name=r["name"], frame_index=r["frame_index"], capture_time=None),
                        r["entries"])
        finally:
            records.close()
        _nothing_read(counts)
        publish(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
