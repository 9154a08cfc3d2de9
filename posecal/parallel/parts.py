"""Results kept as they come, one part per unit of work, then merged, so that nothing is lost or done twice, in
one process or over workers (`--engine ray`); knows no model.

A unit is one input (a picture, a video, a picture with its records). Its part is the JSON text of its results,
written atomically by whoever did it: whole or absent, so a Ctrl-C or killed worker keeps every finished unit and
a retry writes the same part again. A part is named by its unit's key (unit_key: the input's absolute path, name,
size and modification time, and what else its row carries), so a rerun skips every unit whose part it finds, an
added or replaced input poses only itself, and a removed one is left out of the merge.

The folder's manifest.json holds the run's fingerprint (the settings that change results, posecal's version and
the weights' digests); a run with another fingerprint is refused in one line. The driver holds an exclusive lock on
the folder's `lock` file, so a second run on the same output is refused at its start. When every part is there
the caller merges them into the results file (atomically), then removes the folder, or keeps it finished
(PartStore.finish: `predict`): a later run with the same fingerprint poses only what it adds, and one with
another fingerprint replaces the finished results instead of being refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from posecal.errors import PosecalInputError
from posecal.io import write_atomic, write_json_atomic
from posecal.records import LOCK_HELD, lock_file

MANIFEST = "manifest.json"
LOCK = "lock"
FINISHED = "finished"   # the mark of a folder whose run was merged (PartStore.finish)


def part_folder(out) -> Path:
    """Where the parts of a run writing `out` live: beside it, `.<name>.parts/`."""
    out = Path(out)
    return out.parent / f".{out.name}.parts"


def unit_key(path, name: str, more: dict | None = None) -> str:
    """A unit's key, its part's name: a digest of the input's absolute path, its name, size and modification time
    (-1, -1 for one not there) and `more` (what else its row carries: a video's overlay path, a picture's boxes),
    so an unchanged input keeps its part and a replaced one has none."""
    try:
        stat = Path(path).stat()
        size_time = [stat.st_size, stat.st_mtime_ns]
    except OSError:
        size_time = [-1, -1]
    text = json.dumps([str(Path(path).resolve()), name, *size_time, more or {}], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def part_path(folder, key: str) -> Path:
    return Path(folder) / f"part_{key}.json"


def work_folder(folder, key: str) -> Path:
    """Where a unit too long to do again keeps its work in progress (a video's tracked chunks: tracking/chunks.py):
    `work_<key>/` among the parts, kept by a stopped run so that the same command goes on from it, removed once the
    unit's part is written (PartWriter) and with the folder."""
    return Path(folder) / f"work_{key}"


def write_part(folder, key: str, text: str) -> None:
    """The results (JSON text) of the unit whose key is `key`, whole or not at all: what a worker calls when a unit
    is done."""
    write_atomic(part_path(folder, key), lambda f: f.write(text), mode="w")


def _changed(found, fingerprint: dict) -> str:
    """What differs between a folder's fingerprint and this run's, in words: its top-level keys, and within an
    `identity` which part (posecal, model, verifier, detector)."""
    if not isinstance(found, dict):
        return "its manifest is unreadable"
    keys = [k for k in sorted(set(found) | set(fingerprint)) if found.get(k) != fingerprint.get(k)]
    words = []
    for key in keys:
        old, new = found.get(key), fingerprint.get(key)
        if key == "identity" and isinstance(old, dict) and isinstance(new, dict):
            parts = [p for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)]
            words += [f"posecal {old.get(p)} then {new.get(p)}" if p == "posecal" else f"other {p} weights"
                      for p in parts]
        else:
            words.append(f"other {key}")
    return ", ".join(words)


def output_of(folder: Path) -> Path:
    """The output whose parts `folder` holds (part_folder's inverse); the folder itself for another name."""
    name = folder.name
    return folder.with_name(name[1:-len(".parts")]) if name.startswith(".") and name.endswith(".parts") else folder


