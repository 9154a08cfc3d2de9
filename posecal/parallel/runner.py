"""One runner for the commands that work unit by unit (`predict` an input file, `track` a video, `eval` and `audit`
a picture with its persons), whatever engine does the units; knows no model and imports no Ray.

A command gives `run` its units ((path, name) each), a RowJob (the map_batches class that turns a batch of rows
into each row's part), the run's fingerprint and an engine: OneProcess (here, in input order, one instance of the
class) or Ray (posecal/parallel/ray_rows.py's RayConfig: the same class in Ray Data actors). Either way each unit's
part is written atomically by whoever did it (PartWriter) under its unit's key, a rerun with the same fingerprint
skips the units whose part it finds, a Ctrl-C keeps every finished unit, and the caller merges the parts in input
order (PartStore.parts) into its output, holding the parts folder's lock until then. So one process and Ray give
the same parts, and one merge reads them.

The fingerprint (`fingerprint`): the command's settings as JSON (threads aside: they change speed, not results),
what else its results depend on, and the identity of posecal and the weights (run_identity). The inputs are not in
it: each part is named by its input (parts.unit_key), so a run does only what it has no part for.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
from tqdm import tqdm

from posecal.errors import PosecalInputError
from posecal.io import progress_shown
from posecal.parallel.cores import default_threads
from posecal.parallel.parts import PartStore, output_of, part_path, resumable, work_folder, write_part

ENGINES = ("process", "ray")   # --engine: this process, or Ray Data actors
ERROR = "error"   # PartWriter's output column: "" for a unit done, else the line its worker refused it with


@dataclass
class RowJob:
    """What an engine runs: `mapper`, a map_batches class built with `settings` (Ray fills in their threads when
    None), whose output column `column` holds each row's results as JSON text (the unit's part); `batch_rows`
    units per call; `gpu`: the job runs on GPUs (`--device cuda`: on Ray one actor per GPU by default)."""
    mapper: type
    settings: dict
    column: str
    batch_rows: int = 1
    gpu: bool = False


class PartWriter:
    """The one map_batches class, in this process and in Ray's actors alike: `mapper(**settings)` opened once (at
    its first batch, so that a refusal is its rows' error line, not an actor that never starts), called on each
    batch, and each row's `column` written as its unit's part (named by the row's `key`) into `folder`. Returns only
    the rows' `index`, `key` and `error`."""

    def __init__(self, mapper: type, settings: dict, column: str, folder: str):
        self.mapper, self.settings, self.column, self.folder = mapper, settings, column, folder
        self.inner = None

    def __call__(self, batch: dict) -> dict:
        index, keys = np.asarray(batch["index"]), np.asarray(batch["key"], dtype=object)
        try:
            if self.inner is None:
                self.inner = self.mapper(**self.settings)
            out = self.inner(batch)
        except PosecalInputError as e:
            return {"index": index, "key": keys, ERROR: np.array([str(e)] * len(index), dtype=object)}
        for key, text in zip(keys, out[self.column]):
            write_part(self.folder, str(key), str(text))
            shutil.rmtree(work_folder(self.folder, str(key)), ignore_errors=True)   # its work in progress is done
        return {"index": index, "key": keys, ERROR: np.array([""] * len(index), dtype=object)}


class Engine(Protocol):
    """Who does the units: `ready()` before any input is read (a missing package is one line there), `run(...)`
    the rows, each unit's part written into the store, on_part(part) called here as each unit is finished."""

    def ready(self) -> None: ...

    def run(self, job: RowJob, rows: list[dict], store: PartStore, on_part: Callable[[object], None],
            progress: bool, desc: str, unit: str) -> None: ...


class OneProcess:
    """The engine that does the units in this process, in input order, `job.batch_rows` at a time, with one
    instance of the job's class (PartWriter, as each Ray actor holds one) given every core this process may use
    when its settings name no threads."""

    def ready(self) -> None:
        pass

    def run(self, job: RowJob, rows: list[dict], store: PartStore, on_part: Callable[[object], None] = lambda p: None,
            progress: bool = True, desc: str = "", unit: str = "file") -> None:
        settings = dict(job.settings) | {"threads": job.settings.get("threads") or default_threads()}
        writer = PartWriter(job.mapper, settings, job.column, str(store.folder))
        blocks = (writer(columns(rows[start:start + job.batch_rows])) for start in range(0, len(rows), job.batch_rows))
        gather(blocks, store, on_part, len(rows), progress, desc, unit)


def gather(blocks: Iterable[dict], store: PartStore, on_part: Callable[[object], None], total: int, progress: bool,
           desc: str, unit: str) -> None:
    """The driver's side of every engine: each block of finished rows (PartWriter's `index`, `key` and `error`
    columns, as they come) read back from the store and handed to on_part, once each (a retried batch's rows come
    again), with the progress bar; a refused row is its one line, and a Ctrl-C says what was kept."""
    seen: set[int] = set()
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress_shown(progress))
    try:
        for block in blocks:
            for i, key, error in zip(block["index"], block["key"], block[ERROR]):
                if error:
                    raise PosecalInputError(str(error))
                if int(i) in seen:
                    continue
                seen.add(int(i))
                path = part_path(store.folder, str(key))
                if not path.is_file():   # written on a node whose disk this is not
                    raise PosecalInputError(f"{path}: a worker wrote it, but it is not here: with a Ray cluster, "
                                            "give --out on storage every node sees")
                on_part(store.read(str(key)))
                bar.update(1)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted(store)) from None
    finally:
        bar.close()


