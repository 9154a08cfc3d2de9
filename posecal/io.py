"""What posecal writes, and how: output targets checked before any work starts (an hour of inference or training
must never end in 'cannot write'; each problem is one PosecalInputError line naming the option and the path);
files written atomically (a temp file in the same folder renamed over the target, so a crash mid-write never
leaves a half file and never destroys the previous version); what Ctrl-C does to what a job writes
(`StopRequest`: stop after the frame at hand, `finished_or_removed`); and a file's digest, the one way posecal
names a file by its bytes (the ONNX cache's keys, a resumed run's weights, the evidence model); and `log_line`,
the default way a job says a line to the user."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from posecal.errors import PosecalInputError


def log_line(msg: str) -> None:
    """Say one line to the user: `posecal: msg` on standard error, written above any progress bar that is drawn
    (tqdm.write) rather than through it. The default `log` of every job (predict, track, their Ray engines, the
    records' posing, the ONNX cache's export) and of a live source read by the API, so that a line looks the same
    whichever part of posecal says it, and standard output stays for what a command prints as its result."""
    tqdm.write(f"posecal: {msg}", file=sys.stderr)


def progress_shown(asked: bool, stream=None) -> bool:
    """Whether a progress bar is drawn: asked for, and standard error (or `stream`) a terminal. Redirected to a
    file or a pipe, a bar is one line rewritten with carriage returns, kilobytes of noise in a log."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(asked) and callable(isatty) and bool(isatty())


def file_digest(path) -> str:
    """SHA-256 of a file's bytes, read in blocks (about 30 ms for a 10 MB model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Call write(file) on a temp file next to `path`, then rename it to `path`. A write error (disk full,
    folder gone) is one line naming the path; any exit, Ctrl-C included, removes the temp file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        publish(tmp, path)
    except OSError as e:
        raise PosecalInputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:  # runs on BaseException too (KeyboardInterrupt, SystemExit)
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.remove(tmp)


def publish(tmp, path) -> None:
    """Put a finished temp file (made by mkstemp, mode 0600) in place as `path` with the permissions any new
    file of this process gets (0666 less the umask): every output posecal writes, JSON, pictures and videos
    alike. The one rule for write_atomic and for writers that need a file name (OpenCV's VideoWriter)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temp files of write_atomic calls that never finished (the process was killed with -9 or
    the machine stopped mid-write: `finally` never ran). Call it only where no other process is writing;
    returns what was removed. A folder that does not exist has none."""
    if folder is None or not Path(folder).is_dir():
        return []
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(obj, path, indent: int | None = 1) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=indent), mode="w")


def write_bytes_atomic(path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


# ---- output targets checked before any work, and what Ctrl-C keeps ----

def check_output_file(path, option: str) -> Path:
    """An output file: not a folder, in a folder that exists and is writable. A missing folder is refused, not
    made: the user named a file to write in a folder they chose, and a mistyped folder (`/nonexistent_dir/x.json`)
    must not become a new tree of folders with the results hidden in it. An output folder is made
    (check_output_dir): there the folder is the output named."""
    path = Path(path)
    if path.is_dir():
        raise PosecalInputError(f"{option} {path}: is a folder; a file name is needed")
    _blocking_file(path.parent, option, path)
    if not path.parent.is_dir():
        raise PosecalInputError(f"{option} {path}: folder {path.parent} does not exist; create it first (posecal "
                                f"makes output folders, not the folder of an output file)")
    _writable_folder(path.parent, option, path)
    return path


def check_output_dir(path, option: str) -> Path:
    """An output folder: not a file, created if missing (with the folders above it), and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PosecalInputError(f"{option} {path}: is a file; a folder is needed")
    _writable_folder(path, option, path)
    return path


def _blocking_file(folder: Path, option: str, target: Path) -> None:
    """A file where `folder` or one of its parents should be is named as the cause, in one line."""
    if not folder.is_dir():
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise PosecalInputError(f"{option} {target}: {blocker} is a file, not a folder")


def _writable_folder(folder: Path, option: str, target: Path) -> None:
    """Create `folder` if missing and prove it writable; a file among its parents is named as the cause."""
    _blocking_file(folder, option, target)
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PosecalInputError(f"{option} {target}: folder {folder} cannot be created "
                                    f"({e.strerror or e})") from None
    if not can_write_in(folder):
        raise PosecalInputError(f"{option} {target}: folder {folder} is not writable")


def can_write_in(folder: Path) -> bool:
    """Create and remove a temp file there: mode bits lie (root ignores them; read-only mounts, ACLs)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".posecal-probe-")
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True


def _signature(path: Path):
    """(inode, size, mtime) of a file, None when there is none: an atomic write (a rename) changes the inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def finished_or_removed(folder, names, command: str):
    """A job that writes the files `names` into `folder` (eval: results.json, metrics.json, the plots and
    report.html) either finishes, or, on Ctrl-C, leaves no set of outputs that looks finished: when it had
    written or replaced any of them, all of them are removed (an earlier run's report.html beside this run's
    metrics.json would describe other numbers); when it had written none, the folder is left as it was. A folder
    the job created (check_output_dir) and left empty is removed too: an empty folder looks like a run that
    wrote nothing. Raises KeyboardInterrupt with the one line that says which (the CLI prints it, exit 130)."""
    folder = Path(folder)
    paths = [folder / n for n in dict.fromkeys(names)]
    before = {p: _signature(p) for p in paths}
    new = _first_missing(folder)   # the top folder this job's mkdir may create (None: the folder exists)
    try:
        yield
    except KeyboardInterrupt as e:
        # what the job kept, when it says (the runner: its finished units' parts, from which a rerun goes on)
        kept = str(e.args[0]).removeprefix("interrupted: ") if e.args else ""
        said = f"interrupted (Ctrl-C): {command} did not finish"
        if all(_signature(p) == before[p] for p in paths):
            _remove_if_new_and_empty(folder, new)
            raise KeyboardInterrupt(f"{said}; {kept}" if kept else f"{said}; nothing written to {folder}") from None
        removed = [p.name for p in paths if p.is_file()]
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        _remove_if_new_and_empty(folder, new)
        raise KeyboardInterrupt(f"{said}; removed its unfinished outputs ({', '.join(removed)}) from {folder}"
                                + (f"; {kept}" if kept else "")) from None


def _first_missing(folder: Path) -> Path | None:
    """The highest of `folder` and its parents that does not exist (what mkdir(parents=True) would create)."""
    missing = None
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing = p
    return missing


def _remove_if_new_and_empty(folder: Path, new: Path | None) -> None:
    """Remove the folders a job created for its outputs, from `folder` up to `new`, where they hold nothing (a
    folder that existed before, or one with anything in it, stays)."""
    if new is None:
        return
    for p in (folder, *folder.parents):
        try:
            p.rmdir()   # fails, and the folder is left, when anything is in it
        except OSError:
            return
        if p == new:
            return


class StopRequest:
    """Ctrl-C as a request to stop after the frame at hand: a live source is mostly ended that way, and its
    results so far must then be written whole (a KeyboardInterrupt raised anywhere could cut a JSON line in two
    or leave the overlay video unfinished). Inside `with`, the first Ctrl-C sets `requested`; a second one
    raises KeyboardInterrupt at once. Outside the main thread (no signals there) it only holds the flag."""

    def __init__(self):
        self.event = threading.Event()
        self._installed, self._previous = False, None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _handler(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc):
        if self._installed:   # a handler set outside Python reads as None: Python's own then
            signal.signal(signal.SIGINT, signal.default_int_handler if self._previous is None else self._previous)
            self._installed = False
