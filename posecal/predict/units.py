"""`posecal predict` by whole input files through the runner (posecal/parallel/runner.py), on any engine: Ray
Data actors on this machine or a cluster (`--engine ray`), or this process (OneProcess), with the results written as
they come (a part per input file, by whoever posed it) and then as the one results file a single process writes.

Each input file (an image, or a whole video) is one unit; its poses are the records posecal/predict/batches.py
makes, the very frame loop of `posecal predict`. When every part is in, they are merged in input order with the
image ids a single process gives (job.merge_parts), written atomically, and the parts removed. A run started
again poses only the files it has no part for (one added or replaced), and one started while another writes the
same --out is refused at its start (posecal/parallel/parts.py).
"""
from __future__ import annotations

import time
from dataclasses import replace

from posecal.data.sources import collect
from posecal.data.box_files import BoxFile
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import precision_decided, require_model
from posecal.io import log_line
from posecal.parallel.runner import Engine, RowJob, run
from posecal.predict.batches import POSES, PoseBatches
from posecal.predict.job import (PredictConfig, PredictSummary, actor_settings, annotation_image_ids, check_predict,
                                 merge_parts, predict_fingerprint)
from posecal.records import STDOUT

FILES_PER_CALL = 4        # input files per map_batches call (an actor's crops are batched across them)


def run_predict_units(cfg: PredictConfig, engine: Engine, poser=PoseBatches, log=None) -> PredictSummary:
    """`posecal predict` by input files on `engine`: the same results file (and the same summary) as run_predict.
    poser: the map_batches class (PoseBatches; a test's subclass)."""
    log = log or log_line
    check_predict(cfg)
    if cfg.render:
        raise PosecalInputError("--render is drawn by one process: leave out --engine ray, or --render")
    if cfg.max_frames is not None:
        raise PosecalInputError("--max-frames counts the frames of one process in input order: leave out "
                                "--engine ray, or --max-frames")
    if str(cfg.out) == STDOUT:
        raise PosecalInputError("--out - streams from one process; with --engine ray give --out X.json or X.jsonl")
    engine.ready()
    t0 = time.time()
    image_ids = annotation_image_ids(cfg.annotations) if cfg.annotations else {}
    if cfg.boxes:   # read here once, so a bad file is one line before any worker starts (each reads it again)
        box_file = BoxFile(cfg.boxes, {v: k for k, v in image_ids.items()}, cfg.annotations)
        if box_file.nobody:
            log(f"{box_file.path}: {box_file.nobody_reason}: nobody in any image; the results will be empty")
    files, problems = collect(cfg.inputs)
    for p in problems:
        log(p.message)
    if not files:
        raise PosecalInputError("nothing to do: no readable inputs among " + ", ".join(cfg.inputs))
    require_model(cfg.model)
    cfg, opening = precision_decided(cfg)   # here, not in each worker: every node runs the graphs this one chose
    if cfg.device == "cuda":
        providers("cuda")   # a CPU-only onnxruntime is said here once, not by every worker out of sight

    def on_part(records: list[dict]) -> None:   # each frame's messages, said as its file is done
        for r in records:
            for m in ([r["problem"]] if "problem" in r else r["messages"]):
                log(m)

    job = RowJob(poser, actor_settings(cfg) | {"threads": cfg.threads}, POSES, FILES_PER_CALL, cfg.device == "cuda")
    with run(cfg.out, files, job, engine, predict_fingerprint(cfg), log, on_part, progress=cfg.progress,
             desc="predicting", unit="file", opening=opening) as store:
        return replace(merge_parts(cfg, store, image_ids, len(problems), t0), precision=cfg.precision)
