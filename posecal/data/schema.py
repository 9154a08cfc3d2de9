"""What each field of the JSON files posecal reads must hold (COCO annotations, detection and keypoint results,
boxes files), checked in one place, so that every reader refuses the same mistake with the same line.

Those files are written by other programs. A null `bbox` or keypoints given as strings must neither surface as
a traceback deep in numpy or pycocotools nor take the good entries down with it: `checked_entries` checks each
entry against a spec (field name -> Field) and keeps the good ones; each bad one becomes one warning line
`FILE: ENTRY: FIELD: problem; skipped` (the CLI prints posecal's warnings as `posecal: ...`). Only a file with
no usable entry at all is refused, with its first problem as the PosecalInputError line.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Callable, Iterator

import numpy as np

from posecal.errors import PosecalInputError
from posecal.validation import Rule, describe, number_problem

KINDS = ("int", "number", "text", "numbers")


@dataclass(frozen=True)
class Field:
    """One field of an entry. kind: "int", "number" (int or float), "text" (a non-empty string) or "numbers" (a
    list of numbers of `shape`: (n,) for n numbers, (k, m) for k rows of m; None in a shape: any length;
    flat=True: the (k, m) table written as one list of k * m numbers, as COCO writes keypoints). `rule` holds
    each number to its bounds; `check` says what else is wrong with the parsed array (or None)."""

    kind: str = "number"
    required: bool = False
    rule: Rule | None = None
    shape: tuple = ()
    flat: bool = False
    expect: str = ""                                   # "numbers": how the message names the expected value
    missing: str = "missing"                           # the problem of a required field that is not there
    check: Callable[[np.ndarray], str | None] | None = None


def field_problem(value, field: Field) -> str | None:
    """What is wrong with a present field's value, in words (for 'FIELD: <problem>'), or None."""
    if field.kind == "text":
        return None if isinstance(value, str) and value else f"expected a file name (text), got {describe(value)}"
    if field.kind != "numbers":
        return number_problem(value, int if field.kind == "int" else float, field.rule)
    arr, problem = _numbers(value, field)
    if problem is None and field.rule is not None and arr.size:
        problem = field.rule.problem(tuple(arr.ravel().tolist()))
    if problem is None and field.check is not None:
        problem = field.check(arr)
    return problem


def _expected(field: Field) -> str:
    if field.expect:
        return field.expect
    n = field.shape[0] if field.shape else None
    if len(field.shape) == 2:
        if field.flat:
            total = f"{n} x {field.shape[1]}" if n is not None else f"a multiple of {field.shape[1]}"
            return f"{total} numbers"
        return f"{n if n is not None else 'a list of'} rows of numbers"
    return f"{n} numbers" if n is not None else "a list of numbers"


def _numbers(value, field: Field) -> tuple[np.ndarray | None, str | None]:
    """The value as a float array of the field's shape, or the first thing wrong with it (naming the element)."""
    want = _expected(field)
    if not isinstance(value, list):
        return None, f"expected {want}, got {describe(value)}"
    nested = len(field.shape) == 2 and not field.flat
    rows = value if nested else [value]
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            return None, f"[{r}]: expected a row of numbers, got {describe(row)}"
        for c, v in enumerate(row):
            problem = number_problem(v, float)
            if problem:
                return None, f"[{r}][{c}]: {problem}" if nested else f"[{c}]: {problem}"
    if nested and len({len(row) for row in rows}) > 1:
        return None, f"expected {want} of equal length, got rows of {sorted({len(row) for row in rows})} numbers"
    arr = np.asarray(value, np.float64)
    if not _fits(arr, field):
        got = f"a list of {len(value)}" if not nested else f"{len(rows)} rows of {arr.shape[1] if arr.ndim == 2 else 0}"
        return None, f"expected {want}, got {got}"
    return arr, None


def _fits(arr: np.ndarray, field: Field) -> bool:
    shape = field.shape
    if len(shape) == 1:
        return arr.ndim == 1 and shape[0] in (None, len(arr))
    if field.flat:
        n = arr.size // shape[1]
        return arr.ndim == 1 and arr.size % shape[1] == 0 and shape[0] in (None, n) and (shape[0] or n) > 0
    return arr.ndim == 2 and shape[0] in (None, arr.shape[0]) and shape[1] in (None, arr.shape[1])


SHOWN_PROBLEMS = 20   # lines a strict refusal lists; the rest are counted


@dataclass
class Skips:
    """The entries the readers left out while a job that scores them read its inputs (`strict_reading`).

    Why: most readers skip a bad entry with a line and go on, which is right for `predict` (one bad box must not
    cost the others their poses) but wrong where a number is computed from the file: an AP over 3 of 4 persons is
    not the AP the file asks for, and a script reading it cannot tell. A strict job therefore collects every bad
    entry instead of skipping it, and refuses its inputs with all of them (`refusal`); with skip=True (the
    user's `--skip-invalid`) it skips them as the readers always did, and records them (`lines`) for the
    metrics file."""

    skip: bool = False
    lines: list[str] = dataclass_field(default_factory=list)

    def add(self, line: str) -> None:
        if line not in self.lines:   # a file read twice (e.g. the ground truth for the persons and for AP)
            self.lines.append(line)

    def refusal(self, fix: str = "fix them, or give --skip-invalid to score the rest (the skipped entries are "
                                 "recorded in metrics.json)") -> PosecalInputError:
        """The error refusing the inputs: one line when one entry is bad, else a line per entry (the first
        SHOWN_PROBLEMS, then a count) before the error line."""
        if len(self.lines) == 1:
            return PosecalInputError(f"{self.lines[0]}; {fix.replace('them', 'it', 1)}")
        files = sorted({line.split(": ", 1)[0] for line in self.lines})
        return PosecalInputError(f"{len(self.lines)} invalid entries in {', '.join(files)} (listed above); {fix}",
                                 details=self.shown())

    def shown(self) -> list[str]:
        """The lines a refusal prints: the first SHOWN_PROBLEMS, then how many more."""
        more = len(self.lines) - SHOWN_PROBLEMS
        return self.lines[:SHOWN_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])

    def summary(self) -> dict:
        """What metrics.json says of the inputs' bad entries: the rule, and each skipped one with its reason."""
        return {"rule": "skip" if self.skip else "refuse", "skipped": len(self.lines), "entries": list(self.lines)}

    def settle(self) -> None:
        """After reading: refuse (strict) when anything was bad; with skip, nothing (they were warned)."""
        if self.lines and not self.skip:
            raise self.refusal()


