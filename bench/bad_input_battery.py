"""Bad-input battery (issue 12): tries ~60 kinds of bad input on `posecal predict/eval/train/export/demo/pack`
and the Python API, each in its own subprocess, and says how each was handled.

    PYTHONPATH=/path/to/posecal OMP_NUM_THREADS=1 nice -n 19 python bench/bad_input_battery.py [--only NAME] [-v]

It runs whichever posecal is first on PYTHONPATH and uses only the public surface that older versions have too
(`posecal.cli.main.main(argv)` and `posecal.inference.predictor.Predictor`), so the same script measures before and after a
change. Fixtures (tiny drawn images, a 4-image COCO set, a fake YOLOX-style detector, broken files) are made
in a temp folder. Each case gets one class:

- good:      a user mistake refused with exit code 2 (API: PosecalInputError) and one line naming the file or
             field, before any inference; or a bad file/box skipped with a line naming it while the others'
             outputs are written; or a trap (e.g. `lr: 1e-3`, a file name that is not UTF-8) that just works;
- traceback: a Python traceback for a user mistake;
- crash:     the process was killed by a signal (e.g. a segfault in OpenCV) or hung;
- silent:    wrong or lost work without a word: exit 0 with the bad input misread or ignored, outputs lost, a
             temp file left behind, or a refusal that came only after inference had run;
- vague:     refused without a traceback, but not in one line naming the file or field.

Left out: permission-denied files and read-only folders, since these runs are as root, for whom mode bits do not
stop reads or writes (posecal's write probe handles that case; the tests cover it where not root).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_coco  # noqa: E402 - the tests' tiny COCO set, one implementation

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
while stdin_open or running:
    if stdin_open and select.select([sys.stdin], [], [], 0.05)[0]:
        line = sys.stdin.readline()
        if not line:
            stdin_open = False
            continue
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
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self.lock:
                self.replies.setdefault(reply["id"], {}).update(reply)
                if "rc" in reply:
                    self.events[reply["id"]].set()

    def run(self, cwd: Path, code: str, args: list, env: dict) -> tuple[int, bytes, bytes, bool]:
        out, err = cwd / ".battery-stdout", cwd / ".battery-stderr"
        args = [os.fsdecode(a) if isinstance(a, bytes) else a for a in args]  # as sys.argv holds them
        with self.lock:
            job_id, self.next_id = self.next_id, self.next_id + 1
            done = self.events[job_id] = threading.Event()
            self.proc.stdin.write(json.dumps({"id": job_id, "cwd": str(cwd), "code": code, "args": args,
                                              "env": env, "out": str(out), "err": str(err),
                                              "cpu": CPU_LIMIT_S}) + "\n")
        timed_out = not done.wait(WALL_LIMIT_S)
        if timed_out:
            os.kill(self.replies[job_id]["pid"], signal.SIGKILL)
            done.wait()
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


# ---------------------------------------------------------------- fixtures


def person_image(w: int = 160, h: int = 120) -> np.ndarray:
    """A drawn stick figure on a dark background (BGR)."""
    img = np.full((h, w, 3), 30, np.uint8)
    cx = w // 2
    cv2.circle(img, (cx, h // 6), max(3, h // 14), (150, 170, 220), -1)
    for a, b in (((cx, h // 4), (cx, h * 3 // 5)), ((cx, h // 3), (cx - w // 8, h // 2)),
                 ((cx, h // 3), (cx + w // 8, h // 2)), ((cx, h * 3 // 5), (cx - w // 12, h - 5)),
                 ((cx, h * 3 // 5), (cx + w // 12, h - 5))):
        cv2.line(img, a, b, (200, 180, 160), 3)
    return img


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking 100 KB-free PNG whose IHDR claims width x height RGB pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def fake_yolox(path: Path) -> None:
    """A YOLOX-style ONNX detector (64 px input, 84 anchor rows, 1 class) that always finds one person with
    score 0.81 in the middle of a 160 x 120 image, whatever the input."""
    from onnx import TensorProto, helper, numpy_helper

    raw = np.zeros((1, 84, 6), np.float32)
    # stride 32, cell (gx 1, gy 0): centre (32, 24), size 40 x 44 in the 64 px canvas (image scaled by 0.4)
    raw[0, 81] = [0.0, 0.75, np.log(40 / 32), np.log(44 / 32), 0.9, 0.9]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 84, 6])
    mean = helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0)  # input used, scaled to nothing
    zero = helper.make_node("Mul", ["m", "zero"], ["z"])
    add = helper.make_node("Add", ["raw", "z"], ["output"])
    graph = helper.make_graph([mean, zero, add], "fake_yolox", [x], [y],
                              initializer=[numpy_helper.from_array(raw, "raw"),
                                           numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def exif_jpeg(path: Path, bgr: np.ndarray, orientation: int) -> None:
    from PIL import Image

    im = Image.fromarray(bgr[:, :, ::-1])
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=90, exif=exif.tobytes())


def tiny_video(path: Path, frames: int = 6) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for i in range(frames):
        img = person_image()
        cv2.putText(img, str(i), (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        writer.write(img)
    writer.release()


class Fixtures:
    """Every input file the cases use, made once in `root`; cases copy what they change."""

    def __init__(self, root: Path, python: str):
        self.root, self.python = root, python
        self.model = str(Path(self._posecal_dir()) / "weights" / "posecal_fast.pt")
        d = self.d = root / "files"
        d.mkdir()
        good = person_image()
        ok, jpg = cv2.imencode(".jpg", good)
        self.jpg_bytes = jpg.tobytes()
        (d / "good.jpg").write_bytes(self.jpg_bytes)
        (d / "good2.jpg").write_bytes(cv2.imencode(".jpg", person_image()[:, ::-1])[1].tobytes())
        png = cv2.imencode(".png", good)[1].tobytes()
        (d / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
        (d / "truncated.jpg").write_bytes(self.jpg_bytes[: len(self.jpg_bytes) // 2])
        (d / "truncated.png").write_bytes(png[: len(png) // 2])
        (d / "empty.jpg").write_bytes(b"")
        (d / "huge.png").write_bytes(huge_header_png())
        (d / "text.png").write_text("not an image\n")
        (d / "png_named.jpg").write_bytes(png)
        (d / "gray16.png").write_bytes(cv2.imencode(".png", (cv2.cvtColor(good, cv2.COLOR_BGR2GRAY)
                                                               .astype(np.uint16) * 257))[1].tobytes())
        self.nonutf8 = os.fsencode(d) + b"/caf\xe9.jpg"       # Latin-1 e-acute: not valid UTF-8
        with open(self.nonutf8, "wb") as f:
            f.write(self.jpg_bytes)
        exif_jpeg(d / "exif6.jpg", good, 6)                    # stored 160 x 120, shown 120 x 160
        tiny_video(d / "clip.avi")
        fake_yolox(d / "fake_yolox.onnx")
        (d / "corrupt.pt").write_bytes(b"PK\x03\x04 not a torch file" * 20)
        (d / "corrupt.onnx").write_text("this is not a network\n")
        (d / "a_file").write_text("I am a file\n")
        (d / "boxes_bad.json").write_text('{"good.jpg": [[10, 10, 50')
        (d / "boxes_neg.json").write_text(json.dumps({"good.jpg": [[10, 10, -50, 80]],
                                                       "good2.jpg": [[40, 5, 80, 110]]}))
        (d / "boxes_norm.json").write_text(json.dumps({"good.jpg": [[0.2, 0.1, 0.5, 0.8]]}))
        # collision: photo.jpg and photo.png in one folder
        col = d / "collide"
        col.mkdir()
        (col / "photo.jpg").write_bytes(self.jpg_bytes)
        (col / "photo.png").write_bytes(png)
        # a folder of good and bad files
        mixed = d / "mixed"
        mixed.mkdir()
        for name in ("good.jpg", "corrupt.jpg", "truncated.jpg", "empty.jpg", "huge.png"):
            shutil.copy(d / name, mixed / name)
        # a tiny COCO set (4 images, one person each)
        self.ann, self.images = make_coco(root / "coco", n_images=4)

    def _posecal_dir(self) -> str:
        import importlib.util  # finds the posecal on PYTHONPATH without importing it (and torch)

        return str(Path(importlib.util.find_spec("posecal").origin).parent)

    def coco_copy(self, where: Path, replace: dict[str, bytes | None] | None = None) -> tuple[Path, Path]:
        """A copy of the COCO set's images with some files replaced by other bytes (None: deleted)."""
        img = where / "images"
        shutil.copytree(self.images, img)
        for name, data in (replace or {}).items():
            (img / name).unlink()
            if data is not None:
                (img / name).write_bytes(data)
        return self.ann, img

    def train_config(self, where: Path, extra: str = "", model: str | None = None, images: Path | None = None,
                     out_dir: Path | str | None = None) -> Path:
        img = images or self.images
        cfg = where / "cfg.yaml"
        cfg.write_text(f"""out_dir: {out_dir or where / 'run'}
data: {{train_annotations: {self.ann}, train_images: {img}, val_annotations: {self.ann}, val_images: {img}}}
model: {model or '{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false}'}
epochs: 1
batch_size: 2
max_steps: 1
num_workers: 0
threads: 1
""" + extra)
        return cfg


