"""The one runner (posecal/parallel/runner.py) for predict, track, eval and audit: in this process (OneProcess) a run
keeps a part per unit, a Ctrl-C keeps the finished ones and the same run again does exactly the rest; through the
runner one process gives what the command's own path gives and what Ray gives (the Ray runs are slow, share the
local Ray of tests/parallel/test_ray_engine.py and skip without Ray). A part is named by its unit's key, so a unit
added or replaced between two runs is the only one done again; a run holds its parts' folder locked, so a second
run on the same output is refused at its start."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np
import pytest

from conftest import make_coco, picture_batches
from posecal.errors import PosecalInputError
from posecal.parallel.parts import LOCK, PartStore, part_folder, part_path, unit_key
from posecal.parallel.runner import OneProcess, RowJob, check_settings, fingerprint, run
from test_eval_audit_ray import same_numbers
from test_ray_engine import SETTINGS, figures, local_ray, same_results  # noqa: F401  (the one local Ray)
from test_track_ray import clips, same_tracks


class Doubles:
    """A map_batches class: each row's part is its number doubled; refuses n = 13."""

    def __init__(self, factor: int = 2, threads: int | None = None):
        self.factor, self.threads = factor, threads

    def __call__(self, batch):
        if 13 in batch["n"]:
            raise PosecalInputError("13: refused")
        return dict(batch) | {"out": np.array([json.dumps(int(n) * self.factor) for n in batch["n"]], dtype=object)}


def units(tmp_path, n: int) -> list:
    for i in range(n):
        (tmp_path / f"u{i}").write_text(str(i))
    return [(tmp_path / f"u{i}", f"u{i}") for i in range(n)]


def test_one_process_keeps_a_part_per_unit_and_a_ctrl_c_resumes_exactly(tmp_path):
    done, told = units(tmp_path, 5), []
    job = RowJob(Doubles, {"factor": 3}, "out", batch_rows=2)
    print_run = fingerprint(job.settings, {"posecal": "x"})

    def stopped_at_the_third(part):
        told.append(part)
        if len(told) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"interrupted: the results of 4 of 5 input\(s\) are kept in .*the same command again goes on"):
        run(tmp_path / "out.json", done, job, OneProcess(), print_run, print, stopped_at_the_third,
            lambda i: {"n": i + 1}, progress=False)
    lines, seen = [], []
    with run(tmp_path / "out.json", done, job, OneProcess(), print_run, lines.append, seen.append,
             lambda i: {"n": i + 1}, progress=False) as store:
        assert list(store.parts()) == [3, 6, 9, 12, 15]
    assert lines == [f"resuming: 4 of 5 unit(s) already done in {part_folder(tmp_path / 'out.json')}"]
    assert seen == [15]   # only the unit without a part, done once


def test_a_refused_unit_is_one_line_and_keeps_the_units_before_it(tmp_path):
    done = units(tmp_path, 4)
    job = RowJob(Doubles, {}, "out")
    with pytest.raises(PosecalInputError, match="^13: refused$"):
        run(tmp_path / "out.json", done, job, OneProcess(), {"run": 1}, print, more=lambda i: {"n": 11 + i},
            progress=False)
    folder = part_folder(tmp_path / "out.json")
    assert folder.is_dir()
    kept = [part_path(folder, unit_key(path, name, {"n": 11 + i})).name for i, (path, name) in enumerate(done[:2])]
    assert sorted(p.name for p in folder.glob("part_*")) == sorted(kept)


def test_the_fingerprint_leaves_the_inputs_and_threads_out_and_a_units_key_names_its_size_and_time(tmp_path):
    first = fingerprint({"model": "fast", "threads": 4, "policy": Policy()}, {"posecal": "1"}, renders=["a.mp4"])
    assert first == {"settings": {"model": "fast", "policy": {"quality": 0.5}}, "identity": {"posecal": "1"},
                     "renders": ["a.mp4"]}
    path = units(tmp_path, 1)[0][0]
    key = unit_key(path, "u0")
    assert key == unit_key(tmp_path / "." / "u0", "u0") and len(key) == 16   # the absolute path: one key
    assert unit_key(path, "other name") != key and unit_key(path, "u0", {"render": "a.mp4"}) != key
    stat = path.stat()
    path.write_text("9")   # the same size, rewritten: its time tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert unit_key(path, "u0") != key
    assert unit_key(tmp_path / "gone", "gone") == unit_key(tmp_path / "gone", "gone")   # one not there: a key too


