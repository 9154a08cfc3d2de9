"""The CPU cores this process may use, and the threads a run takes when none are asked for: one rule for the
predictor, `posecal eval` and the threads each Ray actor is given (posecal/parallel/ray_rows.py)."""
from __future__ import annotations

import os


def machine_cores() -> int:
    """The CPU cores this process may use (its affinity on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """CPU threads when none are asked for: every core this process may use (a 16-core machine is not left idle)."""
    return machine_cores()
