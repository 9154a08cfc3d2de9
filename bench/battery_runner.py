"""Bad-input battery's runner: each case in its own process, classed and counted (used by python bench/battery_*.py).

Runs each case's CLI or API code in its own process (a fork server after the imports) and prints each case's
class and the summary; main() is the entry point of bench/bad_input_battery.py and of each bench/battery_SURFACE.py.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from battery_fixtures import MODEL, OUT, Fixtures

CPU_LIMIT_S = 120     # CPU seconds one case may use (the slowest, a training step, needs ~10)
WALL_LIMIT_S = 1800   # a case that blocks without using CPU
# Runs the CLI like `posecal ARGS`, and notes in $BATTERY_WORK the first forward pass of any torch module, so
# that a refusal that only came after inference had run is told apart from one made before any work.
CLI = """
import os, sys, torch
_call = torch.nn.Module.__call__
def _noting_call(self, *a, **k):
    mark = os.environ["BATTERY_WORK"]
    if not os.path.exists(mark):
        open(mark, "w").close()
    return _call(self, *a, **k)
torch.nn.Module.__call__ = _noting_call
from posecal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
# Runs an API snippet: it sets `result` (printed as JSON) or raises; PosecalInputError = a refusal (exit 2).
API = """
import json, sys, warnings
import numpy as np
from posecal.errors import PosecalInputError
from posecal.inference.predictor import Predictor
MODEL = sys.argv[1]
def run():
{body}
    return result
try:
    result = run()
except PosecalInputError as e:
    print("REFUSED " + str(e))
    sys.exit(2)
print("RESULT " + json.dumps(result))
"""

# A fork server: imports posecal's heavy dependencies once, then forks one child per case, which runs the case's
# code (CLI or API snippet above) as `python -c CODE ARGS` would. Each case is still its own process (a segfault
# kills only it) but does not pay ~2 CPU-seconds of imports: the CPU here is shared with a training run.
ZYGOTE = """
import json, os, resource, select, sys, traceback
import cv2, numpy, torch, yaml, posecal.cli.main, posecal.inference.predictor, posecal.errors
running = {}
def case(job):
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.update(job["env"])
        for fd, name in ((1, job["out"]), (2, job["err"])):
            f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        resource.setrlimit(resource.RLIMIT_CPU, (job["cpu"], job["cpu"] + 5))
        sys.argv = ["-c", *job["args"]]
        try:
            exec(compile(job["code"], "<string>", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as e:
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
stdin_open = True
pending = b""   # read from fd 0 itself: sys.stdin's buffer can hold a whole job that select() then never reports
while stdin_open or running:
    if stdin_open and select.select([0], [], [], 0.05)[0]:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            stdin_open = False
            continue
        pending += chunk
        while b"\\n" in pending:
            line, pending = pending.split(b"\\n", 1)
            job = json.loads(line)
            pid = os.fork()
            if pid == 0:
                case(job)
            running[pid] = job["id"]
            print(json.dumps({"id": job["id"], "pid": pid}), flush=True)
    elif not stdin_open:
        select.select([], [], [], 0.05)
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"id": running.pop(pid), "rc": rc}), flush=True)
"""