def test_a_unit_added_or_replaced_after_a_stop_is_the_only_one_done_again(tmp_path):
    """A run stopped after its units were done but before its merge (a killed driver: its lock file is left): an
    input added, and one replaced, the same run again does exactly those two and merges every unit in input
    order; a removed input's part is left out of the merge."""
    done, job = units(tmp_path, 4), RowJob(Doubles, {"factor": 3}, "out")
    out, seen = tmp_path / "out.json", []
    run(out, done, job, OneProcess(), fingerprint(job.settings, {}), print, more=lambda i: {"n": i + 1},
        progress=False)._unlock()   # the lock let go as a killed process's is: its parts and lock file stay
    assert (part_folder(out) / LOCK).is_file() and len(list(part_folder(out).glob("part_*.json"))) == 4
    (tmp_path / "u4").write_text("4")
    added = done + [(tmp_path / "u4", "u4")]
    (tmp_path / "u2").write_text("replaced, longer")
    lines = []
    with run(out, added[1:], job, OneProcess(), fingerprint(job.settings, {}), lines.append, seen.append,
             lambda i: {"n": int(added[1 + i][1][1:]) + 1}, progress=False) as store:   # u0 removed
        assert list(store.parts()) == [6, 9, 12, 15]
        store.remove()
    assert seen == [9, 15]   # u2 (replaced) and u4 (added), nothing else
    assert lines == [f"resuming: 2 of 4 unit(s) already done in {part_folder(out)}"]
    assert not part_folder(out).exists()


def test_a_second_run_on_the_same_output_is_refused_at_its_start_and_the_first_ends_whole(tmp_path):
    """Two runs on one output: the second, started while the first holds its parts' folder, is refused before any
    unit in one line; the first goes on, unharmed, and merges every part. Once the first has ended (whole, or
    stopped by an error), a run starts again."""
    done, out = units(tmp_path, 3), tmp_path / "out.json"
    job, print_run = RowJob(Doubles, {}, "out"), fingerprint({}, {})
    second: list = []

    def second_run_meanwhile(part):
        if not second:
            with pytest.raises(PosecalInputError) as refused:
                run(out, done, job, OneProcess(), print_run, print, second.append, lambda i: {"n": i}, progress=False)
            second.append(str(refused.value))

    with run(out, done, job, OneProcess(), print_run, print, second_run_meanwhile, lambda i: {"n": i},
             progress=False) as store:
        assert list(store.parts()) == [0, 2, 4]
        store.remove()
    assert second == [f"{out}: another posecal run is writing it now (its parts are in {part_folder(out)}); wait "
                      "for it or give another --out"]   # refused before a unit was done: no part said
    lines: list[str] = []
    for _ in range(2):   # a run that fails lets the folder go: the same run again starts, and fails alike
        with pytest.raises(PosecalInputError, match="^13: refused$"):
            run(out, done, job, OneProcess(), print_run, lines.append, more=lambda i: {"n": 12 + i}, progress=False)
    assert lines == [f"resuming: 1 of 3 unit(s) already done in {part_folder(out)}"]   # the unit before it kept


def test_a_store_lets_its_lock_go_however_the_run_ends_and_an_empty_folder_goes_with_it(tmp_path):
    folder = part_folder(tmp_path / "out.json")
    with pytest.raises(KeyboardInterrupt):
        with PartStore(folder, {"run": 1}, ["a"]):
            with pytest.raises(PosecalInputError, match="another posecal run is writing it now"):
                PartStore(folder, {"run": 1})
            raise KeyboardInterrupt
    assert not folder.exists()   # stopped before any part: nothing left behind
    with PartStore(folder, {"run": 1}, ["a"]) as store:
        (folder / "part_a.json").write_text("1")
    assert store.lock is None   # let go; its part kept for the next run
    with PartStore(folder, {"run": 1}, ["a"]) as again:
        assert list(again.parts()) == [1]


def test_an_unknown_setting_is_one_line_naming_the_known_ones():
    with pytest.raises(PosecalInputError, match=r"^Doubles: unknown setting\(s\) colour \(settings: factor\)$"):
        check_settings("Doubles", {"colour": 1}, ("factor",))


