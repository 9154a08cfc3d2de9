"""`posecal predict --engine ray`: the inputs posed by Ray Data actors, on this machine or a Ray cluster, with the
results written as they come (a part per input file, by the worker that posed it) and then as the one results file
a single process writes.

Each input file (an image, or a whole video) is one row; a row's poses are the records posecal/predict/batches.py
makes, the very frame loop of `posecal predict`. The rows, their actors, parts, retries and resources are
posecal/parallel/ray_rows.py's, shared with `posecal track`, `eval` and `audit`. When every part is in, they are
merged in input order with the image ids a single process gives, written atomically, and the parts removed.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from posecal.data.sources import collect, lookup
from posecal.data.box_files import BoxFile
from posecal.devices import providers
from posecal.errors import PosecalInputError
from posecal.inference.opener import require_model
from posecal.inference.run_identity import run_identity
from posecal.io import publish, write_atomic
from posecal.models.shipped import shipped_name
from posecal.parallel.ray_rows import RayConfig, RowJob, import_ray, resumable, run_rows
from posecal.parallel.parts import PartStore
from posecal.predict.batches import POSES, SETTINGS, PoseBatches
from posecal.predict.job import PredictConfig, PredictSummary, _check, _image_ids
from posecal.records import STDOUT, ImageIds, ImageRecords, is_stream

FILES_PER_CALL = 4        # input files per map_batches call (an actor's crops are batched across them)


def run_predict_ray(cfg: PredictConfig, ray_cfg: RayConfig | None = None, poser=PoseBatches,
                    log=None) -> PredictSummary:
    """`posecal predict` through Ray: the same results file (and the same summary) as run_predict.
    poser: the map_batches class (PoseBatches; a test's subclass)."""
    ray_cfg = ray_cfg or RayConfig()
    log = log or (lambda msg: tqdm.write(f"posecal: {msg}", file=sys.stderr))
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
    return _merge(cfg, store, len(files), image_ids, len(problems), t0)


def fingerprint(cfg: PredictConfig, files: list[tuple[Path, str]]) -> dict:
    """What a run's results depend on: its inputs, in order, its settings (threads aside), and posecal's version
    and the weights' digests (run_identity). A run started again resumes only with the same fingerprint."""
    return {"inputs": [[str(Path(p).resolve()), name] for p, name in files],
            "settings": {k: v for k, v in actor_settings(cfg).items() if k != "threads"},
            "identity": run_identity(cfg.model, cfg.verifier, cfg.detector)}


def actor_settings(cfg: PredictConfig) -> dict:
    """PoseBatches' settings from the run's config, with its files (a model file, boxes, annotations) as absolute
    paths: an actor does not run in the driver's folder."""
    settings = {k: getattr(cfg, k) for k in SETTINGS}
    for key in ("boxes", "annotations"):
        if settings[key]:
            settings[key] = str(Path(settings[key]).resolve())
    if shipped_name(settings["model"]) is None:   # a file, not a shipped name
        settings["model"] = str(Path(settings["model"]).resolve())
    return settings


def _pose_parts(ray, cfg: PredictConfig, ray_cfg: RayConfig, rows, store: PartStore, poser, log) -> None:
    """Pose the rows' files on Ray actors (parallel/ray_rows.py), each file's part written by its worker, each
    frame's messages said as its file is done."""

    def said(records: list[dict]) -> None:
        for r in records:
            for m in ([r["problem"]] if "problem" in r else r["messages"]):
                log(m)

    job = RowJob(poser, actor_settings(cfg) | {"threads": cfg.threads}, POSES, FILES_PER_CALL, cfg.device == "cuda")
    run_rows(ray, ray_cfg, job, rows, store, said, cfg.progress, "predicting (ray)")


def _merge(cfg: PredictConfig, store: PartStore, files: int, image_ids: dict, problems: int,
           t0: float) -> PredictSummary:
    """The parts, in input order, streamed into the results file run_predict writes (a temp file put in place
    when whole), then the parts gone. Each part is read once and let go, so the merge holds one input's results
    at a time, however many inputs the run had; the image ids are one process's (records.ImageIds)."""
    counts = {"frames": 0, "persons": 0, "problems": problems}

    def frames():
        for records in store.parts(files):
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
