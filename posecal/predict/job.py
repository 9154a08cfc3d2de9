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

import cv2
import numpy as np
from tqdm import tqdm

from posecal.data.coco import coco_image_ids
from posecal.data.box_files import BoxFile, check_boxes
from posecal.errors import PosecalInputError
from posecal.inference.opener import precision_decided
from posecal.inference.run_identity import run_identity
from posecal.io import (StopRequest, check_output_dir, check_output_file, log_line, progress_shown, publish,
                        write_atomic, write_bytes_atomic, write_json_atomic)
from posecal.parallel.parts import PartStore, resumable, write_part
from posecal.parallel.runner import absolute_paths, fingerprint
from posecal.inference.frame_loop import pipeline_boxes
from posecal.inference.person_policy import DUPLICATE_OKS, MIN_POSE_QUALITY, NMS_MODES, STILL
from posecal.inference.pipeline import GIVEN, PosePipeline
from posecal.inference.predictor import PersonPose, Picture, Predictor
from posecal.inference.scoring import SCORE_MODES
from posecal.data.sources import Frame, Problem, collect, frames_to_read, iter_frames, lookup
from posecal.records import STDOUT, ImageIds, ImageRecords, check_results_out, is_stream, result_entries


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


# PredictConfig's fields that are about a run's files and terminal, not about the poses: not in a run's fingerprint,
# nor Ray actors' settings (posecal/predict/batches.py)
RUN_FIELDS = {"inputs", "out", "render", "show_all", "radius", "progress", "max_frames"}
SETTINGS = tuple(f.name for f in dataclasses.fields(PredictConfig) if f.name not in RUN_FIELDS)


@dataclass
class PredictSummary:
    frames: int
    persons: int
    problems: int
    seconds: float
    people: dict[str, list[PersonPose]]   # by frame name (kept small: only filled when asked)
    precision: str = ""                   # the graphs the run decided on (decide_precision): "int8" or "float"


def run_predict(cfg: PredictConfig, keep_people: bool = False, log=None) -> PredictSummary:
    """`posecal predict` in this process: the frames go through the API's own frame loop (Predictor.pictures);
    this adds the CLI's inputs, boxes file, writers, overlays, progress bar and messages. Many cores or machines:
    posecal/predict/units.py on Ray's engine (parallel/runner.py), which writes the same results file."""
    log = log or log_line
    check_predict(cfg)
    t0 = time.time()
    image_ids = annotation_image_ids(cfg.annotations) if cfg.annotations else {}
    box_file = _box_file(cfg, image_ids, log)
    files, problems = _inputs(cfg, log)   # before a model is opened (or exported): nothing to read stops here
    cfg, opening = precision_decided(cfg)   # once, here: the parts' fingerprint and every worker see the decision
    if not keeps_parts(cfg):
        if opening:
            log(opening)
        predictor, run = _open_run(cfg, box_file, log, keep_people, image_ids, len(problems))
        _predict_frames(cfg, predictor, box_file, list(enumerate(files)), run)
        return replace(_finish(cfg, run, image_ids, t0), precision=cfg.precision)
    # the parts' folder locked before the model opens: a second run on this --out stops here, in one line
    store, rows = resumable(cfg.out, files, predict_fingerprint(cfg), log, opening=opening)
    with store:
        predictor, run = _open_run(cfg, box_file, log, keep_people, image_ids, len(problems))
        run.parts = _PartsKept(store, [name for _, name in files])
        _predict_frames(cfg, predictor, box_file, [(r["index"], files[r["index"]]) for r in rows], run)
        run.parts.close()
        summary = merge_parts(cfg, store, image_ids, len(problems), t0)
    return replace(summary, people=run.people, precision=cfg.precision)


def _open_run(cfg: PredictConfig, box_file: BoxFile | None, log, keep_people: bool, image_ids: dict[str, int],
              problems: int) -> tuple[Predictor, "_Results"]:
    """The run's one predictor and what it has done so far, with its record stream and overlay names where asked
    for."""
    predictor = open_predictor(cfg, box_file)
    run = _Results(cfg, log, score_mode_of(cfg, predictor), keep_people, image_ids, problems=problems)
    run.stream = ImageRecords(cfg.out, image_ids, lookup) if is_stream(cfg.out) else None
    run.overlay = RenderNames(cfg.render, log) if cfg.render else None
    return predictor, run


