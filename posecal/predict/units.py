"""`posecal predict`, in this process or on Ray, through the one class that poses (predict/batches.py PoseBatches).

A results file (`--out X.json`) is made by the runner (posecal/parallel/runner.py) on either engine. Each input
file (an image, or a whole video) is one unit; whoever poses it writes its part (its records, and overlays where
--render asks); the parts are merged in input order with the image ids one process gives (job.merge_parts) and
kept for the next run (PartStore.finish). A Ctrl-C keeps every finished input; a rerun poses only the files it has
no part for (a unit's key holds its boxes and overlay); a second run on the same --out is refused at its start.
Two inputs of one name are told apart by their folders (data/sources.distinct_names).

Records streamed (`--out X.jsonl`, `--out -`) and a `--max-frames` preview are one process's, frame by frame from
the same PoseBatches (`records`).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from posecal.data.box_files import BoxFile
from posecal.data.sources import collect, distinct_names, frames_to_read, is_video, lookup
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import precision_decided, require_model
from posecal.io import StopRequest, log_line, progress_shown, write_json_atomic
from posecal.parallel.cores import default_threads
from posecal.parallel.runner import Engine, OneProcess, RowJob, columns, digest, run
from posecal.predict.batches import POSES, PoseBatches
from posecal.predict.job import (PredictConfig, PredictSummary, RenderNames, actor_settings, annotation_image_ids,
                                 check_predict, keeps_parts, merge_parts, predict_fingerprint)
from posecal.records import STDOUT, ImageIds, ImageRecords, is_stream

FILES_PER_CALL = 4   # input files per call on a GPU, whose crops are batched across them; on the CPU (batch 1)
                     # one, so that each input's part is written as soon as it is done


def run_predict(cfg: PredictConfig, log=None, engine: Engine | None = None, poser=PoseBatches) -> PredictSummary:
    """`posecal predict`: the results file of cfg's inputs, made on `engine` (None: this process), or, in this
    process, the records streamed (.jsonl, -) or a --max-frames preview. poser: the map_batches class
    (PoseBatches; a test's subclass)."""
    log = log or log_line
    check_predict(cfg)
    if engine is not None and (str(cfg.out) == STDOUT or cfg.max_frames is not None):
        raise PosecalInputError("--out - and --max-frames are one process's, frame by frame: leave out "
                                "--engine ray, or give --out X.json or X.jsonl without --max-frames")
    engine = engine or (OneProcess() if keeps_parts(cfg) else None)
    if engine is not None:
        engine.ready()
    t0 = time.time()
    image_ids = annotation_image_ids(cfg.annotations) if cfg.annotations else {}
    box_file = None
    if cfg.boxes:   # read here once, so a bad file is one line before any input is posed (each poser reads it)
        box_file = BoxFile(cfg.boxes, {v: k for k, v in image_ids.items()}, cfg.annotations)
        if box_file.nobody:
            log(f"{box_file.path}: {box_file.nobody_reason}: nobody in any image; the results will be empty")
    files, problems = collect(cfg.inputs)
    for p in problems:
        log(p.message)
    if not files:
        raise PosecalInputError("nothing to do: no readable inputs among " + ", ".join(cfg.inputs))
    files = distinct_names(files, log)
    require_model(cfg.model)
    cfg, opening = precision_decided(cfg)   # here, not in each poser: every node runs the graphs this one chose
    if cfg.device == "cuda":
        providers("cuda")   # a CPU-only onnxruntime is said here once, not by every worker out of sight
    renders = overlays(cfg, files, log)
    if engine is None:
        return _streamed(cfg, poser, files, renders, image_ids, len(problems), opening, log, t0)

    given = as_given(files)

    def on_part(records: list[dict]) -> None:   # each frame's messages, said as its file is done
        for r in records:
            for m in ([given(r["name"], r["problem"])] if "problem" in r else r["messages"]):
                log(m)

    gpu = cfg.device == "cuda"
    job = RowJob(poser, actor_settings(cfg) | {"threads": cfg.threads}, POSES, FILES_PER_CALL if gpu else 1, gpu)
    gone = (lambda i: not Path(renders[i]).exists()) if cfg.render else None   # an overlay removed: drawn again
    columns_of = unit_columns(files, renders, box_file)
    with run(cfg.out, files, job, engine, predict_fingerprint(cfg), log, on_part, columns_of, progress=cfg.progress,
             desc="predicting", unit="file", opening=opening, stale=gone) as store:
        return replace(merge_parts(cfg, store, image_ids, len(problems), t0), precision=cfg.precision,
                       fingerprint=digest(predict_fingerprint(cfg)))


def unit_columns(files: list[tuple[Path, str]], renders: list[str], box_file: BoxFile | None):
    """What an input's row carries besides its file, so its part's key (parts.unit_key): its overlay (another
    --render draws it again) and what the boxes file gives it (boxes edited: posed again); None when neither."""
    if not any(renders) and box_file is None:
        return None

    def columns_of(i: int) -> dict:
        path, name = files[i]
        return ({"render": renders[i]} if renders[i] else {}) | (
            {"boxes": box_file.given_to(name, is_video(path))} if box_file is not None else {})
    return columns_of


def as_given(files: list[tuple[Path, str]]):
    """(name, line) -> the line a worker said about input `name` with its file named as the user gave it: a worker
    reads the absolute path (it does not run in this folder), the user gave `photos/`."""
    shown = {name: (str(Path(path).resolve()), str(path)) for path, name in files}

    def given(name: str, line: str) -> str:
        absolute, as_typed = shown.get(name, ("", ""))
        return as_typed + line[len(absolute):] if absolute and line.startswith(absolute) else line
    return given


def overlays(cfg: PredictConfig, files: list[tuple[Path, str]], log) -> list[str]:
    """Each input's overlay (job.RenderNames: an image's .png, a video's folder), absolute (a worker does not run
    in this folder), or "" for all without --render."""
    if not cfg.render:
        return [""] * len(files)
    names = RenderNames(cfg.render, log)
    return [str(names(path, name, is_video(path)).resolve()) for path, name in files]


def _streamed(cfg: PredictConfig, poser, files: list[tuple[Path, str]], renders: list[str], image_ids: dict,
              problems: int, opening: str | None, log, t0: float) -> PredictSummary:
    """The records of `files` as PoseBatches makes them, each written when its frame is done (--out X.jsonl or -),
    or, for a --max-frames preview writing X.json, the results of the frames posed. Ctrl-C stops after the frame at
    hand (a second one at once) with what was written kept and said in one line."""
    if opening:
        log(opening)
    posing = poser(**actor_settings(cfg) | {"threads": cfg.threads or default_threads()})
    batch = columns([{"index": i, "path": str(path), "name": name, "render": renders[i]}
                     for i, (path, name) in enumerate(files)])
    stream = ImageRecords(cfg.out, image_ids, lookup) if is_stream(cfg.out) else None
    image_id, results, frames, persons = ImageIds(image_ids, lookup), [], 0, 0
    shown = progress_shown(cfg.progress)
    from tqdm import tqdm

    bar = tqdm(desc="predicting", unit="frame", disable=not shown,
               total=frames_to_read(files, cfg.every, cfg.max_frames) if shown else None)
    try:
        with StopRequest() as ctrl_c:
            for _, record, _ in posing.records(batch, cfg.max_frames):
                if "problem" in record:
                    log(record["problem"])
                    problems += 1
                    continue
                for line in record["messages"]:
                    log(line)
                frames, persons = frames + 1, persons + len(record["entries"])
                bar.update(1)
                if stream is not None:
                    stream(SimpleNamespace(name=record["name"], frame_index=record["frame_index"],
                                           capture_time=record["capture_time"]), record["entries"])
                else:
                    frame_id = image_id(record["name"])
                    results += [e | {"image_id": frame_id} for e in record["entries"]]
                if ctrl_c.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(_kept(cfg, frames, results, stream)) from None
    finally:
        if stream is not None:
            stream.close()
    bar.close()
    if not frames:
        raise PosecalInputError("no input could be read (see the messages above); nothing written")
    if stream is None:
        write_json_atomic(results, cfg.out, indent=None)
    return PredictSummary(frames, persons, problems, time.time() - t0, cfg.precision,
                          digest(predict_fingerprint(cfg)))


def _kept(cfg: PredictConfig, frames: int, results: list[dict], stream) -> str:
    """What a stopped stream or preview kept (the preview's results written now, atomically), in one line."""
    if not frames:
        return f"interrupted before any frame was done; nothing written to {cfg.out}"
    if stream is None:
        write_json_atomic(results, cfg.out, indent=None)
        overlays = f"; their overlays are in {cfg.render}" if cfg.render else ""
        return f"interrupted: kept the {frames} frame(s) done ({len(results)} pose(s)) in {cfg.out}{overlays}"
    return f"interrupted: the records of the {frames} frame(s) done are in {cfg.out}"
