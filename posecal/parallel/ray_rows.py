"""Rows of work through Ray Data actors, each row's output kept in shards as it comes: the engine under `posecal
predict --engine ray` (a row: one input file) and `posecal track --engine ray` (a row: one video); knows no model.

Why Ray Data and not torchrun: it streams the rows to actors that each hold one open model, restarts an actor whose
process died and retries its batch (its defaults for actor pools: max_restarts and max_task_retries -1), and runs
the same code on a laptop and a cluster.

Nothing lost, nothing twice: the rows are cut into shards of consecutive inputs (posecal/parallel/shards.py). The
driver keeps each arriving row by its input index (a retried batch replaces, never adds) and writes a shard,
atomically, once all of its rows are in; a run started again with the same fingerprint skips the shards it finds.

CPU accounting: every row is read and worked on inside an actor (the rows come from the driver: no read task), and
each actor asks Ray for ACTOR_CPUS, a fraction of a core, so the number of actors is --workers, not what whole
cores happen to be free: N actors on N cores leave room for whatever small task Ray Data schedules beside them,
where whole-core actors can wait forever on a core held by one. Each actor's threads are set explicitly (the cores
shared among the workers), so the fraction does not oversubscribe the machine.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from posecal.errors import MissingPackage, PosecalInputError
from posecal.parallel.cores import machine_cores
from posecal.parallel.ray_lines import quiet_ray_lines
from posecal.parallel.shards import ShardStore, plan, shard_folder

ACTOR_CPUS = 0.5          # Ray's CPU accounting per actor: a fraction, so N actors fit N cores with room to spare


@dataclass
class RayConfig:
    address: str | None = None    # None: a local Ray started for the run (the machine's cores); else that cluster
    workers: int | None = None    # actors (each holds one model); None: one per CPU Ray sees
    shard_files: int = 16         # inputs per shard: what a resumed run may redo at most, per worker

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise PosecalInputError(f"--workers must be >= 1, got {self.workers}")


@dataclass
class RowJob:
    """What the actors run: `mapper`, a map_batches class built with `settings` (its threads filled in here when
    None), whose output column `column` holds JSON text per row; `batch_rows` rows per call; `gpu`: each actor
    takes its share of the cluster's GPUs."""
    mapper: type
    settings: dict
    column: str
    batch_rows: int = 1
    gpu: bool = False


def import_ray():
    """Ray and Ray Data, or one line saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingPackage(f"Ray Data ({e.name} is not installed)", "pip install 'posecal[ray]'",
                             option="--engine ray") from None
    return ray


def resumable(out, files: list, ray_cfg: RayConfig, fingerprint: dict, log) -> tuple[list[range], ShardStore, list[dict]]:
    """The shards of a run writing `out` from `files` ((path, name) each): their plan, their store (beside `out`)
    and the rows still to do, one per file of the shards not yet written (`index`, `shard`, absolute `path`,
    `name`): a run started again with the same fingerprint skips the shards it finds, and says so."""
    shards = plan(len(files), ray_cfg.shard_files)
    store = ShardStore(shard_folder(out), fingerprint)
    done = store.done()
    if done:
        log(f"resuming: {len(done)} of {len(shards)} shard(s) already done in {store.folder}")
    rows = [{"index": i, "shard": s, "path": str(Path(files[i][0]).resolve()), "name": files[i][1]}
            for s in range(len(shards)) if s not in done for i in shards[s]]
    return shards, store, rows


def run_rows(ray, ray_cfg: RayConfig, job: RowJob, rows: list[dict], shards: list[range], store: ShardStore,
             keep: Callable[[str], object], progress: bool = True, desc: str = "ray", unit: str = "file") -> None:
    """Run `rows` (each with its input `index` and its `shard`) on Ray actors; keep(text) turns a row's output into
    what its shard holds (and says its messages); each shard is written as soon as all of its rows are in. Ray's
    own log lines are kept out of posecal's output meanwhile (parallel/ray_lines.py)."""
    with quiet_ray_lines():
        _run_rows(ray, ray_cfg, job, rows, shards, store, keep, progress, desc, unit)


def _run_rows(ray, ray_cfg: RayConfig, job: RowJob, rows: list[dict], shards: list[range], store: ShardStore,
              keep: Callable[[str], object], progress: bool, desc: str, unit: str) -> None:
    started = _start(ray, ray_cfg.address)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        gpus = float(ray.cluster_resources().get("GPU", 0))
        workers = ray_cfg.workers or max(1, int(cpus))
        settings = dict(job.settings)
        if settings.get("threads") is None:
            settings["threads"] = max(1, int(cpus // workers))
        gpu_share = min(1.0, gpus / workers) if job.gpu and gpus else 0
        out = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            job.mapper, fn_constructor_kwargs=settings, batch_size=job.batch_rows,
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=ACTOR_CPUS,
            **({"num_gpus": gpu_share} if gpu_share else {}))
        waiting: dict[int, dict[int, object]] = {s: {} for s in {row["shard"] for row in rows}}
        bar = tqdm(total=len(rows), desc=desc, unit=unit, disable=not progress)
        try:
            # each block as it is made (iter_rows would hold rows back until later batches are done)
            rows_out = (row for block in out.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy")
                        for row in zip(block["shard"], block["index"], block[job.column]))
            for s, i, text in rows_out:
                s, i = int(s), int(i)
                if s not in waiting or i in waiting[s]:   # a retried batch's rows again: kept once
                    continue
                waiting[s][i] = keep(text)
                bar.update(1)
                if len(waiting[s]) == len(shards[s]):
                    store.write(s, [{"index": i, "records": waiting[s][i]} for i in shards[s]])
                    del waiting[s]
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"interrupted: {len(store.done())} of {len(shards)} shard(s) kept in "
                                    f"{store.folder}; run the same command again to finish") from None
        except Exception as e:   # an actor refusing its settings raises inside Ray: said as the one line it is
            error = user_error(e)
            if error is None:
                raise
            raise error from None
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


def user_error(error: BaseException) -> PosecalInputError | None:
    """The PosecalInputError an actor raised, or None for any other failure. Ray Data hands the driver a
    RayTaskError(UserCodeException) that keeps the actor's traceback as text only, not the exception, so the
    line is read from there (its last `PosecalInputError: ...` line)."""
    if isinstance(error, PosecalInputError):
        return error
    found = re.findall(r"posecal\.errors\.PosecalInputError: (.+)", str(error))
    return PosecalInputError(found[-1].strip()) if found else None