@dataclass
class Policy:
    """A setting JSON does not know: the fingerprint keeps its fields."""
    quality: float = 0.5


# ---- each command through the runner: one process, and Ray ----

def predict_through(engine, folder, out):
    from posecal.predict.job import PredictConfig
    from posecal.predict.units import run_predict

    cfg = PredictConfig(inputs=[str(folder)], out=str(out), progress=False, **SETTINGS)
    return run_predict(cfg, log=lambda line: None, engine=engine)


def track_config(model, folder, out):
    """The untrained tiny model's doubtful poses tracked anyway (test_track_ray.TINY's settings)."""
    from posecal.inference.person_policy import VIDEO
    from posecal.tracking.pose_tracker import TrackConfig

    return TrackConfig(videos=[str(folder)], out=str(out), model=str(model), detector="none", backend="torch",
                       min_pose_quality=0.0, threads=1, progress=False, policy=replace(VIDEO, birth_quality=0.0))


def track_through(engine, model, folder, out):
    from posecal.tracking.units import run_track

    return run_track(track_config(model, folder, out), log=lambda line: None, engine=engine)


def eval_through(engine, data, out):
    from posecal.evaluation.evaluate import EvalConfig, evaluate

    ann, images = data
    evaluate(EvalConfig(str(ann), str(images), str(out), model="fast", threads=1, progress=False, plots=False,
                        engine=engine))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("seconds")
    return [metrics, json.loads((out / "results.json").read_text())]


def audit_through(engine, data, out):
    from posecal.audit.job import AuditConfig, audit

    ann, images = data
    audit(AuditConfig(str(ann), str(out), str(images), model="fast", threads=1, progress=False, engine=engine))
    return json.loads((out / "findings.json").read_text())


def test_predict_in_one_process_through_the_runner_gives_the_one_process_results(tmp_path):
    from posecal.cli.main import main

    folder = figures(tmp_path / "in", 3)
    summary = predict_through(OneProcess(), folder, tmp_path / "runner.json")
    assert main(["predict", str(folder), "--model", "fast", "--threads", "1", "--out", str(tmp_path / "one.json"),
                 "--no-progress", "--detector", "none", "--min-pose-quality", "0"]) == 0
    assert (summary.frames, summary.problems) == (3, 1) and (part_folder(tmp_path / "runner.json") / "finished").is_file()
    same_results(json.loads((tmp_path / "runner.json").read_text()), json.loads((tmp_path / "one.json").read_text()))


def test_track_in_one_process_through_the_runner_resumes_an_interrupted_run_exactly(tiny_model, tmp_path,
                                                                                     monkeypatch):
    """One process through the runner tracks as run_track does; stopped by Ctrl-C in its second video, the same
    run again tracks only the videos without a part, and the results are the uninterrupted run's."""
    from posecal.tracking import batches
    from posecal.tracking.units import run_track

    folder = clips(tmp_path / "in")
    whole = tmp_path / "whole.json"
    assert track_through(OneProcess(), tiny_model, folder, whole).frames == 15
    one = tmp_path / "one.json"
    run_track(track_config(tiny_model, folder, one), log=lambda line: None)
    same_tracks(json.loads(whole.read_text()), json.loads(one.read_text()))
    real, calls = batches.TrackBatches.track, []

    def second_video_interrupted(self, path, name, render="", work=""):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path, name, render, work)

    out = tmp_path / "out.json"
    with monkeypatch.context() as m:
        m.setattr(batches.TrackBatches, "track", second_video_interrupted)
        with pytest.raises(KeyboardInterrupt, match=r"interrupted: the results of 1 of 3 input\(s\) are kept"):
            track_through(OneProcess(), tiny_model, folder, out)
    assert not out.exists()
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(batches.TrackBatches, "track", lambda self, path, name, render="", work="": calls.append(name)
                  or real(self, path, name, render, work))
        track_through(OneProcess(), tiny_model, folder, out)
    assert calls == ["walk1.avi", "walk2.avi"]   # walk0.avi, the first, was kept
    assert json.loads(out.read_text()) == json.loads(whole.read_text())
    assert not part_folder(out).exists()


