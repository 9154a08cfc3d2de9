"""Value rules shared by config loading, the command line and the Python API, so that a YAML field, a CLI option
and an API argument refuse the same values with the same words. Kept free of heavy imports: the CLI builds its
parser from these."""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from posecal.errors import PosecalInputError

_FLOAT_LITERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT_LITERAL = re.compile(r"[+-]?\d+")


def parse_float(text: str) -> float | None:
    """A plain decimal literal ('1e-3', '0.5', '2') as a float, else None.

    YAML 1.1 reads `1e-3` (no dot) as a string although the user meant a number, so float fields take it.
    'nan', 'inf' and '1_000' are not plain literals: they are refused rather than guessed at."""
    return float(text) if _FLOAT_LITERAL.fullmatch(text.strip()) else None


def parse_int(text: str) -> int | None:
    """A plain integer literal as an int, else None ('3.0' and '1e3' are not integers)."""
    return int(text) if _INT_LITERAL.fullmatch(text.strip()) else None


@dataclass(frozen=True)
class Rule:
    """Allowed values of a number, or of each element of a tuple of numbers: bounds (closed unless `*_open`),
    a fixed set of `choices` (strings too), and `ordered` for a (lo, hi) pair that must not be reversed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    ordered: bool = False
    choices: tuple = ()

    def problem(self, value) -> str | None:
        """What is wrong with `value` in words (for 'FIELD: <problem>'), or None when it is allowed."""
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if self.choices and v not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}, got {v!r}"
            if not self._within(v):
                return f"must be {self.bounds()}, got {v if isinstance(v, numbers.Integral) else format(v, 'g')}"
        if self.ordered and values[0] > values[1]:
            return f"must be a range [low, high] with low <= high, got {list(values)}"
        return None

    def _within(self, v) -> bool:
        above = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        below = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return above and below

    def bounds(self) -> str:
        """The bounds as a reader writes them: '> 0', '>= 0', 'in [0, 1)'."""
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'<' if self.hi_open else '<='} {self.hi:g}" if self.hi is not None else "any number"


POSITIVE = Rule(lo=0, lo_open=True)
NON_NEGATIVE = Rule(lo=0)
PROBABILITY = Rule(lo=0, hi=1)
# CPU threads: torch and onnxruntime take any positive int, and a huge one either overflows in C (a traceback)
# or asks for a million threads; no machine posecal runs on has more cores than this.
THREADS = Rule(lo=1, hi=1024)


def describe(value) -> str:
    """A value as the user wrote it (YAML, JSON or Python), for 'expected X, got <this>'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    return "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"


def number_problem(value, kind: type, rule: Rule | None = None) -> str | None:
    """What is wrong with `value` as an int (kind=int) or a number (kind=float) held to `rule`, or None.
    Booleans are not numbers (True would silently be 1); NaN and infinities are refused. numpy scalars count."""
    accepted = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, accepted):
        return f"expected {'an integer' if kind is int else 'a number'}, got {describe(value)}"
    if kind is float and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    return rule.problem(value) if rule is not None else None


def check_number(name: str, value, kind: type, rule: Rule | None = None, optional: bool = False):
    """An API argument held to `rule`: the value, or PosecalInputError 'NAME: problem' (e.g. 'threads: must be
    in [1, 1024], got -1'), so a bad number is refused by name before it reaches torch as a RuntimeError."""
    if optional and value is None:
        return None
    problem = number_problem(value, kind, rule)
    if problem:
        raise PosecalInputError(f"{name}: {problem}")
    return value
