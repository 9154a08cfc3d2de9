"""The layers contract in pyproject.toml (checked by `lint-imports` in .ci/run) really catches a wrong-way import.

A scratch copy of the package gets one deliberate import from a lower stage into a higher one; the same
contract must then fail and name it, while the untouched copy passes. The tree itself is never modified."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
pytestmark = pytest.mark.skipif(not Path(LINT).is_file(), reason="import-linter not installed (pip install -e .[train,dev])")


def _scratch_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "posecal", tmp_path / "posecal", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(where)}   # the scratch copy shadows the installed package
    return subprocess.run([LINT, "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=120)


def test_contract_holds_and_fails_on_a_wrong_way_import(tmp_path):
    where = _scratch_copy(tmp_path)
    clean = _lint(where)
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert "2 kept, 0 broken" in clean.stdout
    # data is below models: a crop pipeline that imports a network breaks "data knows no network"
    (where / "posecal" / "data" / "wrong_way.py").write_text("from posecal.models.estimator import TopDownEstimator\n")
    broken = _lint(where)
    assert broken.returncode != 0
    assert "posecal.data is not allowed to import posecal.models" in broken.stdout
    assert "posecal.data.wrong_way -> posecal.models.estimator" in broken.stdout
    assert not (ROOT / "posecal" / "data" / "wrong_way.py").exists()


def test_sibling_cycle_is_caught(tmp_path):
    where = _scratch_copy(tmp_path)
    # the detectors share detect/runtime.py; runtime importing a detector back would close a ring
    runtime = where / "posecal" / "detect" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\nfrom posecal.detect.yolox import YoloxPersonDetector  # noqa\n")
    broken = _lint(where)
    assert broken.returncode != 0
    assert "No cycles are allowed in posecal.detect" in broken.stdout


def test_contracts_hold_without_exemptions():
    """No contract keeps an ignore list: a layer that needs an exemption to hold does not hold."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) == 2
    assert all(not c.get("ignore_imports") for c in contracts), [c["name"] for c in contracts if c.get("ignore_imports")]