def keeps_parts(cfg: PredictConfig) -> bool:
    """Does a run keep a part per finished input (as Ray's workers do), so that Ctrl-C keeps them, the same command
    resumes, and --out is written only when every input is done? A results file (.json) does; a stream of
    records (.jsonl, -) writes each frame as it is done instead, and a --max-frames preview keeps none."""
    return not is_stream(cfg.out) and cfg.max_frames is None


def _box_file(cfg: PredictConfig, image_ids: dict[str, int], log) -> BoxFile | None:
    """The --boxes file, read (detections by image id named through --annotations); a detector that found nobody
    in any image is one line and empty results, not an error."""
    if not cfg.boxes:
        return None
    box_file = BoxFile(cfg.boxes, {v: k for k, v in image_ids.items()}, cfg.annotations)
    if box_file.nobody:
        log(f"{box_file.path}: {box_file.nobody_reason}: nobody in any image; the results will be empty")
    return box_file


def _inputs(cfg: PredictConfig, log) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """The input files and the problems met finding them (each said in one line); none readable is an error."""
    files, problems = collect(cfg.inputs)
    for p in problems:
        log(p.message)
    if not files:
        raise PosecalInputError("nothing to do: no readable inputs among " + ", ".join(cfg.inputs))
    return files, problems


class _Results:
    """What a predict run has done so far: result entries with their frame's key (file index, frame index or -1;
    image ids are given at the end, in input order over the frames read), the
    frames done, the problems counted; each frame's record and overlay written as it is done."""

    def __init__(self, cfg: PredictConfig, log, mode: str, keep_people: bool, image_ids: dict[str, int],
                 problems: int = 0):
        self.cfg, self.log, self.mode, self.keep_people, self.image_ids = cfg, log, mode, keep_people, image_ids
        self.problems = problems
        self.stream: ImageRecords | None = None
        self.overlay: RenderNames | None = None
        self.results, self.entry_keys, self.frames_read = [], [], []
        self.people: dict[str, list[PersonPose]] = {}
        self.parts: _PartsKept | None = None

    def problem(self, tag, problem: Problem) -> None:
        """A file that could not be read: one line, counted; the run goes on."""
        self.log(problem.message)
        self.problems += 1
        if self.parts is not None:
            (key, _) = tag
            self.parts.add(key[0], {"name": self.parts.names[key[0]], "problem": problem.message})

    def done(self, key, frame: Frame, picture: Picture) -> None:
        """A frame's people: its record (streamed, or in its input's part), its overlay, its result entries kept."""
        entries = result_entries(frame, picture.people, 0, self.mode)
        if self.parts is not None:
            self.parts.add(key[0], {"name": frame.name, "frame_index": frame.frame_index, "entries": entries,
                                    "messages": []})
        if self.stream is not None:
            self.stream(frame, entries)
        if self.overlay is not None:
            _render(frame, picture.people, self.cfg.show_all, self.overlay(frame), self.cfg.radius)
        self.results.extend(entries)
        self.entry_keys.extend([key] * len(entries))
        self.frames_read.append((key, frame.name))   # done: its results are kept even if Ctrl-C comes next
        if self.keep_people:
            self.people[frame.name] = picture.people

    def interrupted(self) -> str:
        """Ctrl-C in one process: what was done is kept (the finished inputs' parts, the records streamed, or a
        --max-frames preview's results file), and the line that says so."""
        if self.parts is not None:
            done, total = self.parts.store.kept(), len(self.parts.names)
            if not done:
                return (f"interrupted before any of the {total} input(s) was whole; nothing written to "
                        f"{self.cfg.out} (--out X.jsonl writes each frame as it is done)")
            return (f"interrupted: the results of {done} of {total} input(s) are kept in {self.parts.store.folder}; "
                    f"the same command again goes on from there ({self.cfg.out} is written when every input is done)")
        if self.stream is not None:   # its records are out already, one per input done
            self.stream.close()
            if not self.frames_read:
                return f"interrupted before any input was done; no records in {self.cfg.out}"
            return f"interrupted: the records of the {counted(self.frames_read)} done are in {self.cfg.out}"
        return _kept_message(self.cfg, self.frames_read, self.results, self.entry_keys, self.image_ids)


