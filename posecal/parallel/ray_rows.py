"""The Ray executor of posecal/parallel/runner.py (RayConfig): units of work through Ray Data actors, each unit's
results written by its worker as it is done, under `--engine ray` of `predict` (a unit: one input file), `track`
(one video) and the records of `eval` and `audit`; knows no model. The driver's side is runner.gather.

Why Ray Data: it streams units to actors that each hold one open pipeline, restarts a dead actor and retries its
batch (max_restarts and max_task_retries -1), and runs the same code on a laptop and a cluster.

Each unit's results are one part (posecal/parallel/parts.py) written atomically by the worker (runner.PartWriter)
under the run's fingerprint, so results never travel through Ray, a Ctrl-C keeps every finished unit, a retry
writes the same part again and a rerun skips the parts it finds. A worker's PosecalInputError comes back as its
rows' `error` column, said in one line. On a cluster the parts' folder, beside --out, must be on shared storage.

Each actor asks Ray for the cores its threads use (one worker per CPU by default), units in blocks of one batch.
A `--device cuda` job (RowJob.gpu) has one worker per GPU by default; on a cluster without a GPU the driver says so
once (devices.fall_back) and the actors run on the CPU.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

from posecal.devices import fall_back
from posecal.errors import MissingPackage, PosecalInputError
from posecal.parallel.cores import machine_cores
from posecal.parallel.parts import PartStore
from posecal.parallel.ray_lines import quiet_ray_lines
from posecal.parallel.runner import PartWriter, RowJob, gather


@dataclass
class RayConfig:
    """The Ray executor, an engine of posecal/parallel/runner.py: the units of a RowJob on Ray Data actors."""
    address: str | None = None    # None: a local Ray started for the run (the machine's cores); else that cluster
    workers: int | None = None    # actors (each holds one pipeline); None: one per CPU Ray sees

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise PosecalInputError(f"--workers must be >= 1, got {self.workers}")

    def ready(self) -> None:
        """--workers checked and Ray importable: each one line, before any input is read."""
        self.check()
        import_ray()

    def run(self, job: RowJob, rows: list[dict], store: PartStore, on_part: Callable[[object], None] = lambda p: None,
            progress: bool = True, desc: str = "ray", unit: str = "file") -> None:
        run_rows(import_ray(), self, job, rows, store, on_part, progress, f"{desc} (ray)", unit)


def import_ray():
    """Ray and Ray Data, or one line saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingPackage(f"Ray Data ({e.name} is not installed)", "pip install 'posecal[ray]'",
                             option="--engine ray") from None
    return ray


def run_rows(ray, ray_cfg: RayConfig, job: RowJob, rows: list[dict], store: PartStore,
             on_part: Callable[[object], None] = lambda part: None, progress: bool = True, desc: str = "ray",
             unit: str = "file") -> None:
    """Run `rows` (each with its unit's `index` and `key`) on Ray actors, each unit's part written by its worker into
    `store`; on_part(part) is called in the driver as each unit is finished, with its part (where the jobs say
    its messages). Ray's own log lines are kept out of posecal's output meanwhile (parallel/ray_lines.py)."""
    with quiet_ray_lines():
        _run_rows(ray, ray_cfg, job, rows, store, on_part, progress, desc, unit)


def actor_resources(cpus: float, gpus: float, workers: int | None, threads: int | None, gpu: bool
                    ) -> tuple[int, int, dict]:
    """(workers, threads per worker, what each actor asks Ray for) on a cluster with `cpus` and `gpus`: by default
    one worker per CPU, or for a GPU job (`gpu`) on a cluster with GPUs one per GPU (one CUDA session each, not
    one per core); each worker's threads the CPUs shared among the workers (or the threads asked for), and its
    CPU request that share; a GPU job's actors one GPU each, or their share of the GPUs when there are more
    workers than GPUs. The requests are rounded down to Ray's unit (0.0001), so the pool always fits the cluster."""
    workers = workers or max(1, int(gpus if gpu and gpus else cpus))
    share = cpus / workers
    threads = threads or max(1, int(share))
    ask = {"num_cpus": _ray_unit(min(float(threads), share))}
    if gpu and gpus:
        ask["num_gpus"] = _ray_unit(min(1.0, gpus / workers))
    return workers, threads, ask


def _ray_unit(amount: float) -> float:
    """`amount` rounded down to the 0.0001 Ray counts resources in (3 workers on 2 GPUs: 0.6666 each)."""
    return math.floor(round(amount * 10_000, 6)) / 10_000   # round(): 0.3 stays 0.3, not 0.2999


def _run_rows(ray, ray_cfg: RayConfig, job: RowJob, rows: list[dict], store: PartStore, on_part, progress: bool,
              desc: str, unit: str) -> None:
    started = _start(ray, ray_cfg.address)
    try:
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        if job.gpu and not gpus:   # said here, once: an actor's own fall-back line never reaches the user
            fall_back("the Ray cluster has no GPU")
        workers, threads, ask = actor_resources(float(resources.get("CPU", 1)), gpus, ray_cfg.workers,
                                                job.settings.get("threads"), job.gpu)
        settings = dict(job.settings) | {"threads": threads}
        out = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / job.batch_rows)))
        out = out.map_batches(PartWriter, fn_constructor_kwargs={"mapper": job.mapper, "settings": settings,
                                                                 "column": job.column, "folder": str(store.folder)},
                              batch_size=job.batch_rows, compute=ray.data.ActorPoolStrategy(size=workers), **ask)
        # each block as it is made (iter_rows would hold rows back until later batches are done)
        gather(out.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"), store, on_part, len(rows),
               progress, desc, unit)
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
