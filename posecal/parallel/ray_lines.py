"""Ray's own log lines kept out of posecal's output while a Ray run is in this process.

Ray's C++ core (the driver's core worker, the raylet it starts) writes lines such as `[2026-11-27 09:08:28,628 E
24320 24320] core_worker.cc:2465: Actor with class name ...` straight to file descriptor 2, below Python, on every
Ray Data run with restartable actors; a user redirecting posecal's lines to a file finds them there. Python's
logging settings do not reach them, and RAY_BACKEND_LOG_LEVEL prints a line of its own. So for the run, fd 2 goes
through a pipe that a thread reads, passing every line on to the real stderr but those in Ray's log format.
POSECAL_RAY_LOGS=1 keeps them (asked for: nothing is filtered)."""
from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager

# Ray's log prefixes: its C++ core's `[date time,ms LEVEL pid tid] file.cc:line: ` and its Python loggers'
# `date time,ms<TAB>LEVEL file.py:line -- ` (a Ctrl-C gives one from worker.py)
RAY_LINE = re.compile(rb"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] \S+\.cc:\d+: "
                      rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ \S+\.py:\d+ -- )")


def is_ray_line(line: bytes) -> bool:
    return RAY_LINE.match(line) is not None


def may_begin_ray_line(part: bytes) -> bool:
    """Could this unterminated start of a line still become one of Ray's (held back until its end comes)?"""
    return any(part.startswith(start[:len(part)]) or part.startswith(start) for start in (b"[20", b"20"))


def _forward(read_fd: int, out_fd: int) -> None:
    """Copy read_fd to out_fd segment by segment (a segment ends at \\n or \\r, so progress bars move as they
    write), leaving out Ray's lines; until read_fd is closed at its other end (or out_fd is)."""
    pending = b""
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                parts = re.split(rb"(?<=[\r\n])", pending + chunk)
                pending = parts.pop()        # the part with no terminator yet ("" after one)
                if pending and not may_begin_ray_line(pending):
                    parts.append(pending)    # cannot begin a Ray line: passed on now (a prompt, a partial bar)
                    pending = b""
                kept = b"".join(p for p in parts if not is_ray_line(p))
                if kept:
                    os.write(out_fd, kept)
            if pending and not is_ray_line(pending):
                os.write(out_fd, pending)
    except OSError:   # the real stderr closed under us: nothing left to say there
        pass


@contextmanager
def quiet_ray_lines():
    """While inside, fd 2 passes through the filter (module docstring); restored on the way out, whatever ends
    the run (a Ctrl-C included)."""
    if os.environ.get("POSECAL_RAY_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(target=_forward, args=(read_fd, saved), name="posecal-ray-lines", daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)   # the pipe's last writer in this process gone: the thread ends at the pipe's end
        thread.join(timeout=5)
        os.close(saved)