class _PartsKept:
    """A one-process run's parts: each input's frame records (as a Ray worker's, posecal/predict/batches.py) written
    as its part (named by the input's key, store.keys) as soon as it is whole: every frame of it read (the run has
    read on into the next input, or to the end) and every frame read done. What Ctrl-C keeps, and what the same
    command again skips."""

    def __init__(self, store: PartStore, names: list[str]):
        self.store, self.names = store, names
        self.open: dict[int, list[dict]] = {}
        self.frames_read: dict[int, int] = {}
        self.frames_done: dict[int, int] = {}
        self.reading: int | None = None

    def read(self, index: int, item) -> None:
        """The frame loop read `item` (a Frame or a Problem) of input `index`: the inputs before it are read whole."""
        self.open.setdefault(index, [])
        self.frames_read[index] = self.frames_read.get(index, 0) + (not isinstance(item, Problem))
        self.reading = index
        self._write_whole()

    def add(self, index: int, record: dict) -> None:
        """A record of input `index`: a frame done (with its entries), or a problem said as it was read."""
        self.open.setdefault(index, []).append(record)
        if "entries" in record:
            self.frames_done[index] = self.frames_done.get(index, 0) + 1
        self._write_whole()

    def close(self) -> None:
        """The run read every input to its end: the rest are whole."""
        self.reading = None
        self._write_whole()

    def _write_whole(self) -> None:
        for index in sorted(self.open):
            read_on = self.reading is None or index < self.reading
            if read_on and self.frames_done.get(index, 0) == self.frames_read.get(index, 0):
                write_part(self.store.folder, self.store.keys[index],
                           json.dumps(self.open.pop(index), separators=(",", ":")))


def _predict_frames(cfg: PredictConfig, predictor: Predictor, box_file: BoxFile | None,
                    files: list[tuple[int, tuple[Path, str]]], run: _Results) -> None:
    """The frames of `files` ((input index, (path, name)) each) through the API's frame loop, each handed to `run` as it is done; the boxes are the boxes
    file's, else the pipeline's. Ctrl-C keeps what was done: the first stops the run after the frame at hand (a
    KeyboardInterrupt raised at any instruction could cut a record in two, or land in a finaliser that swallows
    it and the run goes on), a second one at once."""
    shown = progress_shown(cfg.progress)
    bar = tqdm(keyed_frames(files, cfg.every, cfg.max_frames), desc="predicting", unit="frame", disable=not shown,
               total=frames_to_read([f for _, f in files], cfg.every, cfg.max_frames) if shown else None)
    items = bar if run.parts is None else _told(bar, run.parts)
    pictures = predictor.pictures((((key, item), item) for key, item in items),
                                  lambda frame: boxes_for(frame, box_file, predictor.pipeline), run.mode,
                                  log_frame=lambda tag, line: run.log(line), on_problem=run.problem)
    try:
        with StopRequest() as ctrl_c:
            for (key, frame), picture in pictures:
                run.done(key, frame, picture)
                if ctrl_c.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(run.interrupted()) from None


def _finish(cfg: PredictConfig, run: _Results, image_ids: dict[str, int], t0: float) -> PredictSummary:
    """The one results file (or the records closed), in input order with its image ids. Nothing read at all is
    an error, and nothing is written."""
    frames_read = run.frames_read
    if not frames_read:
        raise PosecalInputError("no input could be read (see the messages above); nothing written")
    results = _with_image_ids(frames_read, run.results, run.entry_keys, image_ids)
    if run.stream is not None:
        run.stream.close()
    else:
        write_json_atomic(results, cfg.out, indent=None)
    return PredictSummary(len(frames_read), len(results), run.problems, time.time() - t0, run.people)


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


def _with_image_ids(frames_read, results: list[dict], entry_keys: list, image_ids: dict[str, int]) -> list[dict]:
    """Result entries in input order (by their frame's key: a Ray run's come in any order), each with its frame's
    image id (frame_image_ids); frames_read: (key, name) of the frames read, in input order."""
    ids = frame_image_ids(frames_read, image_ids)
    merged = sorted(zip(entry_keys, results), key=lambda ke: ke[0])
    return [e | {"image_id": ids[k]} for k, e in merged]


def _kept_message(cfg: PredictConfig, frames_done, results, entry_keys, image_ids) -> str:
    """Write what an interrupted run finished (its results file, atomically) and say what that is."""
    if not frames_done:
        return f"interrupted before any input was done; nothing written to {cfg.out}"
    done = sorted(frames_done, key=lambda f: f[0])
    keys = {k for k, _ in done}
    kept = [(k, e) for k, e in zip(entry_keys, results) if k in keys]
    write_json_atomic(_with_image_ids(done, [e for _, e in kept], [k for k, _ in kept], image_ids), cfg.out,
                      indent=None)
    overlays = f"; their overlays are in {cfg.render}" if cfg.render else ""
    return (f"interrupted: kept the {counted(done)} done, up to {done[-1][1]} ({len(kept)} pose(s)), "
            f"in {cfg.out}{overlays}")


