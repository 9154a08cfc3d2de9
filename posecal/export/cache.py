"""The ONNX form of a posecal model file, exported once and kept in the user's cache folder.

Why: onnxruntime runs posecal's networks faster than PyTorch on a CPU, but an export takes tens of seconds, which
dominated every short run. An entry is named by the model file's SHA-256, the flip setting and the versions that
shape the graph (graph_code_digest), so a stale entry is never used.

An entry is written to a temp file, fsynced and renamed into place under a file lock, so two processes export once.
An unreadable entry is exported again; a cache folder that cannot be written means an in-memory export, said in
one line.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock, Timeout

from posecal._version import __version__
from posecal.errors import PosecalInputError
from posecal.io import file_digest, log_line, write_atomic
from posecal.models.checkpoint import load_model, model_file
from posecal.export.onnx import OnnxEstimator, onnx_bytes

# The code that decides what an export holds for a given model file: the network's modules, the exporter and what
# runs inside the graph (MoveNet's decode, the flip test's flip-back, the keypoints' left/right pairs).
PACKAGE = Path(__file__).resolve().parents[1]
GRAPH_CODE = (PACKAGE / "models", Path(__file__).resolve().with_name("onnx.py"), PACKAGE / "codec" / "movenet.py",
              PACKAGE / "codec" / "heatmap_torch.py", PACKAGE / "skeleton.py")
CACHE_ENV = "POSECAL_CACHE_DIR"
LOCK_TIMEOUT_S = 600   # another process exporting the same model: wait for it rather than export twice


def cache_dir() -> Path:
    """$POSECAL_CACHE_DIR, else the platform's user cache folder (XDG_CACHE_HOME or ~/.cache on Linux,
    ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows), + posecal/onnx."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "posecal" / "onnx"


@functools.lru_cache(maxsize=1)
def graph_code_digest() -> str:
    """SHA-256 (16 hex digits) of posecal's version and of the source of the code that builds an export
    (GRAPH_CODE): an updated posecal whose network or exporter changed never runs a graph an older one cached,
    with no version number to remember to bump."""
    h = hashlib.sha256(__version__.encode())
    for root in GRAPH_CODE:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(str(path.relative_to(root.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def entry_name(model_path: Path, flip: bool, stage: str | None = None) -> str:
    """The cache file's name: readable stem, then what decides the graph's content (the model file's bytes,
    the flip test or the stage of a staged crop, torch's version, and posecal's graph code)."""
    torch_version = torch.__version__.split("+")[0]
    kind = stage or ("flip" if flip else "noflip")
    return (f"{model_path.stem}-{file_digest(model_path)[:24]}-{kind}"
            f"-torch{torch_version}-g{graph_code_digest()}.onnx")


def export_model_bytes(model_path: Path, flip: bool, stage: str | None = None) -> bytes:
    model, cfg, meta = load_model(model_path)
    return onnx_bytes(model, cfg, flip, meta.get("calibration"), reported=meta.get("reported_quality"), stage=stage)


def cached_onnx(model_spec, flip: bool, threads: int = 2, device: str = "cpu", log: Callable[[str], None] | None = None,
                export: Callable[[Path, bool], bytes] | None = None, stage: str | None = None) -> OnnxEstimator:
    """An onnxruntime session of a posecal model file (a shipped model's name, a path, or None for the
    default), from the cache when it holds this file's export, else exported now (`export(path, flip)`,
    export_model_bytes by default) and cached. stage: a staged crop's "look" or "refine" graph."""
    log = log or log_line   # a caller's log, else one line on stderr (a terminal's or a log file's)
    if export is None:   # looked up now, so that a stand-in for export_model_bytes (tests) is the one called
        export = (lambda p, f: export_model_bytes(p, f)) if stage is None else \
            (lambda p, f: export_model_bytes(p, f, stage))  # noqa: E731
    path = model_file(model_spec)
    source = str(model_spec or "default model")
    if not path.is_file():
        load_model(model_spec)   # its own one-line message: not shipped, not found, ...
        raise PosecalInputError(f"{path}: model file not found")
    folder = cache_dir()
    entry = folder / entry_name(path, flip, stage)
    session = _open(entry, threads, device, source)
    if session is not None:
        return session
    load_model(model_spec)   # a file that is no model is its own one line, before any "exporting" is said
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock", timeout=LOCK_TIMEOUT_S):
            session = _open(entry, threads, device, source)   # exported by another process while we waited
            if session is not None:
                return session
            # said wherever stderr goes, so that a log also tells why a first run waited
            what = f"{source}'s {stage} graph" if stage else source
            log(f"exporting {what} to ONNX once (about 20-30 s); later runs start from {entry}")
            try:
                data = export(path, flip)
            except PosecalInputError as e:   # the model's own problem (not a model file...): not the folder's
                raise _ModelProblem(str(e)) from None
            write_atomic(entry, lambda f: _write_synced(f, data))
    except _ModelProblem as e:
        raise PosecalInputError(str(e)) from None
    except (OSError, Timeout, PosecalInputError) as e:
        log(f"cannot use the ONNX cache folder {folder} ({e}); exporting in memory for this run "
            f"(set {CACHE_ENV} to a writable folder)")
        return OnnxEstimator(export(path, flip), threads=threads, source=source, device=device)
    return OnnxEstimator(entry, threads=threads, source=source, device=device)


def cached_onnx_bytes(model_spec, flip: bool, log: Callable[[str], None] | None = None) -> bytes:
    """The bytes of a model file's ONNX export, from the cache (exported and cached now when missing): `posecal
    export` writes them, or quantises them for --int8, without exporting a model it has exported before."""
    made: dict[str, bytes] = {}

    def export(path: Path, flip_test: bool) -> bytes:
        made["data"] = export_model_bytes(path, flip_test)
        return made["data"]

    cached_onnx(model_spec, flip, threads=1, log=log, export=export)
    if "data" in made:
        return made["data"]
    try:
        return (cache_dir() / entry_name(model_file(model_spec), flip)).read_bytes()
    except OSError:   # removed in between by another process: export it here
        return export_model_bytes(model_file(model_spec), flip)


class _ModelProblem(Exception):
    """A model file that cannot be exported: said as it is, not taken for a cache folder that cannot be used."""


def _open(entry: Path, threads: int, device: str, source: str) -> OnnxEstimator | None:
    """The cached session, or None when there is no entry or it is unreadable (then removed, to be rebuilt)."""
    if not entry.is_file():
        return None
    try:
        return OnnxEstimator(entry, threads=threads, source=source, device=device)
    except PosecalInputError:
        try:
            entry.unlink()
        except OSError:
            pass
        return None


def _write_synced(f, data: bytes) -> None:
    """Bytes on disk before the rename makes them an entry: a crash cannot leave a named, empty file."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
