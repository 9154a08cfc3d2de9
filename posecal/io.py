"""Atomic output files: written to a temp file in the same folder, then renamed over the target,
so a crash mid-write never leaves a half file and never destroys the previous version. And a file's digest, the one
way posecal names a file by its bytes (the ONNX cache's keys, a resumed run's weights, the evidence model)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from posecal.errors import PosecalInputError


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
