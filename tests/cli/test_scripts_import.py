"""Every script of bench/ and tools/ imports (its `main` is not run): a name the package no longer has fails here,
not months later in the one run that needs the script. A third-party package a script needs and this install
lacks is a skip, not a failure. The lab's scripts (lab/) have the same check in their own tier (lab/tests)."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for folder in ("bench", "bench/lab", "tools") for p in (REPO / folder).glob("*.py"))


def import_script(path: Path, monkeypatch, siblings: set[str]) -> None:
    """Run `path` as `python path` would up to its `main`, and check it says what it does. `siblings`: the stems
    of scripts it may import beside it (a missing one of those fails; any other missing package skips)."""
    name = "script_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)   # dataclasses look their module up by name
    monkeypatch.setattr(sys, "path", [str(path.parent), *sys.path])   # as `python bench/x.py` runs it; undone after
    monkeypatch.setattr(sys, "argv", [str(path)])
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("posecal") and e.name.split(".")[0] not in siblings:
            pytest.skip(f"{path.name} needs {e.name}, not installed here")
        raise
    assert module.__doc__, f"{path.name}: its first docstring line says what it does and how to run it"


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.relative_to(REPO).as_posix() for p in SCRIPTS])
def test_script_imports(path, monkeypatch):
    import_script(path, monkeypatch, {p.stem for p in SCRIPTS})