# ---------------------------------------------------------------- running


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


# ---------------------------------------------------------------- judging


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


# ---------------------------------------------------------------- the cases


def P(name):  # noqa: N802 - a path in the fixture folder, resolved when the case runs
    return lambda fx, cwd: fx.d / name


MODEL = lambda fx, cwd: ["--model", fx.model]  # noqa: E731
OUT = ["--out", "p.json", "--no-progress", "--threads", "1"]


def predict(*args):
    return cli("predict", *args, MODEL, *OUT)


def mixed_with(bad: str):
    return Case(f"predict-{bad.replace('.', '-')}-among-good", predict(P("good.jpg"), P(bad), P("good2.jpg")),
                skipped(bad, has_files("good.jpg", "good2.jpg")))


def exif_check(r: Run) -> str | None:
    res = predictions(r)
    if not res:
        return "no results"
    bbox = [round(v) for v in res[0]["bbox"]]
    return None if bbox == [0, 0, 120, 160] else f"whole-image box {bbox}: not the viewer's 120x160 (stored 160x120)"


def render_collision(r: Run) -> str | None:
    pngs = sorted(p.name for p in (r.cwd / "r").rglob("*.png"))
    return None if len(pngs) == 2 else f"{len(pngs)} overlay(s) {pngs} for 2 inputs"


