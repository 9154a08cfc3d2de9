"""Which posecal and which weights a run's results came from: the part of a resumable run's fingerprint that its
settings cannot say. A setting names a model ("accurate", a path), not its bytes: a model file replaced between a
run and its resume, or a posecal upgraded in between, would otherwise merge the results of two models into one
file. Every resumable run (predict, track and the records of eval and audit, one process or Ray) puts this in its
fingerprint, so such a resume is refused in one line (posecal/parallel/parts.py, PartStore)."""
from __future__ import annotations

from pathlib import Path

from posecal._version import __version__
from posecal.detect.nanodet import NANODET_FILE
from posecal.detect.ssd import SHIPPED_DETECTOR
from posecal.detect.verifier import SHIPPED_VERIFIER
from posecal.io import file_digest
from posecal.models.shipped import SHIPPED_GRAPHS, WEIGHTS_DIR, graph_model, model_file, shipped_name

_digests: dict[tuple, str] = {}   # (path, size, mtime) -> digest: a file is read once per process


def weights_digest(path) -> str:
    """The first 16 hex digits of a file's sha256 (posecal.io.file_digest), read once per process while its size
    and time stay."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_digest(path)[:16]
    return _digests[key]


def weight_files(spec) -> list[Path]:
    """The files a model argument may open, present here: a shipped name's .pt and every graph of its model (int8
    or float, with or without the flip test, their weights files), which carry its calibration and reported-pose
    map; a path, the file and an ONNX file's external weights beside it."""
    name = shipped_name(spec)
    if name is None:
        path = Path(spec)
        return [p for p in (path, path.with_name(path.name + ".data")) if p.is_file()]
    files = [model_file(name)]
    if graph_model(name) in SHIPPED_GRAPHS:
        files += sorted(WEIGHTS_DIR.glob(f"posecal_{graph_model(name)}.*onnx*"))
    return [p for p in files if p.is_file()]


# the shipped detectors by name (detect/detector.py SHIPPED_DETECTORS): the files each opens
NAMED_DETECTORS = {"ssd": (SHIPPED_DETECTOR,), "nanodet": (NANODET_FILE,), "ssd+nanodet": (SHIPPED_DETECTOR, NANODET_FILE)}


def _component(spec, shipped: Path) -> str | None:
    """A detector's or verifier's setting as the digest of the file it opens ("default"/None: the shipped file; a
    shipped detector's name: its files, "+"-joined); None where it opens no file ("none", a path not here)."""
    if isinstance(spec, str) and spec.lower() == "none":
        return None
    if isinstance(spec, str) and spec in NAMED_DETECTORS:
        return "+".join(weights_digest(p) for p in NAMED_DETECTORS[spec])
    path = shipped if spec in (None, "default") else Path(str(spec))
    return weights_digest(path) if path.is_file() else None


def run_identity(model, verifier="default", detector=None) -> dict:
    """posecal's version and the digests of the model's, the verifier's and the detector's files."""
    return {"posecal": __version__,
            "model": {p.name: weights_digest(p) for p in weight_files(model)},
            "verifier": _component(verifier, SHIPPED_VERIFIER),
            "detector": _component(detector, SHIPPED_DETECTOR)}
