"""Every script of lab/ imports (its `main` is not run), checked as the product's suite checks bench/ and tools/
(tests/cli/test_scripts_import.py, whose check this reuses)."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for folder in ("lab/bench", "lab/tools") for p in (REPO / folder).glob("*.py"))
SIBLINGS = {p.stem for folder in ("bench", "tools", "lab/bench", "lab/tools") for p in (REPO / folder).glob("*.py")}


def _product_check():
    spec = importlib.util.spec_from_file_location("product_scripts_import", REPO / "tests/cli/test_scripts_import.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.import_script


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.relative_to(REPO).as_posix() for p in SCRIPTS])
def test_lab_script_imports(path, monkeypatch):
    _product_check()(path, monkeypatch, SIBLINGS)