def detector_found(r: Run) -> str | None:
    res = predictions(r)
    return None if res else "no person found"


def no_stale_temp(r: Run) -> str | None:
    left = [p.name for p in (r.cwd / "run").glob("*.tmp")]
    if left:
        return f"stale temp file(s) left: {left}"
    if "removed" not in r.out + r.err:
        return "temp file gone without a word"
    return None


def eval_metrics(n: int | None = None):
    def check(r: Run) -> str | None:
        m = r.cwd / "ev" / "metrics.json"
        if not m.is_file():
            return "metrics.json not written"
        got = json.loads(m.read_text())["num_instances"]
        return None if n is None or got == n else f"metrics over {got} persons, expected {n}"
    return check


def eval_case(name, replace, bad, n=3):
    def run(fx, cwd):
        ann, img = fx.coco_copy(cwd, replace(fx) if callable(replace) else replace)
        return cli("eval", "--annotations", ann, "--images", img, "--out", "ev", MODEL, "--no-progress",
                   "--threads", "1")(fx, cwd)
    return Case(name, run, skipped(bad, eval_metrics(n)))


def eval_args(*args):
    def run(fx, cwd):
        return cli("eval", "--annotations", fx.ann, "--images", fx.images, MODEL, "--no-progress",
                   "--threads", "1", *args)(fx, cwd)
    return run


def train_case(name, extra="", judge=None, model=None, setup=None, args=(), images_replace=None, out_dir=None):
    def run(fx, cwd):
        images = fx.coco_copy(cwd, images_replace)[1] if images_replace else None
        od = out_dir(fx, cwd) if callable(out_dir) else out_dir
        cfg = fx.train_config(cwd, extra, model, images, od)
        if setup:
            setup(cwd)
        return cli("train", cfg, "--no-progress", *args)(fx, cwd)
    return Case(name, run, judge)


def put_stale_temp(cwd: Path) -> None:
    (cwd / "run").mkdir()
    (cwd / "run" / ".last.ptk3j9x1q2.tmp").write_bytes(b"\0" * 100_000)   # write_atomic's temp name


