"""`posecal eval` and `posecal audit` in one process pose through the runner (parallel/runner.py OneProcess), as
predict does: a part per picture beside the output, so Ctrl-C keeps the pictures done and writes no half output,
and the same command again poses only the rest and ends with the uninterrupted run's numbers."""
import json

import pytest

from conftest import make_coco, picture_batches, run_cli

OUTPUT = {"eval": "metrics.json", "audit": "findings.json"}


def run(capsys, command, data, out):
    ann, images = data
    first = ("--annotations", ann, "--images", images, "--out", out)
    return run_cli(capsys, command, *first, "--model", "fast", "--threads", "1", "--no-progress")


def numbers(command, out):
    found = json.loads((out / OUTPUT[command]).read_text())
    if command == "eval":
        found.pop("seconds")
    return found


@pytest.mark.parametrize("command", ["eval", "audit"])
def test_an_interrupted_run_goes_on_from_the_pictures_done(command, tmp_path, capsys, monkeypatch):
    data = make_coco(tmp_path / "data", n_images=6)
    rc, _, _ = run(capsys, command, data, tmp_path / "whole")
    assert rc == 0
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        picture_batches(m, interrupt_at=2)
        rc, _, err = run(capsys, command, data, out)
    assert rc == 130 and not (out / OUTPUT[command]).exists()
    assert f"{command} did not finish; the results of 4 of 6 input(s) are kept in {out}" in err
    assert "the same command again goes on from there" in err
    with monkeypatch.context() as m:
        calls = picture_batches(m)
        rc, _, err = run(capsys, command, data, out)
    assert rc == 0 and calls == [[4, 5]] and "resuming: 4 of 6 unit(s) already done" in err
    assert numbers(command, out) == numbers(command, tmp_path / "whole")
    assert not list(out.glob(".*.parts"))
