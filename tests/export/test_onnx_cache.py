"""The ONNX cache (posecal/export/cache.py): one export per model file, reused, rebuilt when the model changes,
never a half-written entry, one export when two processes start together, and a fallback when the folder is
not writable."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.export import cache
from posecal.export.cache import cache_dir, cached_onnx, entry_name
from posecal.inference.predictor import Predictor
from posecal.models.checkpoint import save_model
from posecal.models.config import ModelConfig
from posecal.models.estimator import build_estimator

CFG = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False, quality_heads=True, head_hidden=16)


def write_model(path, seed: int):
    torch.manual_seed(seed)
    save_model(build_estimator(CFG.head_widths, imagenet=False, quality_heads=True, head_hidden=16), CFG, path)
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory, session_tiny_model, tiny_onnx):
    """A tiny model file and its real ONNX export (no flip): write_tiny_model's bytes, so the export is the
    session's (tiny_onnx: one per test run, not one more here; dynamo export takes 10-30 s); the tests hand these
    bytes to the cache through a counting stand-in."""
    model = write_model(tmp_path_factory.mktemp("model") / "m.pt", seed=0)
    assert cache.file_digest(model) == cache.file_digest(session_tiny_model)   # the same model: its export
    return model, tiny_onnx(False)


class CountingExport:
    def __init__(self, data: bytes):
        self.data, self.calls = data, []

    def __call__(self, path, flip):
        self.calls.append((cache.file_digest(path), flip))
        return self.data


def crops(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, 3, 64, 48)).astype(np.float32)


@pytest.mark.slow
def test_one_export_reused_and_rebuilt_when_the_model_changes(tmp_path, folder, model_and_onnx):
    _, data = model_and_onnx
    model = write_model(tmp_path / "m.pt", seed=0)
    export = CountingExport(data)
    quiet = dict(threads=1, export=export, log=lambda m: None)
    first = cached_onnx(model, flip=False, **quiet)
    again = cached_onnx(model, flip=False, **quiet)
    assert len(export.calls) == 1
    assert [p.name for p in folder.glob("*.onnx")] == [entry_name(model, False)]
    np.testing.assert_array_equal(first.run(crops())[0], again.run(crops())[0])
    cached_onnx(model, flip=True, **quiet)   # the flip test is built into the graph: an entry of its own
    assert export.calls[-1][1] is True and len(export.calls) == 2

    write_model(model, seed=1)   # the same file name, other weights
    cached_onnx(model, flip=False, **quiet)
    assert len(export.calls) == 3 and export.calls[2][0] != export.calls[0][0]
    assert len(list(folder.glob("*.onnx"))) == 3 and (folder / entry_name(model, False)).is_file()


@pytest.mark.slow
def test_predictor_onnx_backend_uses_the_cache_and_matches_torch(folder, model_and_onnx, monkeypatch):
    model, data = model_and_onnx
    export = CountingExport(data)
    monkeypatch.setattr(cache, "export_model_bytes", export)
    image = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    box = [[5, 5, 40, 60]]
    onnx = Predictor(model, backend="onnx", flip=False, detector=None, threads=1)(image, box)[0]
    Predictor(model, backend="onnx", flip=False, detector=None, threads=1)
    assert len(export.calls) == 1 and (folder / entry_name(model, False)).is_file()
    ref = Predictor(model, backend="torch", flip=False, detector=None, threads=1)(image, box)[0]
    np.testing.assert_allclose(onnx.keypoints, ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(onnx.keypoint_quality, ref.keypoint_quality, atol=1e-4)


def test_an_export_says_why_the_first_run_waits_in_one_stderr_line_off_a_terminal_too(folder, model_and_onnx,
                                                                                      capsys):
    """Not on a terminal (a log file, a pipe: capsys here), the first use of a model still says in one line that
    it is exporting, so that a log tells why that run waited; a cached model says nothing."""
    model, data = model_and_onnx
    assert not sys.stderr.isatty()
    cached_onnx(model, flip=False, threads=1, export=CountingExport(data))
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"posecal: exporting {model} to ONNX once") and entry_name(model, False) in err
    cached_onnx(model, flip=False, threads=1, export=CountingExport(data))
    assert capsys.readouterr() == ("", "")


def test_interrupted_write_leaves_no_entry_and_a_damaged_entry_is_rebuilt(folder, model_and_onnx, monkeypatch):
    model, data = model_and_onnx
    entry = folder / entry_name(model, False)
    quiet = dict(threads=1, log=lambda m: None)

    def half_then_interrupt(f, data):
        f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cache, "_write_synced", half_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            cached_onnx(model, flip=False, export=CountingExport(data), **quiet)
    assert not entry.exists()
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []   # no temp file left

    good = cached_onnx(model, flip=False, export=CountingExport(data), **quiet)
    entry.write_bytes(entry.read_bytes()[:1000])   # as if the disk lost the rest
    export = CountingExport(data)
    rebuilt = cached_onnx(model, flip=False, export=export, **quiet)
    assert len(export.calls) == 1
    np.testing.assert_array_equal(rebuilt.run(crops())[0], good.run(crops())[0])


@pytest.mark.slow
def test_two_processes_starting_together_export_once(tmp_path, folder, model_and_onnx):
    model, data = model_and_onnx
    (tmp_path / "m.onnx").write_bytes(data)
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from posecal.export.cache import cached_onnx

        def slow_export(path, flip):   # as long as a real export takes, compressed: the other process waits
            print("EXPORTING", flush=True)
            time.sleep(2)
            return Path({str(tmp_path / "m.onnx")!r}).read_bytes()

        m = cached_onnx({str(model)!r}, flip=False, threads=1, export=slow_export, log=lambda msg: None)
        print("OK", m.config.input_wh)
    """)
    env = {**os.environ, cache.CACHE_ENV: str(folder)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    joined = "".join(o[0] for o in outs)
    assert joined.count("EXPORTING") == 1 and joined.count("OK") == 2
    assert len(list(folder.glob("*.onnx"))) == 1


def test_unwritable_cache_folder_exports_in_memory_with_one_line(tmp_path, monkeypatch, model_and_onnx):
    model, data = model_and_onnx
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    lines = []
    session = cached_onnx(model, flip=False, threads=1, export=CountingExport(data), log=lines.append)
    assert session.run(crops())[0].shape[0] == 2
    assert len(lines) == 1 and "cannot use the ONNX cache folder" in lines[0] and cache.CACHE_ENV in lines[0]


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "posecal" / "onnx"