@pytest.mark.parametrize("command", ["eval", "audit"])
def test_eval_and_audit_in_one_process_through_the_runner_resume_an_interrupted_run_exactly(command, tmp_path,
                                                                                           monkeypatch):
    """Posed through the runner in one process, eval's metrics and audit's findings are those of its own path;
    a Ctrl-C in the second batch of pictures keeps the first, and the same run again poses only the rest."""
    through = eval_through if command == "eval" else audit_through
    data = make_coco(tmp_path / "data", n_images=6)
    own = through(None, data, tmp_path / "own")
    whole = through(OneProcess(), data, tmp_path / "whole")
    same_numbers(whole, own)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        picture_batches(m, interrupt_at=2)
        with pytest.raises(KeyboardInterrupt, match=r"interrupted: the results of 4 of 6 input\(s\) are kept"):
            through(OneProcess(), data, out)
    with monkeypatch.context() as m:
        calls = picture_batches(m)
        again = through(OneProcess(), data, out)
    assert calls == [[4, 5]]
    assert again == whole
    assert not list(out.glob(".*.parts"))


@pytest.mark.slow
def test_every_command_gives_the_same_through_the_runner_in_one_process_and_on_ray(tiny_model, tmp_path,
                                                                                  local_ray):  # noqa: F811
    from posecal.parallel.ray_rows import RayConfig

    folder = figures(tmp_path / "pictures", 4)
    predict_through(OneProcess(), folder, tmp_path / "p1.json")
    predict_through(RayConfig(workers=2), folder, tmp_path / "p2.json")
    same_results(*(json.loads((tmp_path / f"p{i}.json").read_text()) for i in (2, 1)))
    videos = clips(tmp_path / "videos")
    track_through(OneProcess(), tiny_model, videos, tmp_path / "t1.json")
    track_through(RayConfig(workers=2), tiny_model, videos, tmp_path / "t2.json")
    same_tracks(*(json.loads((tmp_path / f"t{i}.json").read_text()) for i in (2, 1)))
    data = make_coco(tmp_path / "data", n_images=5)
    same_numbers(eval_through(RayConfig(workers=2), data, tmp_path / "e2"), eval_through(OneProcess(), data,
                                                                                          tmp_path / "e1"))
    same_numbers(audit_through(RayConfig(workers=2), data, tmp_path / "a2"), audit_through(OneProcess(), data,
                                                                                           tmp_path / "a1"))


@pytest.mark.slow
def test_track_from_the_cli_resumes_an_interrupted_run_and_says_so(tiny_model, tmp_path, capsys, monkeypatch):
    """`posecal track VIDEOS --out X.json` in one process (the CLI's default) is the runner's: a Ctrl-C in the
    second video keeps the first and says so in the one line every command says, the same command again tracks
    the videos without a part (and says it resumes), and the file is the uninterrupted run's; the summary line
    names the run's settings fingerprint."""
    from conftest import run_cli
    from posecal.tracking import batches
    from test_track_ray import TINY

    folder = clips(tmp_path / "in")
    whole, out = tmp_path / "whole.json", tmp_path / "out.json"
    rc, stdout, _ = run_cli(capsys, "track", folder, "--model", tiny_model, "--out", whole, *TINY)
    assert rc == 0 and "settings fingerprint " in stdout
    real, calls = batches.TrackBatches.track, []

    def counted(self, path, name, render="", work=""):
        calls.append(name)
        if interrupt and len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path, name, render, work)

    monkeypatch.setattr(batches.TrackBatches, "track", counted)
    interrupt = True
    rc, _, err = run_cli(capsys, "track", folder, "--model", tiny_model, "--out", out, *TINY)
    assert rc == 130 and not out.exists()
    assert err.strip().splitlines()[-1] == (
        f"posecal: interrupted: the results of 1 of 3 input(s) are kept in {part_folder(out)}; the same command "
        f"again goes on from there ({out} is written when every input is done)")
    interrupt, calls[:] = False, []
    rc, _, err = run_cli(capsys, "track", folder, "--model", tiny_model, "--out", out, *TINY)
    assert rc == 0 and f"resuming: 1 of 3 unit(s) already done in {part_folder(out)}" in err
    assert calls == ["walk1.avi", "walk2.avi"]
    assert json.loads(out.read_text()) == json.loads(whole.read_text()) and not part_folder(out).exists()