_SKIPS: ContextVar[Skips | None] = ContextVar("posecal_skips", default=None)


@contextmanager
def strict_reading(skip: bool = False) -> Iterator[Skips]:
    """Within it, every reader's bad entry goes to the returned Skips (see there) instead of only a warning; on
    leaving it, the inputs are refused when any entry was bad (unless skip). A reader's own refusal inside it
    (e.g. a file with no usable entry, where --skip-invalid cannot help) comes after the lines of the bad entries
    found before it."""
    skips = Skips(skip)
    token = _SKIPS.set(skips)
    try:
        yield skips
    except PosecalInputError as e:
        if skips.lines and not skips.skip and not e.details:   # the bad entries found before it, above its line
            raise PosecalInputError(str(e), details=skips.shown()) from None
        raise
    finally:
        _SKIPS.reset(token)
    skips.settle()


def current_skips() -> Skips | None:
    """The Skips of the strict job reading now, or None (the readers' usual skip-with-a-line rule)."""
    return _SKIPS.get()


def left_out(line: str, stacklevel: int = 2) -> None:
    """An entry left out (`FILE: ENTRY: FIELD: problem`): warned ('; skipped'), and recorded for a strict job
    (warned only where that job skips: a strict refusal lists it instead)."""
    skips = current_skips()
    if skips is not None:
        skips.add(line)
        if not skips.skip:
            return
    warnings.warn(f"{line}; skipped", stacklevel=stacklevel + 1)


class Problems:
    """The bad entries of one file: each a line `FILE: ENTRY: FIELD: problem`. `settle` warns each with
    '; skipped' when some entry was usable, else refuses the file with the first line. Under a strict job
    (strict_reading) each goes to its Skips; a strict one refuses them all together."""

    def __init__(self, path, what: str = "entries"):
        self.path, self.what, self.lines = path, what, []

    def add(self, where: str, problem: str) -> None:
        self.lines.append(f"{self.path}: {where}: {problem}")

    def settle(self, usable: int, total: int, refuse_empty: bool = True) -> None:
        if not self.lines:
            return
        if usable == 0 and total and refuse_empty:   # nothing to score: no --skip-invalid can help
            others = f" (and all {total - 1} other {self.what} are unusable too)" if total > 1 else ""
            raise PosecalInputError(self.lines[0] + others)
        for line in self.lines:
            left_out(line, stacklevel=3)


def entry_problem(entry, spec: dict[str, Field], refs: dict | None = None) -> str | None:
    """'FIELD: problem' for the first bad field of a JSON entry (or what the entry itself is), or None.
    refs: field -> (allowed values, words for a value outside them, with {} for the value)."""
    if not isinstance(entry, dict):
        return f"expected an object with fields, got {describe(entry)}"
    for name, field in spec.items():
        if name not in entry:
            if field.required:
                return f"{name}: {field.missing}"
            continue
        problem = field_problem(entry[name], field)
        if problem:
            return f"{name}{'' if problem.startswith('[') else ': '}{problem}"
        if refs and name in refs and entry[name] not in refs[name][0]:
            return f"{name}: " + refs[name][1].format(entry[name])
    return None


def entry_label(i: int, entry, label: str, id_field: str | None) -> str:
    """`annotations[3] (id 103)`: the entry's place, and its id when it has a usable one."""
    where = label.format(i=i)
    ident = entry.get(id_field) if id_field and isinstance(entry, dict) else None
    if isinstance(ident, (int, str)) and not isinstance(ident, bool):
        where += f" ({id_field} {ident})"
    return where


def checked_entries(path, items, spec: dict[str, Field], label: str = "entry {i}", id_field: str | None = None,
                    refs: dict | None = None, what: str = "entries", refuse_empty: bool = True
                    ) -> list[tuple[int, dict]]:
    """(index, entry) of the entries of `items` (a JSON list) whose fields fit `spec`; bad ones are warned about
    and skipped, or, when none fits, the file is refused (see Problems; refuse_empty=False: an empty list
    is returned then, for a part the reader can do without)."""
    if not isinstance(items, list):
        raise PosecalInputError(f"{path}: expected a list of {what}, got {describe(items)}")
    problems, good = Problems(path, what), []
    for i, entry in enumerate(items):
        problem = entry_problem(entry, spec, refs)
        if problem:
            problems.add(entry_label(i, entry, label, id_field), problem)
        else:
            good.append((i, entry))
    problems.settle(len(good), len(items), refuse_empty)
    return good
