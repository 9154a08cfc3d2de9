"""Results written as they come, in shards, then merged: what a run spread over workers (`posecal predict --engine
ray`) keeps beside its output so that nothing is lost or done twice; knows no model.

A run's inputs are cut into shards of consecutive items (plan). A shard's records are written when all of its items
are done, as one JSON Lines file, atomically (`shard_00012.jsonl`): a shard file is whole or absent, so a shard is
never half-kept, and written once, so no item appears twice whatever a worker's retries returned. The folder's
manifest.json holds the run's fingerprint (its inputs and the settings that change results); a run started again
with the same fingerprint skips the shards it finds (resume), and one with another fingerprint is refused in one
line rather than mixing two runs' results. When every shard is there the caller merges them into the results file
users know (atomically) and removes the folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

from posecal.errors import PosecalInputError
from posecal.io import write_atomic, write_json_atomic

MANIFEST = "manifest.json"


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


def plan(count: int, size: int) -> list[range]:
    """Items 0..count-1 cut into shards of `size` consecutive items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def shard_folder(out) -> Path:
    """Where the shards of a run writing `out` live: beside it, `.<name>.shards/`."""
    out = Path(out)
    return out.parent / f".{out.name}.shards"


class ShardStore:
    """The shard files of one run, in `folder`, for the run whose fingerprint is `fingerprint` (JSON-able)."""

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
                raise PosecalInputError(f"{self.folder}: holds the shards of another run ({_changed(found, fingerprint)}"
                                        f"); remove that folder to start afresh, or give another --out")
        else:
            write_json_atomic(fingerprint, manifest)

    def path(self, index: int) -> Path:
        return self.folder / f"shard_{index:05d}.jsonl"

    def done(self) -> set[int]:
        """The shards finished by this run or an earlier one with the same fingerprint."""
        return {int(p.stem.split("_")[1]) for p in self.folder.glob("shard_*.jsonl") if p.stem.split("_")[1].isdigit()}

    def write(self, index: int, records: list[dict]) -> None:
        """Shard `index`'s records, whole or not at all."""
        write_atomic(self.path(index), lambda f: f.writelines(json.dumps(r, separators=(",", ":")) + "\n"
                                                              for r in records), mode="w")

    def read(self, index: int) -> list[dict]:
        try:
            lines = self.path(index).read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line]
        except (OSError, ValueError) as e:
            raise PosecalInputError(f"{self.path(index)}: unreadable shard ({e}); remove it and run again") from None

    def records(self, count: int) -> Iterator[dict]:
        """Every record of shards 0..count-1, in shard order; a missing shard is one line."""
        for index in range(count):
            if not self.path(index).is_file():
                raise PosecalInputError(f"{self.path(index)}: shard missing; run again to make it")
            yield from self.read(index)

    def remove(self) -> None:
        """The run is merged: its shards are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
