"""`posecal predict --engine ray`: the inputs posed by Ray Data actors, on this machine or a Ray cluster, with the
results written as they come (in shards) and then as the one results file a single process writes.

Why Ray Data and not torchrun: it streams the inputs to actors that each hold one open model, restarts an actor
whose process died and retries its batch (its defaults for actor pools: max_restarts and max_task_retries -1),
and runs the same code on a laptop and a cluster. Each input file (an image, or a whole video) is one row; a
row's poses are the records posecal/predict/batches.py makes, the very frame loop of `posecal predict`.

Nothing lost, nothing twice: the inputs are cut into shards of consecutive files (posecal/parallel/shards.py). The
driver keeps each arriving row by its input index (a retried batch replaces, never adds) and writes a shard,
atomically, once all of its rows are in. A run stopped (Ctrl-C, a crash, a lost cluster) and started again with
the same inputs and settings skips the shards it finds. When all are there they are merged in input order with
the image ids a single process gives, written atomically, and the shards removed.

CPU accounting: every row is read and posed inside an actor (the rows come from the driver: no read task), and
each actor asks Ray for ACTOR_CPUS, a fraction of a core, so the number of actors is --workers, not what whole
cores happen to be free: N actors on N cores leave room for whatever small task Ray Data schedules beside them,
where whole-core actors can wait forever on a core held by one. Each actor's onnxruntime threads are set
explicitly (the cores shared among the workers), so the fraction does not oversubscribe the machine.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from posecal.data.sources import collect, lookup
from posecal.detect.boxes import BoxFile
from posecal.devices import providers
from posecal.errors import MissingPackage, PosecalInputError
from posecal.inference.opener import require_model
from posecal.io import publish, write_json_atomic
from posecal.models.shipped import shipped_name
from posecal.parallel.ranks import machine_cores
from posecal.parallel.shards import ShardStore, plan, shard_folder
from posecal.predict.batches import POSES, SETTINGS, PoseBatches
from posecal.predict.job import PredictConfig, PredictSummary, _check, _image_ids, _with_image_ids
from posecal.records import STDOUT, ImageRecords, is_stream

ENGINES = ("process", "ray")
ACTOR_CPUS = 0.5          # Ray's CPU accounting per actor: a fraction, so N actors fit N cores with room to spare
FILES_PER_CALL = 4        # input files per map_batches call (an actor's crops are batched across them)
SHARD_FILES = 16          # input files per shard: what a resumed run may redo at most, per worker


@dataclass
class RayConfig:
    address: str | None = None    # None: a local Ray started for the run (the machine's cores); else that cluster
    workers: int | None = None    # actors (each holds one model); None: one per CPU Ray sees
    shard_files: int = SHARD_FILES


def run_predict_ray(cfg: PredictConfig, ray_cfg: RayConfig | None = None, poser=PoseBatches,
                    log=None) -> PredictSummary:
    """`posecal predict` through Ray: the same results file (and the same summary) as run_predict.
    poser: the map_batches class (PoseBatches; a test's subclass)."""
    ray_cfg = ray_cfg or RayConfig()
    log = log or (lambda msg: tqdm.write(f"posecal: {msg}", file=sys.stderr))
    _check(cfg)
    if cfg.render:
        raise PosecalInputError("--render is drawn by one process: leave out --engine ray, or --render")
    if str(cfg.out) == STDOUT:
        raise PosecalInputError("--out - streams from one process; with --engine ray give --out X.json or X.jsonl")
    if ray_cfg.workers is not None and ray_cfg.workers < 1:
        raise PosecalInputError(f"--workers must be >= 1, got {ray_cfg.workers}")
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
    shards = plan(len(files), ray_cfg.shard_files)
    store = ShardStore(shard_folder(cfg.out), fingerprint(cfg, files, ray_cfg.shard_files))
    done = store.done()
    if done:
        log(f"resuming: {len(done)} of {len(shards)} shard(s) already done in {store.folder}")
    todo = [s for s in range(len(shards)) if s not in done]
    if todo:
        _pose_shards(ray, cfg, ray_cfg, files, shards, todo, store, poser, log)
    return _merge(cfg, store, len(shards), image_ids, len(problems), t0)


def import_ray():
    """Ray and Ray Data, or one line saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingPackage(f"Ray Data ({e.name} is not installed)", "pip install 'posecal[ray]'",
                             option="--engine ray") from None
    return ray


def fingerprint(cfg: PredictConfig, files: list[tuple[Path, str]], shard_files: int) -> dict:
    """What a run's results depend on: its inputs, in order, and its settings (threads aside), and how its
    shards are cut. A run started again resumes only with the same fingerprint."""
    return {"inputs": [[str(Path(p).resolve()), name] for p, name in files], "shard_files": shard_files,
            "settings": {k: v for k, v in actor_settings(cfg).items() if k != "threads"}}


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


def _pose_shards(ray, cfg: PredictConfig, ray_cfg: RayConfig, files, shards, todo, store: ShardStore, poser,
                 log) -> None:
    """Pose the files of the shards in `todo` on Ray actors; each shard written as soon as its rows are in."""
    started = _start(ray, ray_cfg.address)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        gpus = float(ray.cluster_resources().get("GPU", 0))
        workers = ray_cfg.workers or max(1, int(cpus))
        settings = actor_settings(cfg) | {"threads": cfg.threads or max(1, int(cpus // workers))}
        rows = [{"index": i, "shard": s, "path": str(Path(files[i][0]).resolve()), "name": files[i][1]}
                for s in todo for i in shards[s]]
        gpu_share = min(1.0, gpus / workers) if cfg.device == "cuda" and gpus else 0
        poses = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            poser, fn_constructor_kwargs=settings, batch_size=FILES_PER_CALL,
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=ACTOR_CPUS, **({"num_gpus": gpu_share} if gpu_share else {}))
        waiting: dict[int, dict[int, list]] = {s: {} for s in todo}
        bar = tqdm(total=len(rows), desc="predicting (ray)", unit="file", disable=not cfg.progress)
        try:
            # each block as it is made (iter_rows would hold rows back until later batches are done)
            rows_out = (row for block in poses.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy")
                        for row in zip(block["shard"], block["index"], block[POSES]))
            for s, i, text in rows_out:
                s, i = int(s), int(i)
                if s not in waiting or i in waiting[s]:   # a retried batch's rows again: kept once
                    continue
                waiting[s][i] = records = json.loads(text)
                bar.update(1)
                for r in records:
                    for m in ([r["problem"]] if "problem" in r else r["messages"]):
                        log(m)
                if len(waiting[s]) == len(shards[s]):
                    store.write(s, [{"index": i, "records": waiting[s][i]} for i in shards[s]])
                    del waiting[s]
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"interrupted: {len(store.done())} of {len(shards)} shard(s) kept in "
                                    f"{store.folder}; run the same command again to finish") from None
        except Exception as e:   # an actor refusing its settings raises inside Ray: said as the one line it is
            user_error = _user_error(e)
            if user_error is None:
                raise
            raise user_error from None
        finally:
            bar.close()
    finally:
        if started:
            ray.shutdown()


def _start(ray, address: str | None) -> bool:
    """Connect to Ray: the one this process has already, the cluster at `address`, or a local one with this
    machine's cores (no dashboard, Ray Data's progress bars and logs off: posecal's lines only). True when this
    run started it (and so shuts it down)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)   # a failure is raised here, said once
    if ray.is_initialized():
        return False
    kwargs = {"address": address} if address else {"num_cpus": machine_cores(), "include_dashboard": False}
    try:
        ray.init(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True, **kwargs)
    except ConnectionError as e:
        raise PosecalInputError(f"--address {address}: no Ray cluster there ({str(e).splitlines()[0][:120]})") from None
    return True