def put_corrupt_last(cwd: Path) -> None:
    (cwd / "run").mkdir()
    (cwd / "run" / "last.pt").write_bytes(b"PK\x03\x04 cut short")


def trained(r: Run) -> str | None:
    return None if (r.cwd / "run" / "last.pt").is_file() else "run/last.pt not written"


def api_box(r: Run, want) -> str | None:
    res = api_result(r)
    if res is None:
        return "no result"
    return None if [round(v) for v in res] == want else f"box {res}, expected {want}"


IMG = "img = np.zeros((120, 160, 3), np.uint8); img[20:100, 70:90] = 200\np = Predictor(MODEL)\n"

CASES = [
    # --- image files in predict: the bad one is reported, the good ones' results written
    *(mixed_with(b) for b in ("missing.jpg", "corrupt.jpg", "truncated.jpg", "truncated.png", "empty.jpg",
                              "huge.png", "text.png")),
    Case("predict-folder-of-good-and-bad", predict(P("mixed")),
         skipped("huge.png", lambda r: has_files("good.jpg")(r) or next(
             (f"nothing says what happened to {b}" for b in ("corrupt.jpg", "truncated.jpg", "empty.jpg")
              if b not in r.err), None))),
    Case("predict-non-utf8-file-name", predict(P("good.jpg"), lambda fx, cwd: fx.nonutf8),
         works(lambda r: (has_files("good.jpg")(r) or
                          (None if len(predictions(r)) == 2 else "no result for the non-UTF-8 name")))),
    Case("predict-png-named-jpg", predict(P("png_named.jpg")), works(has_files("png_named.jpg"))),
    Case("predict-16bit-gray-png", predict(P("gray16.png")), works(has_files("gray16.png"))),
    Case("predict-exif-orientation-6", predict(P("exif6.jpg")), works(exif_check)),
    Case("predict-only-bad-inputs", predict(P("corrupt.jpg"), P("missing.jpg")),
         refused("corrupt.jpg", "missing.jpg", after=("corrupt.jpg", "missing.jpg"))),
    # --- outputs
    Case("predict-out-is-a-folder", with_setup(lambda fx, c: (c / "p.json").mkdir(), predict(P("good.jpg"))),
         refused("--out", "p.json")),
    Case("predict-out-parent-is-a-file", cli("predict", P("good.jpg"), MODEL, "--out", P("a_file/p.json"),
                                             "--no-progress"), refused("a_file")),
    Case("predict-render-is-a-file", predict(P("good.jpg"), "--render", P("a_file")), refused("--render", "a_file")),
    Case("predict-render-parent-is-a-file", predict(P("good.jpg"), "--render", P("a_file/r")),
         refused("--render", "a_file")),
    Case("predict-render-name-collision", predict(P("collide"), "--render", "r"), works(render_collision)),
    # --- CLI numbers
    Case("predict-threads-0", cli("predict", P("good.jpg"), MODEL, "--out", "p.json", "--no-progress",
                                  "--threads", "0"), refused("--threads")),
    Case("predict-batch-size-minus-1", predict(P("good.jpg"), "--batch-size", "-1"), refused("--batch-size")),
    Case("predict-detector-threshold-1.5", predict(P("good.jpg"), "--detector", P("fake_yolox.onnx"),
                                                   "--detector-threshold", "1.5"), refused("--detector-threshold")),
    Case("predict-detector-sanity", predict(P("good.jpg"), "--detector", P("fake_yolox.onnx")),
         works(detector_found)),
    Case("predict-every-0", predict(P("clip.avi"), "--every", "0"), refused("--every")),
    # --- boxes, model and detector files
    Case("predict-boxes-missing", predict(P("good.jpg"), "--boxes", P("nope.json")), refused("nope.json")),
    Case("predict-boxes-malformed", predict(P("good.jpg"), "--boxes", P("boxes_bad.json")),
         refused("boxes_bad.json")),
    Case("predict-boxes-negative-size", predict(P("good.jpg"), P("good2.jpg"), "--boxes", P("boxes_neg.json")),
         skipped("good.jpg", has_files("good2.jpg"))),
    Case("predict-boxes-normalised", predict(P("good.jpg"), "--boxes", P("boxes_norm.json")),
         skipped("normalised", has_files("good.jpg"))),
    Case("predict-model-corrupt", cli("predict", P("good.jpg"), "--model", P("corrupt.pt"), *OUT),
         refused("corrupt.pt")),
    Case("predict-model-missing", cli("predict", P("good.jpg"), "--model", P("nope.pt"), *OUT), refused("nope.pt")),
    Case("predict-detector-corrupt", predict(P("good.jpg"), "--detector", P("corrupt.onnx")),
         refused("corrupt.onnx")),
    # --- eval
    eval_case("eval-missing-image", {"img1.jpg": None}, "img1.jpg"),
    eval_case("eval-corrupt-image", {"img1.jpg": b"\x00garbage" * 100}, "img1.jpg"),
    eval_case("eval-truncated-image", lambda fx: {"img1.jpg": (fx.images / "img1.jpg").read_bytes()[:600]},
              "img1.jpg"),
    eval_case("eval-huge-header-image", {"img1.jpg": huge_header_png()}, "img1.jpg"),
    Case("eval-out-is-a-file", eval_args("--out", P("a_file")), refused("a_file")),
    Case("eval-annotations-missing", cli("eval", "--annotations", "nope.json", "--images", ".", "--out", "ev",
                                         MODEL), refused("nope.json")),
    Case("eval-annotations-malformed", cli("eval", "--annotations", P("boxes_bad.json"), "--images", ".",
                                           "--out", "ev", MODEL), refused("boxes_bad.json")),
    Case("eval-boxes-malformed", eval_args("--out", "ev", "--boxes", P("boxes_bad.json")), refused("boxes_bad.json")),
    Case("eval-batch-size-0", eval_args("--out", "ev", "--batch-size", "0"), refused("--batch-size")),
    Case("eval-model-corrupt", cli("eval", "--annotations", lambda fx, c: fx.ann, "--images",
                                   lambda fx, c: fx.images, "--out", "ev", "--model", P("corrupt.pt")),
         refused("corrupt.pt")),
    # --- train: configs
    train_case("train-lr-1e-3-string-trap", "lr: 1e-3\n", works(trained)),
    train_case("train-batch-size-0", "batch_size: 0\n",
               refused("batch_size")),
    train_case("train-epochs-negative", "epochs: -2\n", refused("epochs")),
    train_case("train-unknown-key", "epochz: 3\n", refused("epochz")),
    train_case("train-wrong-type-float-size", "", refused("input_wh"),
               model="{input_wh: [48.5, 64], head_widths: [16, 16, 8], imagenet: false}"),
    train_case("train-wrong-type-scalar-for-pair", "", refused("input_wh"),
               model="{input_wh: 48, head_widths: [16, 16, 8], imagenet: false}"),
    train_case("train-wrong-type-text-for-number", "weight_decay: lots\n", refused("weight_decay")),
    train_case("train-threads-0", "threads: 0\n", refused("threads")),
    Case("train-config-not-a-mapping", with_setup(lambda fx, c: (c / "list.yaml").write_text("- 1\n- 2\n"),
                                                  cli("train", "list.yaml")), refused("list.yaml")),
    train_case("train-annotations-missing", "", refused("nope.json"), setup=lambda c: (c / "cfg.yaml").write_text(
        re.sub(r"train_annotations: [^,]+", "train_annotations: nope.json", (c / "cfg.yaml").read_text()))),
    train_case("train-out-dir-is-a-file", "", refused("a_file"), out_dir=lambda fx, c: fx.d / "a_file"),
    train_case("train-max-minutes-negative", "", refused("--max-minutes"), args=("--max-minutes", "-5")),
    # --- train: resume and checkpoints
    train_case("train-resume-nothing", "", refused("resume"), args=("--resume",)),
    train_case("train-resume-corrupt-last-pt", "", refused("last.pt"), setup=put_corrupt_last, args=("--resume",)),
    train_case("train-stale-tmp-from-killed-write", "", works(no_stale_temp), setup=put_stale_temp),
    train_case("train-truncated-image-in-data", "", skipped("img1.jpg", trained),
               images_replace={"img1.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 300}),
    # --- export, pack, demo
    Case("export-model-corrupt", cli("export", "--model", P("corrupt.pt"), "--out", "m.onnx"), refused("corrupt.pt")),
    Case("export-model-missing", cli("export", "--model", P("nope.pt"), "--out", "m.onnx"), refused("nope.pt")),
    Case("export-out-is-a-folder", with_setup(lambda fx, c: (c / "m.onnx").mkdir(),
                                              cli("export", MODEL, "--out", "m.onnx")), refused("m.onnx")),
    Case("export-out-parent-is-a-file", cli("export", MODEL, "--out", P("a_file/m.onnx")), refused("a_file")),
    Case("pack-model-corrupt", cli("pack", P("corrupt.pt"), "packed.pt"), refused("corrupt.pt")),
    Case("demo-out-is-a-file", cli("demo", MODEL, "--out", P("a_file")), refused("a_file")),
    Case("demo-model-corrupt", cli("demo", "--model", P("corrupt.pt"), "--out", "demo"), refused("corrupt.pt")),
    # --- Python API
    Case("api-flat-list-of-8-numbers", api(IMG + "result = len(p(img, boxes=[10, 10, 50, 90, 60, 10, 50, 90]))"),
         refused("boxes")),
    Case("api-nx3-boxes", api(IMG + "result = len(p(img, boxes=[[10, 10, 50], [60, 10, 50], [5, 5, 40], [1, 2, 3]]))"),
         refused("boxes")),
    Case("api-box-scores-not-matching", api(IMG + "result = len(p(img, boxes=[[10, 10, 50, 90], [60, 10, 50, 90]], "
                                                  "box_scores=[0.9, 0.8, 0.7]))"), refused("box_scores")),
    Case("api-box-score-1.5", api(IMG + "result = len(p(img, boxes=[[10, 10, 50, 90, 1.5]]))"), refused("score")),
    Case("api-box-zero-width", api(IMG + "result = len(p(img, boxes=[[10, 10, 0, 90]]))"), refused("width")),
    Case("api-nan-pixels", api(IMG + "f = img.astype(np.float32) / 255; f[5:10, 5:10] = np.nan\n"
                                     "result = len(p(f))"), refused("non-finite")),
    Case("api-wrong-image-shape", api(IMG + "result = len(p(np.zeros((120, 160, 2), np.uint8)))"), refused("image")),
    Case("api-image-as-nested-list", api(IMG + "result = [round(float(v)) for v in p(img.tolist())[0].box]"),
         either(refused("image"), works(lambda r: api_box(r, [0, 0, 160, 120])))),
    Case("api-image-is-a-dict", api(IMG + "result = len(p({'image': img}))"), refused("image")),
    Case("api-missing-model-path", api("p = Predictor('nope/model.pt')\nresult = 0"), refused("nope/model.pt")),
    Case("api-missing-image-file", api(IMG + "result = len(p(D + '/nope.jpg'))"), refused("nope.jpg")),
    Case("api-predict-many-bad-item", api(IMG + "result = [len(x) for x in p.predict_many([(img, None, None), "
                                                "(D + '/corrupt.jpg', None, None)])]"), refused("corrupt.jpg")),
    Case("api-non-utf8-path", api(IMG + "import os\nresult = len(p(os.fsdecode(os.fsencode(D) + b'/caf\\xe9.jpg')))"),
         works(lambda r: None if api_result(r) == 1 else f"result {api_result(r)}")),
    Case("api-exif-orientation-6", api(IMG + "result = [float(v) for v in p(D + '/exif6.jpg')[0].box]"),
         works(lambda r: api_box(r, [0, 0, 120, 160]))),
    Case("api-normalised-boxes-warned", api(IMG + "result = len(p(img, boxes=[[0.2, 0.1, 0.5, 0.8]]))"),
         works(lambda r: None if re.search(r"UserWarning: .*normalised", r.err) else "no warning")),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case's stderr/stdout tails")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--jobs", type=int, default=4, help="cases at a time (default 4)")
    ap.add_argument("--no-fork", action="store_true", help="a fresh interpreter per case (slower: imports)")
    args = ap.parse_args()
    global SERVER
    cases = [c for c in CASES if not args.only or args.only in c.name]
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


if __name__ == "__main__":
    sys.exit(main())
