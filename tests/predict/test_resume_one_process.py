"""`posecal predict DIR --out X.json` in one process keeps a part per finished input, as Ray's workers do: Ctrl-C
keeps them and writes no half X.json, the same command again goes on from them (and says so), and the results
are those of one uninterrupted run; a replaced input or another setting is refused in one line."""
import json
import os

import pytest

from posecal.parallel.parts import part_folder

from conftest import interrupt_second_estimate, make_coco, run_cli, write_walking_video


@pytest.fixture
def inputs(tmp_path):
    _, images = make_coco(tmp_path / "d", n_images=4)
    write_walking_video(images / "walk.avi", frames=3)
    return images


def predict(capsys, model, images, out, *extra):
    return run_cli(capsys, "predict", images, "--model", model, "--detector", "none", "--out", out,
                   "--batch-size", "1", "--threads", "1", "--no-progress", *extra)


def test_an_interrupted_run_resumes_to_the_uninterrupted_results(tiny_model, inputs, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole.json"
    rc, _, _ = predict(capsys, tiny_model, inputs, whole)
    assert rc == 0 and not part_folder(whole).exists()
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        interrupt_second_estimate(m)
        rc, _, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 130 and not out.exists()          # no half results file
    assert err.strip().splitlines()[-1] == (
        f"posecal: interrupted: the results of 1 of 5 input(s) are kept in {part_folder(out)}; the same command "
        f"again goes on from there ({out} is written when every input is done)")
    assert sorted(p.name for p in part_folder(out).glob("part_*.json")) == ["part_000000.json"]
    rc, stdout, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 0 and f"resuming: 1 of 5 unit(s) already done in {part_folder(out)}" in err
    assert "7 image(s)/frame(s)" in stdout
    assert json.loads(out.read_text()) == json.loads(whole.read_text())
    assert not part_folder(out).exists()


def test_a_replaced_input_or_another_setting_is_refused_in_one_line(tiny_model, inputs, tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        interrupt_second_estimate(m)
        predict(capsys, tiny_model, inputs, out)
    first = sorted(inputs.glob("*.jpg"))[0]
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))   # replaced (a new time)
    rc, _, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 2 and err.strip().splitlines()[-1] == (
        f"posecal: error: {part_folder(out)}: holds the parts of another run (other inputs); remove that folder "
        f"to start afresh, or give another --out")
    assert not out.exists()