def _told(items, parts: _PartsKept):
    """The keyed frames, each told to the run's parts as it is read (which inputs are read whole)."""
    for key, item in items:
        parts.read(key[0], item)
        yield key, item


def counted(frames_done) -> str:
    """The frames done, (key, name) each, in what they are: '3 image(s)', '40 video frame(s)', or both ('2 image(s)
    and 40 video frame(s)'): an interrupted run's line says what it counted (a key's frame index is -1 for an
    image, keyed_frames)."""
    frames = sum(1 for (_, index), _ in frames_done if index >= 0)
    images = len(frames_done) - frames
    parts = [f"{images} image(s)"] * bool(images) + [f"{frames} video frame(s)"] * bool(frames)
    return " and ".join(parts)


def keyed_frames(files: list[tuple[int, tuple[Path, str]]], every: int, max_frames: int | None = None):
    """(key, Frame or Problem) of every input ((its index in the run, (path, name)) each), key = (input index,
    frame index or -1), in input order; after `max_frames` frames (None: no limit) nothing more is read."""
    frames = 0
    for i, f in files:
        for item in iter_frames([f], every):
            if max_frames is not None and frames >= max_frames:
                return
            frames += not isinstance(item, Problem)
            yield (i, -1 if isinstance(item, Problem) or item.frame_index is None else item.frame_index), item


def frame_image_ids(frames: list[tuple[tuple[int, int], str]], image_ids: dict[str, int]) -> dict:
    """Frame key -> image id, for the frames read in input order (records.ImageIds)."""
    image_id = ImageIds(image_ids, lookup)
    return {key: image_id(name) for key, name in frames}


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


def render_path(frame: Frame, folder) -> Path:
    """An input's overlay as named when no other input claims it: `<name>.png` (the name relative to its
    folder argument, so sub-folders are kept, the suffix replaced); a video's frames go in a folder named after
    the video, its suffix dropped as an image's is (clip.mp4 -> clip/frame_000000.png)."""
    if frame.frame_index is not None:
        video = Path(frame.name.split("#")[0])
        return Path(folder) / video.with_suffix("") / f"frame_{frame.frame_index:06d}.png"
    return (Path(folder) / frame.name).with_suffix(".png")


class RenderNames:
    """Overlay paths, one per input file, never shared: inputs that would write the same overlay (photo.jpg
    and photo.png, or photo.jpg given from two folders) get `-2`, `-3`... on their name, in input order,
    with a line saying so, so that no overlay silently replaces another."""

    def __init__(self, folder, log):
        self.folder, self.log = Path(folder), log
        self.by_source: dict[Path, Path] = {}
        self.taken: set[Path] = set()

    def __call__(self, frame: Frame) -> Path:
        base = self.by_source.get(frame.path)
        if base is None:
            base = self.by_source[frame.path] = self._claim(frame)
        return base / Path(render_path(frame, self.folder)).name if frame.frame_index is not None else base

    def _claim(self, frame: Frame) -> Path:
        """The first free name for this input: its file for an image, its frames' folder for a video."""
        path = render_path(frame, self.folder)
        wanted = path.parent if frame.frame_index is not None else path
        suffix = "" if frame.frame_index is not None else wanted.suffix
        stem = wanted.name[: len(wanted.name) - len(suffix)]
        free, n = wanted, 1
        while free in self.taken:
            n += 1
            free = wanted.with_name(f"{stem}-{n}{suffix}")
        if free != wanted:
            self.log(f"{frame.name}: overlay written as {free} ({wanted} belongs to another input)")
        self.taken.add(free)
        return free


def _render(frame: Frame, persons: list[PersonPose], show_all: bool, path: Path, radius: bool = False) -> None:
    from posecal.overlay import render_people

    image = render_people(frame.bgr, persons, show_all=show_all, radius=radius)
    ok, data = cv2.imencode(".png", image)
    if ok:
        write_bytes_atomic(path, data.tobytes())


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
    writes (a temp file put in place when whole), then the parts gone. Each part is read once and let go, so the
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
    store.remove()
    return PredictSummary(counts["frames"], counts["persons"], counts["problems"], time.time() - t0, {})


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