def columns(rows: list[dict]) -> dict:
    """Rows as the batch of columns Ray Data hands a map_batches class in numpy form."""
    return {k: np.array([r[k] for r in rows], dtype=np.int64 if k == "index" else object) for k in rows[0]}


def interrupted(store: PartStore) -> str:
    """The line of a run stopped by Ctrl-C, whatever the command and engine: what was kept, and how to go on."""
    kept, total, out, going = store.kept(), len(store.keys), output_of(store.folder), store.in_progress()
    if not kept and not going:
        return f"interrupted: none of the {total} input(s) was done; nothing written to {out}"
    begun = f" and the work done on {going} more" if going else ""
    return (f"interrupted: the results of {kept} of {total} input(s){begun} are kept in {store.folder}; the same "
            f"command again goes on from there ({out} is written when every input is done)")


def run(out, units: list, job: RowJob, engine: Engine, fingerprint: dict, log: Callable[[str], None],
        on_part: Callable[[object], None] = lambda part: None, more: Callable[[int], dict] | None = None,
        progress: bool = True, desc: str = "", unit: str = "file", opening: str | None = None,
        stale: Callable[[int], bool] | None = None) -> PartStore:
    """The units ((path, name) each) of a run writing `out`, done by `engine` with `job`: their parts, beside
    `out`, those of an earlier run with the same fingerprint kept (said in one line), the rest done now. `more`
    (unit index -> columns) adds what a unit's row carries besides its index, key, path and name (part of its key);
    `stale` (unit index -> bool) names a unit to do again though its part is kept (what it wrote beside its part is
    gone: parts.resumable); `opening`, the run's first line, is said once it holds the parts folder. Returns the
    store, every part in it and its lock held, for the caller to merge (PartStore.parts) and remove or finish
    within `with store:`; a run that fails or is stopped lets the lock go here."""
    store, rows = resumable(out, units, fingerprint, log, more, opening, stale)
    try:
        if rows:
            engine.run(job, rows, store, on_part, progress, desc, unit)
    except BaseException:
        store.release()
        raise
    return store


def check_settings(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
    """A map_batches class's settings: one it does not know is one line naming those it does."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise PosecalInputError(f"{owner}: unknown setting(s) {', '.join(unknown)} (settings: {', '.join(known)})")


def absolute_paths(settings: dict, keys: Iterable[str]) -> dict:
    """`settings` with those of `keys` that name an existing file as absolute paths: a worker does not run in
    the driver's folder (a shipped model's name stays a name)."""
    settings = dict(settings)
    for key in keys:
        value = settings.get(key)
        if isinstance(value, str) and Path(value).is_file():
            settings[key] = str(Path(value).resolve())
    return settings


def fingerprint(settings: dict, identity: dict, **more) -> dict:
    """What every unit's results depend on: the run's settings (threads aside), what else the command names in
    `more`, and `identity` (posecal's version and the weights' digests: inference/run_identity.py). A run started
    again resumes only with the same fingerprint; its inputs are not in it (each unit's part is keyed by its own
    input: parts.unit_key). As JSON reads it back (a dataclass as its fields)."""
    found = {"settings": {k: v for k, v in settings.items() if k != "threads"}, "identity": identity} | more
    return json.loads(json.dumps(found, default=_plain))


def digest(print_run: dict) -> str:
    """A fingerprint in 16 hex digits: what a run's results and metrics.json record of the settings and weights
    that made them, so that two results files say whether they came from the same run settings."""
    import hashlib

    return hashlib.sha256(json.dumps(print_run, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value):
    """A setting that JSON does not know (a TrackerConfig, a PersonPolicy) as the fields it holds."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)
