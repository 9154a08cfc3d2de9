"""Results kept as they come, one part per unit of work, then merged: what a run spread over workers (`--engine
ray`) keeps beside its output so that nothing is lost or done twice; knows no model.

A unit is one input (a picture, a video, a picture with its records). Its part is the JSON text of its results,
written atomically by the worker that did it (`part_000012.json`), so it never passes through the driver and is
whole or absent: a Ctrl-C, a killed worker or a failure elsewhere keeps every unit finished before it, and a
worker's retry writes the same part again instead of adding one. The folder's manifest.json holds the run's
fingerprint (its inputs, the settings that change results, posecal's version and the weights' digests); a run
started again with the same fingerprint skips the units whose part it finds (resume), and one with another
fingerprint is refused in one line rather than merging two runs' results. When every part is there the caller
merges them into the results file users know (atomically) and removes the folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Iterator

from posecal.errors import PosecalInputError
from posecal.io import write_atomic, write_json_atomic

MANIFEST = "manifest.json"


def part_folder(out) -> Path:
    """Where the parts of a run writing `out` live: beside it, `.<name>.parts/`."""
    out = Path(out)
    return out.parent / f".{out.name}.parts"


def part_path(folder, index: int) -> Path:
    return Path(folder) / f"part_{index:06d}.json"


def write_part(folder, index: int, text: str) -> None:
    """Unit `index`'s results (JSON text), whole or not at all: what a worker calls when a unit is done."""
    write_atomic(part_path(folder, index), lambda f: f.write(text), mode="w")


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


class PartStore:
    """The parts of one run, in `folder`, for the run whose fingerprint is `fingerprint` (JSON-able): the driver
    opens it (checking or writing the manifest); workers write into its folder with write_part."""

    def __init__(self, folder, fingerprint: dict):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        fingerprint = json.loads(json.dumps(fingerprint))   # as it reads back (tuples are lists)
        if manifest.is_file():
            try:
                found = json.loads(manifest.read_text())
            except (OSError, ValueError):
                found = None
            if found != fingerprint:
                raise PosecalInputError(f"{self.folder}: holds the parts of another run ({_changed(found, fingerprint)}"
                                        f"); remove that folder to start afresh, or give another --out")
        else:
            write_json_atomic(fingerprint, manifest)

    def done(self) -> set[int]:
        """The units finished by this run or an earlier one with the same fingerprint."""
        return {int(p.stem.split("_")[1]) for p in self.folder.glob("part_*.json") if p.stem.split("_")[1].isdigit()}

    def read(self, index: int):
        path = part_path(self.folder, index)
        if not path.is_file():
            raise PosecalInputError(f"{path}: part missing; run again to make it")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PosecalInputError(f"{path}: unreadable part ({e}); remove it and run again") from None

    def parts(self, count: int) -> Iterator:
        """The parts of units 0..count-1, in input order; a missing one is one line."""
        for index in range(count):
            yield self.read(index)

    def remove(self) -> None:
        """The run is merged: its parts are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)


def resumable(out, units: list, fingerprint: dict, log: Callable[[str], None]) -> tuple[PartStore, list[dict]]:
    """The parts of a run writing `out` from `units` ((path, name) each): their store (beside `out`) and the rows
    still to do, one per unit without a part (`index`, absolute `path`, `name`): a run started again with the same
    fingerprint skips the units it finds done, and says so."""
    store = PartStore(part_folder(out), fingerprint)
    done = store.done()
    if done:
        log(f"resuming: {len(done)} of {len(units)} unit(s) already done in {store.folder}")
    rows = [{"index": i, "path": str(Path(units[i][0]).resolve()), "name": units[i][1]}
            for i in range(len(units)) if i not in done]
    return store, rows
