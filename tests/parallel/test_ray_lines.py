"""Ray's own log lines kept out of posecal's output during a Ray run (posecal/parallel/ray_lines.py), without Ray:
lines written to file descriptor 2 by this process and by a child process, in Ray's two formats and others."""
import os
import subprocess
import sys

import pytest

from posecal.parallel.ray_lines import is_ray_line, may_begin_ray_line, quiet_ray_lines

CORE = b"[2026-11-27 09:08:28,628 E 24320 24320] core_worker.cc:2465: Actor with class name: 'MapWorker'\n"
PYTHON = b"2026-11-27 09:10:25,746\tWARNING worker.py:1681 -- SIGTERM handler is not set\n"


def test_ray_lines_are_told_from_others():
    assert is_ray_line(CORE) and is_ray_line(PYTHON)
    for line in (b"posecal: 7 person(s) in 4 image(s)\n", b"2026 people\n", b"[2026] a bracket\n",
                 b"predicting (ray):  25%|##  | 1/4\r"):
        assert not is_ray_line(line)
    assert may_begin_ray_line(b"[20") and may_begin_ray_line(b"2026-11-2") and not may_begin_ray_line(b"pose")


def test_the_filter_drops_only_rays_lines_from_this_process_and_its_children(capfd):
    with quiet_ray_lines():
        os.write(2, CORE + b"kept 1\n")
        os.write(2, b"kept 2\n")
        subprocess.run([sys.executable, "-c", f"import os; os.write(2, {PYTHON!r} + b'kept 3\\n')"], check=True)
        os.write(2, b"bar 1/4\rbar 2/4\r")          # a progress bar's segments end in \r: passed on as they come
        os.write(2, b"[2026] not Ray at the end")    # unterminated, not Ray's: kept at the end
    err = capfd.readouterr().err
    assert err == "kept 1\nkept 2\nkept 3\nbar 1/4\rbar 2/4\r[2026] not Ray at the end"
    os.write(2, CORE)                                # after the run: stderr is as it was
    assert capfd.readouterr().err == CORE.decode()


def test_asked_for_they_stay_and_an_interrupt_restores_stderr(capfd, monkeypatch):
    monkeypatch.setenv("POSECAL_RAY_LOGS", "1")
    with quiet_ray_lines():
        os.write(2, CORE)
    assert capfd.readouterr().err == CORE.decode()
    monkeypatch.delenv("POSECAL_RAY_LOGS")
    with pytest.raises(KeyboardInterrupt):
        with quiet_ray_lines():
            os.write(2, CORE + b"before the stop\n")
            raise KeyboardInterrupt
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before the stop\nafter\n"