class ForkServer:
    """Runs cases through ZYGOTE, several at a time; the same Run as a fresh interpreter would give, minus
    the import time."""

    def __init__(self, python: str, cwd: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        # cwd: `python -c` puts the current folder first on sys.path, ahead of PYTHONPATH; a posecal checkout
        # there would be the one imported
        self.proc = subprocess.Popen([python, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1, cwd=cwd)
        self.lock = threading.Lock()
        self.replies: dict[int, dict] = {}
        self.events: dict[int, threading.Event] = {}
        self.next_id = 0
        self.gone = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self.lock:
                self.replies.setdefault(reply["id"], {}).update(reply)
                if "rc" in reply:
                    self.events[reply["id"]].set()
        with self.lock:   # the server itself exited (its traceback is on stderr): wake every waiting case
            self.gone = True
            for event in self.events.values():
                event.set()

    def run(self, cwd: Path, code: str, args: list, env: dict) -> tuple[int, bytes, bytes, bool]:
        out, err = cwd / ".battery-stdout", cwd / ".battery-stderr"
        args = [os.fsdecode(a) if isinstance(a, bytes) else a for a in args]  # as sys.argv holds them
        with self.lock:
            if self.gone:
                raise RuntimeError("the battery's fork server exited (see its stderr above); --no-fork runs without it")
            job_id, self.next_id = self.next_id, self.next_id + 1
            done = self.events[job_id] = threading.Event()
            self.proc.stdin.write(json.dumps({"id": job_id, "cwd": str(cwd), "code": code, "args": args,
                                              "env": env, "out": str(out), "err": str(err),
                                              "cpu": CPU_LIMIT_S}) + "\n")
        timed_out = not done.wait(WALL_LIMIT_S)
        if timed_out:
            os.kill(self.replies[job_id]["pid"], signal.SIGKILL)
            done.wait()
        if "rc" not in self.replies.get(job_id, {}):
            raise RuntimeError("the battery's fork server exited (see its stderr above); --no-fork runs without it")
        return self.replies[job_id]["rc"], out.read_bytes(), err.read_bytes(), timed_out

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


SERVER: ForkServer | None = None   # set by main() unless --no-fork


@dataclass
class Run:
    rc: int
    out: str
    err: str
    cwd: Path
    worked: bool      # a torch forward pass happened (CLI runs only)
    seconds: float
    timed_out: bool = False

    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


@dataclass
class Case:
    name: str
    run: Callable[["Fixtures", Path], Run]
    judge: Callable[[Run], tuple[str, str]]


def run_process(fx: Fixtures, cwd: Path, code: str, args: list) -> Run:
    """Run one case's code in its own process. A hang is judged by CPU time (RLIMIT_CPU: SIGXCPU), not wall
    time, since the CPU may be shared with work at a higher priority; the wall-clock limit only catches a
    process that blocks."""
    mark = cwd / ".battery-worked"
    env = {"BATTERY_WORK": str(mark), "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    if SERVER is not None:
        rc, out, err, timed_out = SERVER.run(cwd, code, args, env)
    else:
        limit = lambda: resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 5))  # noqa: E731
        try:
            p = subprocess.run([fx.python, "-c", code, *args], cwd=cwd, env=dict(os.environ, **env),
                               capture_output=True, timeout=WALL_LIMIT_S, preexec_fn=limit)
            rc, out, err, timed_out = p.returncode, p.stdout, p.stderr, False
        except subprocess.TimeoutExpired as e:
            rc, out, err, timed_out = -9, e.stdout or b"", e.stderr or b"", True
    shown = lambda b: b.decode("utf-8", "backslashreplace").replace(str(fx.d) + "/", "").replace(  # noqa: E731
        str(fx.root) + "/", "")
    return Run(rc, shown(out), shown(err), cwd, mark.exists(), time.time() - t0, timed_out)


def cli(*args) -> Callable[[Fixtures, Path], Run]:
    """A case that runs `posecal ARGS`; args may be callables of (fixtures, case folder) for paths."""
    def run(fx: Fixtures, cwd: Path) -> Run:
        argv = []
        for a in args:
            a = a(fx, cwd) if callable(a) else a
            argv.extend(a if isinstance(a, list) else [a])
        argv = [a if isinstance(a, bytes) else str(a) for a in argv]
        return run_process(fx, cwd, CLI, argv)
    return run


def api(body: str) -> Callable[[Fixtures, Path], Run]:
    """A case that runs a Python API snippet (indented into a function; sets `result`). `D` is the fixture
    folder, `MODEL` the shipped model."""
    def run(fx: Fixtures, cwd: Path) -> Run:
        code = API.format(body="    D = " + repr(str(fx.d)) + "\n" + "\n".join("    " + ln for ln in
                                                                         body.strip("\n").splitlines()))
        return run_process(fx, cwd, code, [fx.model])
    return run


def with_setup(setup: Callable[[Fixtures, Path], None], run: Callable[[Fixtures, Path], Run]):
    def both(fx: Fixtures, cwd: Path) -> Run:
        setup(fx, cwd)
        return run(fx, cwd)
    return both


def predict(*args):
    return cli("predict", *args, MODEL, *OUT)


def main(surfaces: dict[str, list[Case]], description: str) -> int:
    """Run the cases of `surfaces` (name: cases), or of the one --surface names, and print one line per case
    and the counts per class."""
    ap = argparse.ArgumentParser(description=description)
    if len(surfaces) > 1:
        ap.add_argument("--surface", choices=list(surfaces), help="run only this surface's cases")
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case's stderr/stdout tails")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--jobs", type=int, default=4, help="cases at a time (default 4)")
    ap.add_argument("--no-fork", action="store_true", help="a fresh interpreter per case (slower: imports)")
    args = ap.parse_args()
    global SERVER
    chosen = [cs for name, cs in surfaces.items() if getattr(args, "surface", None) in (None, name)]
    cases = [c for cs in chosen for c in cs if not args.only or args.only in c.name]
    root = Path(tempfile.mkdtemp(prefix="posecal-battery-"))
    counts = {k: 0 for k in ("good", "traceback", "crash", "silent", "vague")}
    t0 = time.time()
    try:
        fx = Fixtures(root, sys.executable)
        if not args.no_fork:
            SERVER = ForkServer(sys.executable, root)
        print(f"posecal from {Path(fx.model).parents[1]}; fixtures in {root}", flush=True)

        def one(i_case):
            i, case = i_case
            cwd = root / f"case{i:02d}"
            cwd.mkdir()
            r = case.run(fx, cwd)
            return case, r, case.judge(r)

        with ThreadPoolExecutor(1 if args.no_fork else args.jobs) as pool:
            for case, r, (cls, evidence) in pool.map(one, enumerate(cases)):
                counts[cls] += 1
                print(f"{cls:<9}  {case.name:<36}  {r.seconds:5.1f}s  {evidence}", flush=True)
                if args.verbose:
                    print("    rc", r.rc, "| stdout:", r.out[-400:].replace("\n", " | "), "\n    stderr:",
                          r.err[-800:].replace("\n", " | "))
    finally:
        if SERVER is not None:
            SERVER.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    vague = f", {counts['vague']} vague" if counts["vague"] else ""
    print(f"{len(cases)} cases: {counts['good']} good, {counts['traceback']} traceback, {counts['crash']} crash, "
          f"{counts['silent']} silent{vague} ({time.time() - t0:.0f}s)")
    return 0