class PartStore:
    """The parts of one run, in `folder`, for the run whose fingerprint is `fingerprint` (JSON-able), its units'
    keys `keys` in input order: the driver opens it (taking the folder's lock, then checking or writing the
    manifest), workers write into its folder with write_part, and the driver lets it go at the end of the run
    (`with store:`, release or remove). A run on the same folder while this one holds it is refused in one line."""

    def __init__(self, folder, fingerprint: dict, keys: Iterable[str] = ()):
        self.folder = Path(folder)
        self.keys = list(keys)
        self.lock: int | None = None
        self.locked = self._lock()
        try:
            self._check(json.loads(json.dumps(fingerprint)))   # as it reads back (tuples are lists)
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> bool:
        """The folder's lock, held until release: False where its file system cannot lock files (the run goes on
        unguarded); a lock held by another run is one line. On POSIX a lock file removed by the run before (its
        folder merged and removed as this one locked it) is locked again where it now is."""
        path = self.folder / LOCK
        while True:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:   # the folder removed between the two: again
                continue
            except OSError as e:
                raise PosecalInputError(f"{self.folder}: cannot write ({e.strerror or e})") from None
            try:
                lock_file(fd)
            except OSError as e:
                os.close(fd)
                if e.errno in LOCK_HELD:
                    raise PosecalInputError(f"{output_of(self.folder)}: another posecal run is writing it now (its "
                                            f"parts are in {self.folder}); wait for it or give another --out") from None
                return False
            if os.name == "nt" or os.fstat(fd).st_nlink:
                self.lock = fd
                return True
            os.close(fd)

    def _check(self, fingerprint: dict) -> None:
        """The folder's manifest against this run's fingerprint: the same goes on from its parts, another is refused
        in one line unless its run finished (its results merged: they are replaced)."""
        manifest, finished = self.folder / MANIFEST, self.folder / FINISHED
        if manifest.is_file():
            try:
                found = json.loads(manifest.read_text())
            except (OSError, ValueError):
                found = None
            if found != fingerprint and not finished.is_file():
                raise PosecalInputError(f"{self.folder}: holds the parts of another run ({_changed(found, fingerprint)}"
                                        f"); remove that folder to start afresh, or give another --out")
            if found != fingerprint:
                self._drop_parts(keep=set())
                write_json_atomic(fingerprint, manifest)
        else:
            write_json_atomic(fingerprint, manifest)

    def _drop_parts(self, keep: set[str]) -> None:
        """Every part in the folder but those whose key is in `keep`."""
        for key in self.done() - keep:
            _quietly(part_path(self.folder, key).unlink)

    def done(self) -> set[str]:
        """The keys of the parts in the folder: units finished by this run or an earlier one with the same
        fingerprint (some perhaps of inputs this run no longer has)."""
        return {p.stem[len("part_"):] for p in self.folder.glob("part_*.json")}

    def kept(self) -> int:
        """How many of this run's units have their part."""
        done = self.done()
        return sum(key in done for key in self.keys)

    def in_progress(self) -> int:
        """How many of this run's units without a part have work in progress kept (work_folder)."""
        done = self.done()
        return sum(key not in done and work_folder(self.folder, key).is_dir() for key in self.keys)

    def read(self, key: str):
        path = part_path(self.folder, key)
        if not path.is_file():
            raise PosecalInputError(f"{path}: part missing; run again to make it")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PosecalInputError(f"{path}: unreadable part ({e}); remove it and run again") from None

    def parts(self) -> Iterator:
        """The parts of this run's units, in input order; a missing one is one line."""
        for key in self.keys:
            yield self.read(key)

    def release(self) -> None:
        """The run ends, merged or not: the lock let go, and the folder removed if it keeps no part nor work in
        progress (a run stopped before its first unit leaves nothing behind)."""
        if self.lock is not None and not self.done() and not any(self.folder.glob("work_*")):
            self.remove()
        self._unlock()

    def finish(self) -> None:
        """The run is merged, and its parts are kept for the next run with the same fingerprint (it poses only the
        inputs it adds): those of inputs this run no longer has are removed, the folder is marked finished (a run
        with another fingerprint replaces it rather than being refused), and the lock let go."""
        self._drop_parts(keep=set(self.keys))
        write_atomic(self.folder / FINISHED, lambda f: None, mode="w")
        self._unlock()

    def remove(self) -> None:
        """The run is merged: its parts are no longer needed. Everything goes while the lock is held (on POSIX the
        lock file too: a run starting now locks a new one); on Windows, where an open file cannot be removed, the
        lock file and the folder go once the lock is let go, unless another run holds them by then."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.is_dir():   # a unit's work in progress (work_folder)
                    shutil.rmtree(path, ignore_errors=True)
                elif path.name != LOCK or os.name != "nt":
                    _quietly(path.unlink)
            _quietly(self.folder.rmdir)
        self._unlock()
        if os.name == "nt":
            _quietly((self.folder / LOCK).unlink)
            _quietly(self.folder.rmdir)

    def _unlock(self) -> None:
        if getattr(self, "lock", None) is not None:
            fd, self.lock = self.lock, None
            if os.name == "nt":
                import msvcrt
                _quietly(lambda: (os.lseek(fd, 0, os.SEEK_SET), msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)))
            os.close(fd)   # on POSIX this lets the flock go

    def __enter__(self) -> "PartStore":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:   # a store dropped without release (a caller's bug) keeps no lock
        self._unlock()


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


def resumable(out, units: list, fingerprint: dict, log: Callable[[str], None],
              more: Callable[[int], dict] | None = None, opening: str | None = None,
              stale: Callable[[int], bool] | None = None) -> tuple[PartStore, list[dict]]:
    """The parts of a run writing `out` from `units` ((path, name) each): their store (beside `out`, locked for
    this run: release it when the run ends) and the rows still to do, one per unit without a part (`index`, its
    place in this run; `key`, unit_key; absolute `path`; `name`; and the columns `more(index)` adds): a run started
    again with the same fingerprint skips the units it finds done, and says so. `stale(index)`: a unit whose part
    is there but whose outputs beside it are not (an overlay removed): its part is dropped and the unit done again.
    `opening`: the run's first line, said once it holds the folder (a run refused there says only why)."""
    columns = [more(i) if more else {} for i in range(len(units))]
    keys = [unit_key(path, name, extra) for (path, name), extra in zip(units, columns)]
    store = PartStore(part_folder(out), fingerprint, keys)
    if opening:
        log(opening)
    if not store.locked:
        log(f"{store.folder}: its file system cannot lock files; two runs on {out} at once would each do every unit")
    for i in range(len(units)) if stale else ():
        if stale(i):
            _quietly(part_path(store.folder, keys[i]).unlink)
    done, kept, going = store.done(), store.kept(), store.in_progress()
    if kept or going:
        begun = f" and {going} begun" if going else ""
        log(f"resuming: {kept} of {len(units)} unit(s) already done{begun} in {store.folder}")
    rows = [{"index": i, "key": keys[i], "path": str(Path(units[i][0]).resolve()), "name": units[i][1]} | columns[i]
            for i in range(len(units)) if keys[i] not in done]
    if rows:   # work to do: until it is merged, the folder holds an unfinished run's parts
        _quietly((store.folder / FINISHED).unlink)
    return store, rows
