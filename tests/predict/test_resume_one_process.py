"""`posecal predict DIR --out X.json` in one process keeps a part per finished input, as Ray's workers do: Ctrl-C
keeps them and writes no half X.json, the same command again goes on from them (and says so), and the results
are those of one uninterrupted run (the parts kept, finished, for the next run). A part belongs to its input (its path, size and time), not to its place: an
input added or replaced in between is the only one posed again; another setting is refused in one line. Two runs
on one --out: the second is refused at its start in one line, the first ends whole."""
import json
import os
import subprocess
import sys

import cv2
import pytest

from posecal.parallel.parts import FINISHED, part_folder, part_path, unit_key
from posecal.predict import job

from conftest import ROOT, interrupt_second_estimate, make_coco, run_cli, write_walking_video


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
    assert rc == 0 and finished(whole)
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        interrupt_second_estimate(m)
        rc, _, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 130 and not out.exists()          # no half results file
    assert err.strip().splitlines()[-1] == (
        f"posecal: interrupted: the results of 1 of 5 input(s) are kept in {part_folder(out)}; the same command "
        f"again goes on from there ({out} is written when every input is done)")
    first = part_path(part_folder(out), unit_key(inputs / "img0.jpg", "img0.jpg"))
    assert sorted(part_folder(out).glob("part_*.json")) == [first]
    rc, stdout, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 0 and f"resuming: 1 of 5 unit(s) already done in {part_folder(out)}" in err
    assert "7 image(s)/frame(s)" in stdout
    assert json.loads(out.read_text()) == json.loads(whole.read_text())
    assert finished(out)


def finished(out) -> bool:
    """Is `out` merged, its parts kept for the next run (parts.PartStore.finish)?"""
    return (part_folder(out) / FINISHED).is_file()


