"""torchrun is for `posecal train` only: predict, track, eval and audit no longer share their work over torchrun's
ranks (issue 55 item 4: inference scales through Ray, `--engine ray`). Launched by torchrun with several ranks they are
refused before any work in one line, said by rank 0 alone (posecal/cli/torchrun.py)."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecal.cli.main import main
from posecal.cli.torchrun import torchrun_refusal

REPO = Path(__file__).resolve().parents[2]
RAY_LINE = ("posecal: error: posecal {} no longer shares its work over torchrun's ranks: run it once with --engine "
            "ray (a local Ray on this machine's cores, or --address for a cluster); torchrun is for posecal train")


def ranks_env(monkeypatch, rank: int, world: int = 2) -> None:
    for key, value in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": world}.items():
        monkeypatch.setenv(key, str(value))


def picture(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((64, 48, 3), 90, np.uint8))
    return path


@pytest.mark.parametrize("command", ["predict", "track"])
def test_rank0_says_one_line_pointing_to_ray_and_writes_nothing(command, tmp_path, capsys, monkeypatch):
    ranks_env(monkeypatch, 0)
    out = tmp_path / "out.json"
    assert main([command, str(picture(tmp_path)), "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [RAY_LINE.format(command)] and captured.out == ""
    assert not out.exists()


def test_other_ranks_leave_quietly_eval_points_to_ray_and_tools_are_one_process(tmp_path, capsys, monkeypatch):
    ranks_env(monkeypatch, 1)
    assert main(["predict", str(picture(tmp_path)), "--out", str(tmp_path / "o.json")]) == 0
    assert capsys.readouterr().err == ""                       # rank 1: not a word (rank 0 says it)
    ranks_env(monkeypatch, 0)
    assert main(["eval", "--annotations", "a.json", "--images", "x", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.splitlines() == [RAY_LINE.format("eval")]   # eval and audit: --engine ray
    assert not (tmp_path / "e").exists()
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "posecal export runs as one process" in capsys.readouterr().err


def test_train_and_one_rank_run_as_before():
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    assert torchrun_refusal("train", env) == (None, False)                      # DDP: training's own ranks
    assert torchrun_refusal("predict", {"RANK": "0", "WORLD_SIZE": "1"}) == (None, False)   # one rank: one process
    assert torchrun_refusal("predict", {}) == (None, False)
    assert torchrun_refusal("predict", {"RANK": "x", "WORLD_SIZE": "2"}) == (None, False)   # not torchrun's
    line, speak = torchrun_refusal("track", env | {"RANK": "1"})
    assert "--engine ray" in line and not speak


@pytest.mark.slow   # a real torchrun launch of 2 processes
def test_under_a_real_torchrun_the_refusal_is_one_line_and_no_posecal_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "posecal", "predict", str(picture(tmp_path)), "--out", str(tmp_path / "o.json")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    said = [line for line in run.stderr.splitlines() if line.startswith("posecal:")]
    assert said == [RAY_LINE.format("predict")], run.stderr[-3000:]
    assert run.returncode != 0 and "exitcode  : 2" in run.stderr      # the launch failed, as torchrun reports it
    assert str(REPO / "posecal") not in run.stderr                   # no traceback from posecal's code
    assert not (tmp_path / "o.json").exists()
