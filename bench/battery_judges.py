"""Bad-input battery's judges: each run classed good/traceback/crash/silent/vague (used by python bench/battery_*.py).

How a case's run is classed (the classes are defined in bench/bad_input_battery.py's docstring), and the checks
of its outputs.
"""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Callable

from battery_runner import CPU_LIMIT_S, WALL_LIMIT_S, Run


def _failure(r: Run) -> tuple[str, str] | None:
    """crash or traceback, whatever the case expected."""
    if r.timed_out:
        return "crash", f"hung: blocked for {WALL_LIMIT_S}s"
    if r.rc == -signal.SIGXCPU:
        return "crash", f"hung: used over {CPU_LIMIT_S} CPU-seconds"
    if r.rc < 0:
        return "crash", f"killed by signal {-r.rc}"
    if "Traceback (most recent call last)" in r.err or "Traceback (most recent call last)" in r.out:
        last = r.err_lines()[-1] if r.err_lines() else "?"
        return "traceback", last[:110]
    return None


def refused(*names: str, after: tuple[str, ...] = ()):
    """Expect a refusal: exit 2, one line (argparse: its usage line(s) then one error line), naming `names`,
    before any inference ran. `after`: names of bad files that may each have had a line of their own first."""
    def judge(r: Run) -> tuple[str, str]:
        bad = _failure(r)
        if bad:
            return bad
        if r.rc == 0:
            return "silent", "exit 0: accepted; " + (r.out.strip().splitlines() or ["no output"])[-1][:90]
        api_line = next((ln for ln in r.out.splitlines() if ln.startswith("REFUSED ")), None)
        lines = r.err_lines()
        if api_line is not None:
            msg, one_line = api_line[len("REFUSED "):], True
        elif lines and ": error: argument " in lines[-1]:
            msg, one_line = lines[-1], all(ln.startswith(("usage:", " ")) for ln in lines[:-1])
        else:
            msg = lines[-1] if lines else ""
            one_line = msg.startswith("posecal: error:") and all(
                any(a in ln for a in after) and _one_line_report(ln) for ln in lines[:-1])
            msg = " | ".join(lines) if after else msg
        if r.rc != 2 or not one_line:
            return "vague", f"exit {r.rc}, {len(lines)} stderr line(s): {msg[:90]}"
        missing = [n for n in names if n.lower() not in msg.lower()]
        if missing:
            return "vague", f"does not name {missing}: {msg[:90]}"
        if r.worked:
            return "silent", f"refused only after inference had run: {msg[:80]}"
        return "good", msg[:110]
    return judge


def _one_line_report(line: str) -> bool:
    """Not Python's warning format (`FILE.py:LINE: UserWarning: ...`, followed by the source line)."""
    return not re.search(r"\.py:\d+: \w*Warning: ", line)


def skipped(bad: str, check: Callable[[Run], str | None]):
    """Expect the run to go on: exit 0, a stderr line naming `bad`, and `check` (the good files' outputs)
    returning None (else what is wrong)."""
    def judge(r: Run) -> tuple[str, str]:
        fail = _failure(r)
        if fail:
            return fail
        if r.rc != 0:
            return "silent", f"exit {r.rc}, the good files' outputs lost: {(r.err_lines() or ['?'])[-1][:80]}"
        problem = check(r)
        if problem:
            return "silent", problem
        line = next((ln for ln in r.err_lines() if bad in ln), None)
        if line is None:
            return "silent", f"nothing says what happened to {bad}"
        if not _one_line_report(line):
            return "vague", "reported as a Python warning with a source line: " + line.strip()[:80]
        return "good", line.strip()[:110]
    return judge


def works(check: Callable[[Run], str | None]):
    """Expect a trap that simply works: exit 0 and `check` returning None (else what is wrong)."""
    def judge(r: Run) -> tuple[str, str]:
        fail = _failure(r)
        if fail:
            return fail
        if r.rc != 0:
            msg = (r.err_lines() or r.out.splitlines() or ["?"])[-1]
            return "vague", f"exit {r.rc}: {msg[:100]}"
        problem = check(r)
        return ("silent", problem) if problem else ("good", (r.out.strip().splitlines() or ["ok"])[-1][:110])
    return judge


def either(*judges):
    """Good when any judge says good (e.g. a refusal, or a correct result); else the first judge's verdict."""
    def judge(r: Run) -> tuple[str, str]:
        verdicts = [j(r) for j in judges]
        return next((v for v in verdicts if v[0] == "good"), verdicts[0])
    return judge


def predictions(r: Run, name: str = "p.json") -> list[dict]:
    path = r.cwd / name
    return json.loads(path.read_text()) if path.is_file() else None


def has_files(*wanted: str, out: str = "p.json"):
    """Check: the results file has entries for every name in `wanted` (matched by base name)."""
    def check(r: Run) -> str | None:
        res = predictions(r, out)
        if res is None:
            return f"{out} not written"
        names = {Path(str(e.get("file_name", ""))).name for e in res}
        lost = [w for w in wanted if w not in names]
        return f"no results for {lost} (results for {sorted(names)})" if lost else None
    return check


def file_exists(rel: str):
    def check(r: Run) -> str | None:
        return None if (r.cwd / rel).is_file() else f"{rel} not written"
    return check


def api_result(r: Run):
    line = next((ln for ln in r.out.splitlines() if ln.startswith("RESULT ")), None)
    return json.loads(line[len("RESULT "):]) if line else None