def _user_error(error: BaseException) -> PosecalInputError | None:
    """The PosecalInputError an actor raised, or None for any other failure. Ray Data hands the driver a
    RayTaskError(UserCodeException) that keeps the actor's traceback as text only, not the exception, so the
    line is read from there (its last `PosecalInputError: ...` line)."""
    if isinstance(error, PosecalInputError):
        return error
    found = re.findall(r"posecal\.errors\.PosecalInputError: (.+)", str(error))
    return PosecalInputError(found[-1].strip()) if found else None


def _merge(cfg: PredictConfig, store: ShardStore, shards: int, image_ids: dict, problems: int,
           t0: float) -> PredictSummary:
    """The shards, in input order, as the results file run_predict writes (atomically), then the shards gone."""
    frames_read, results, entry_keys = [], [], []
    for shard_row in store.records(shards):
        for r in shard_row["records"]:
            if "problem" in r:
                problems += 1
                continue
            key = (shard_row["index"], -1 if r["frame_index"] is None else r["frame_index"])
            frames_read.append((key, r["name"], r["frame_index"]))
            results.extend(r["entries"])
            entry_keys.extend([key] * len(r["entries"]))
    if not frames_read:
        raise PosecalInputError("no input could be read (see the messages above); nothing written")
    if is_stream(cfg.out):
        _write_records(cfg.out, frames_read, results, entry_keys, image_ids)
    else:
        keyed = [(k, name) for k, name, _ in frames_read]
        write_json_atomic(_with_image_ids([(keyed, results, entry_keys, 0)], keyed, image_ids), cfg.out, indent=None)
    store.remove()
    return PredictSummary(len(frames_read), len(results), problems, time.time() - t0, {})


def _write_records(out, frames_read, results, entry_keys, image_ids) -> None:
    """The .jsonl records a single process streams, written whole to a temp file and then put in place."""
    by_key: dict = {}
    for k, e in zip(entry_keys, results):
        by_key.setdefault(k, []).append(e)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}", suffix=".tmp")
    os.close(fd)
    try:
        records = ImageRecords(tmp, image_ids, lookup)
        for key, name, frame_index in frames_read:
            records(SimpleNamespace(name=name, frame_index=frame_index, capture_time=None), by_key.get(key, []))
        records.close()
        publish(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