def stop_before_the_merge(monkeypatch) -> None:
    """Ctrl-C as the results file is written: a run stopped with every input posed and its parts kept."""
    def stopped(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(job, "_write_results", stopped)


def posed(monkeypatch) -> list[str]:
    """The names of the inputs a run poses, recorded as it is handed them."""
    from posecal.predict.batches import PoseBatches

    real, names = PoseBatches.__call__, []

    def recorded(self, batch):
        names.extend(str(name) for name in batch["name"])
        return real(self, batch)
    monkeypatch.setattr(PoseBatches, "__call__", recorded)
    return names


def another_picture(source, target) -> None:
    """`target` written as `source` mirrored: another picture, of another size on disk."""
    cv2.imwrite(str(target), cv2.imread(str(source))[:, ::-1])


def test_an_input_added_after_a_stop_is_the_only_one_posed(tiny_model, inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        stop_before_the_merge(m)
        rc, _, _ = predict(capsys, tiny_model, inputs, out)
    assert rc == 130 and not out.exists() and len(list(part_folder(out).glob("part_*.json"))) == 5
    another_picture(inputs / "img1.jpg", inputs / "img1b.jpg")   # one photo added, among the others
    with monkeypatch.context() as m:
        names = posed(m)
        rc, stdout, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 0 and names == ["img1b.jpg"]
    assert f"resuming: 5 of 6 unit(s) already done in {part_folder(out)}" in err and "8 image(s)/frame(s)" in stdout
    whole = tmp_path / "whole.json"
    assert predict(capsys, tiny_model, inputs, whole)[0] == 0
    assert json.loads(out.read_text()) == json.loads(whole.read_text())   # image ids as one uninterrupted run's
    assert finished(out)


def test_a_replaced_input_is_posed_again_and_a_removed_one_left_out(tiny_model, inputs, tmp_path, capsys,
                                                                   monkeypatch):
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        stop_before_the_merge(m)
        predict(capsys, tiny_model, inputs, out)
    another_picture(inputs / "img3.jpg", inputs / "img2.jpg")   # img2.jpg rewritten with another picture
    (inputs / "img0.jpg").unlink()
    with monkeypatch.context() as m:
        names = posed(m)
        rc, _, err = predict(capsys, tiny_model, inputs, out)
    assert rc == 0 and names == ["img2.jpg"]
    assert f"resuming: 3 of 4 unit(s) already done in {part_folder(out)}" in err
    whole = tmp_path / "whole.json"
    assert predict(capsys, tiny_model, inputs, whole)[0] == 0
    assert json.loads(out.read_text()) == json.loads(whole.read_text())


def test_another_setting_is_refused_in_one_line(tiny_model, inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        interrupt_second_estimate(m)
        predict(capsys, tiny_model, inputs, out)
    rc, _, err = predict(capsys, tiny_model, inputs, out, "--min-pose-quality", "0.5")
    assert rc == 2 and err.strip().splitlines()[-1] == (
        f"posecal: error: {part_folder(out)}: holds the parts of another run (other settings); remove that folder "
        f"to start afresh, or give another --out")
    assert not out.exists()


def refusal(out) -> str:
    return (f"posecal: error: {out}: another posecal run is writing it now (its parts are in {part_folder(out)}); "
            f"wait for it or give another --out")


def test_a_second_run_on_one_out_is_refused_at_its_start_and_the_first_ends_whole(tiny_model, inputs, tmp_path,
                                                                                 capsys, monkeypatch):
    """The second run starts while the first is posing (here: at the first's second estimate, one input done):
    it is refused in one line before it opens a model or poses anything, and the first goes on to the whole
    results file of an uninterrupted run."""
    whole = tmp_path / "whole.json"
    assert predict(capsys, tiny_model, inputs, whole)[0] == 0
    out = tmp_path / "out.json"
    from posecal.inference.predictor import Predictor
    from posecal.predict import batches

    real_estimate, real_open, second, opened = Predictor.estimate, batches.open_predictor, [], []

    def second_run_meanwhile(self, items, **kw):
        if len(second) == 0 and part_folder(out).is_dir() and list(part_folder(out).glob("part_*.json")):
            capsys.readouterr()
            second.append(predict(capsys, tiny_model, inputs, out))   # (rc, stdout, stderr)
        return real_estimate(self, items, **kw)

    monkeypatch.setattr(Predictor, "estimate", second_run_meanwhile)
    monkeypatch.setattr(batches, "open_predictor", lambda *a: opened.append(1) or real_open(*a))
    rc, _, _ = predict(capsys, tiny_model, inputs, out)
    assert len(second) == 1 and second[0][0] == 2 and second[0][2].strip().splitlines() == [refusal(out)]
    assert rc == 0 and opened == [1]   # the second opened no model
    assert json.loads(out.read_text()) == json.loads(whole.read_text()) and finished(out)


def test_a_run_held_by_another_process_is_refused_and_a_killed_ones_lock_blocks_nothing(tiny_model, inputs,
                                                                                      tmp_path, capsys):
    """Another process holds the lock of --out's parts (as a run does, parts.PartStore): this run is refused in one
    line, with no part written; once that process is killed, its lock file left behind, the same command runs to
    the whole results."""
    out = tmp_path / "out.json"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, sys; from posecal.records import lock_file; "
        f"os.makedirs({str(part_folder(out))!r}); "
        f"lock_file(os.open({str(part_folder(out) / 'lock')!r}, os.O_RDWR | os.O_CREAT)); "
        "print('held', flush=True); sys.stdin.read()")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, _, err = predict(capsys, tiny_model, inputs, out)
        assert rc == 2 and err.strip().splitlines() == [refusal(out)]
        assert not list(part_folder(out).glob("part_*.json"))
    finally:
        holder.kill()
        holder.wait()
    assert (part_folder(out) / "lock").is_file()   # what a killed run leaves
    rc, _, _ = predict(capsys, tiny_model, inputs, out)
    assert rc == 0 and json.loads(out.read_text()) and finished(out)
