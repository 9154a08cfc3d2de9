"""`posecal predict --engine ray`: the inputs posed by Ray Data actors, on this machine or a Ray cluster, with the
results written as they come (a part per input file, by the worker that posed it) and then as the one results file
a single process writes.

Each input file (an image, or a whole video) is one row; a row's poses are the records posecal/predict/batches.py
makes, the very frame loop of `posecal predict`. The rows, their actors, parts, retries and resources are
posecal/parallel/ray_rows.py's, shared with `posecal track`, `eval` and `audit`. When every part is in, they are
merged in input order with the image ids a single process gives, written atomically, and the parts removed.
"""
from __future__ import annotations

import time

from posecal.data.sources import collect
from posecal.data.box_files import BoxFile
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import require_model
from posecal.io import log_line
from posecal.parallel.parts import PartStore, resumable
from posecal.parallel.ray_rows import RayConfig, RowJob, import_ray, run_rows
from posecal.predict.batches import POSES, PoseBatches
from posecal.predict.job import (PredictConfig, PredictSummary, _check, _image_ids, actor_settings, fingerprint,
                                 merge_parts)
from posecal.records import STDOUT

FILES_PER_CALL = 4        # input files per map_batches call (an actor's crops are batched across them)


def run_predict_ray(cfg: PredictConfig, ray_cfg: RayConfig | None = None, poser=PoseBatches,
                    log=None) -> PredictSummary:
    """`posecal predict` through Ray: the same results file (and the same summary) as run_predict.
    poser: the map_batches class (PoseBatches; a test's subclass)."""
    ray_cfg = ray_cfg or RayConfig()
    log = log or log_line
    _check(cfg)
    if cfg.render:
        raise PosecalInputError("--render is drawn by one process: leave out --engine ray, or --render")
    if cfg.max_frames is not None:
        raise PosecalInputError("--max-frames counts the frames of one process in input order: leave out "
                                "--engine ray, or --max-frames")
    if str(cfg.out) == STDOUT:
        raise PosecalInputError("--out - streams from one process; with --engine ray give --out X.json or X.jsonl")
    ray_cfg.check()
    ray = import_ray()
    t0 = time.time()
    image_ids = _image_ids(cfg.annotations) if cfg.annotations else {}
    if cfg.boxes:   # read here once, so a bad file is one line before Ray starts (each actor reads it again)
        box_file = BoxFile(cfg.boxes, {v: k for k, v in image_ids.items()}, cfg.annotations)
        if box_file.nobody:
            log(f"{box_file.path}: {box_file.nobody_reason}: nobody in any image; the results will be empty")
    files, problems = collect(cfg.inputs)
    for p in problems:
        log(p.message)
    if not files:
        raise PosecalInputError("nothing to do: no readable inputs among " + ", ".join(cfg.inputs))
    require_model(cfg.model)
    if cfg.device == "cuda":
        providers("cuda")   # a CPU-only onnxruntime is said here once, not by every actor out of sight
    store, rows = resumable(cfg.out, files, fingerprint(cfg, files), log)
    if rows:
        _pose_parts(ray, cfg, ray_cfg, rows, store, poser, log)
    return merge_parts(cfg, store, len(files), image_ids, len(problems), t0)


def _pose_parts(ray, cfg: PredictConfig, ray_cfg: RayConfig, rows, store: PartStore, poser, log) -> None:
    """Pose the rows' files on Ray actors (parallel/ray_rows.py), each file's part written by its worker, each
    frame's messages said as its file is done."""

    def on_part(records: list[dict]) -> None:
        for r in records:
            for m in ([r["problem"]] if "problem" in r else r["messages"]):
                log(m)

    job = RowJob(poser, actor_settings(cfg) | {"threads": cfg.threads}, POSES, FILES_PER_CALL, cfg.device == "cuda")
    run_rows(ray, ray_cfg, job, rows, store, on_part, cfg.progress, "predicting (ray)")
