"""`posecal predict --engine ray` (posecal/predict/units.py on Ray's engine), its map_batches class (posecal/predict/batches.py)
and the part store under it (posecal/parallel/parts.py).

The part store, PoseBatches, Ray's resource shares and the refusals run without Ray. The runs through Ray share one local Ray started
with 2 CPUs (the machine CI has), and are slow (Ray starts in 5-20 s): the same results as one process, a worker
killed mid-run, a run that stops and is started again, one bad picture among good ones. They skip without Ray."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import COCO_CROPS, STANDING, cli_error, write_walking_video
from posecal.errors import PosecalInputError
from posecal.parallel.parts import FINISHED, PartStore, part_folder, unit_key, write_part
from posecal.parallel.ray_rows import actor_resources
from posecal.parallel.runner import ERROR, PartWriter

try:
    import ray  # noqa: F401
    import ray.data  # noqa: F401
    HAS_RAY = True
except ImportError:
    HAS_RAY = False
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray Data not installed (pip install 'posecal[ray]')")
# the fast model on whole pictures, every pose kept: each stick figure is one person (the detector finds none)
SETTINGS = {"model": "fast", "threads": 1, "detector": "none", "min_pose_quality": 0.0}


def figures(folder: Path, n: int, bad: bool = True) -> Path:
    """n stick-figure pictures (each a little moved) and, with bad, a file that is no picture."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((160, 120, 3), 40 + 5 * i, np.uint8)
        kp = STANDING + [i - n / 2, 0]
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
            cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (200, 180, 160), 3)
        cv2.imwrite(str(folder / f"fig_{i:02d}.png"), img)
    if bad:
        (folder / "fig_bad.jpg").write_text("not a picture")
    return folder


def same_results(a: list[dict], b: list[dict]) -> None:
    """The same persons (image, file, count) and keypoints and trust numbers within float tolerance."""
    assert len(a) > 0
    assert [(e["image_id"], e["file_name"]) for e in a] == [(e["image_id"], e["file_name"]) for e in b]
    for x, y in zip(a, b):
        assert set(x) == set(y)
        np.testing.assert_allclose(x["keypoints"], y["keypoints"], atol=1e-3)
        np.testing.assert_allclose(x["score"], y["score"], atol=1e-5)
        np.testing.assert_allclose(x["keypoint_quality"], y["keypoint_quality"], atol=1e-5)


# ---- the part store and the part writer: no Ray ----

def test_parts_are_whole_resumable_and_refuse_another_run(tmp_path):
    folder = part_folder(tmp_path / "poses.json")
    assert folder == tmp_path / ".poses.json.parts"
    store = PartStore(folder, {"n": (1, 2)}, ["a", "b", "c"])   # the units' keys, in input order
    assert store.done() == set()
    write_part(folder, "b", json.dumps([{"x": 1}]))
    assert not list(folder.glob("*.tmp")) and store.done() == {"b"} and store.kept() == 1
    store.release()
    again = PartStore(folder, {"n": [1, 2]}, ["c", "b", "d"])   # the same run again, its inputs changed
    assert again.done() == {"b"} and again.kept() == 1 and again.read("b") == [{"x": 1}]
    with pytest.raises(PosecalInputError, match="part missing; run again"):
        list(again.parts())
    again.release()
    with pytest.raises(PosecalInputError, match=r"holds the parts of another run \(other n\)"):
        PartStore(folder, {"n": [1, 3]})
    with PartStore(folder, {"n": [1, 2]}) as last:
        last.remove()
    assert not folder.exists()


def test_the_merge_streams_the_parts_into_one_processes_file(tmp_path):
    """The parts merged as one process writes them: input order, an annotation file's image ids where it names
    the picture and the next ids above them elsewhere, a problem counted and left out; .json and .jsonl alike.
    The order is the run's (its units' keys), whatever the parts' names; a part of an input no longer in the run is
    left out. Nothing read at all writes nothing."""
    from posecal.predict.job import PredictConfig
    from posecal.predict.job import merge_parts

    entry = lambda x: {"image_id": 0, "category_id": 1, "keypoints": [x, 1.0, 0.5], "score": 0.5}  # noqa: E731
    parts = [[{"name": "b.jpg", "frame_index": None, "entries": [entry(1.0), entry(2.0)], "messages": []}],
             [{"name": "bad.jpg", "problem": "bad.jpg: cannot decode image"}],
             [{"name": "clip.mp4#0", "frame_index": 0, "entries": [entry(3.0)], "messages": []},
              {"name": "clip.mp4#1", "frame_index": 1, "entries": [], "messages": []}],
             [{"name": "a.jpg", "frame_index": None, "entries": [entry(4.0)], "messages": []}]]
    for out in (tmp_path / "poses.json", tmp_path / "poses.jsonl"):
        keys = ["d", "a", "c", "b"]
        store = PartStore(part_folder(out), {"run": out.name}, keys)
        for key, part in zip(keys, parts):
            write_part(store.folder, key, json.dumps(part))
        write_part(store.folder, "gone", json.dumps(parts[0]))   # an input since removed
        summary = merge_parts(PredictConfig(inputs=[], out=str(out)), store, {"a.jpg": 7}, 0, 0.0)
        assert (summary.frames, summary.persons, summary.problems) == (4, 4, 1)
        # the run's parts kept for the next run (finished), the part of an input since removed gone
        assert (store.folder / FINISHED).is_file() and sorted(p.stem for p in store.folder.glob("part_*")) == \
            [f"part_{k}" for k in sorted(keys)]
        if out.suffix == ".json":
            got = json.loads(out.read_text())
            assert [(e["keypoints"][0], e["image_id"]) for e in got] == [(1.0, 8), (2.0, 8), (3.0, 9), (4.0, 7)]
            assert out.read_text() == json.dumps([e for e in got])   # json.dump's own form, as one process writes
        else:
            records = [json.loads(line) for line in out.read_text().splitlines()]
            assert [(r["file_name"], [p["image_id"] for p in r["people"]]) for r in records] == [
                ("b.jpg", [8, 8]), ("clip.mp4#0", [9]), ("clip.mp4#1", []), ("a.jpg", [7])]
    nobody = tmp_path / "nobody.json"
    with PartStore(part_folder(nobody), {"run": "nobody"}, ["k"]) as store:
        write_part(store.folder, "k", json.dumps(parts[1]))
        with pytest.raises(PosecalInputError, match="no input could be read"):
            merge_parts(PredictConfig(inputs=[], out=str(nobody)), store, {}, 0, 0.0)
    assert not nobody.exists() and not list(tmp_path.glob(".nobody.json*.tmp"))


class _Doubles:
    """A map_batches class for the writer's tests: each row's part is its number doubled; refuses n = 13."""
    opened = 0

    def __init__(self, factor: int = 2):
        if factor < 1:
            raise PosecalInputError("factor must be >= 1")
        self.factor = factor

    def __call__(self, batch):
        if 13 in batch["n"]:
            raise PosecalInputError("13: refused")
        return dict(batch) | {"out": np.array([json.dumps(int(n) * self.factor) for n in batch["n"]], dtype=object)}


def test_the_part_writer_writes_each_units_part_and_says_a_refusal_as_its_rows_error(tmp_path):
    writer = PartWriter(_Doubles, {"factor": 3}, "out", str(tmp_path))
    got = writer({"index": np.array([4, 7]), "key": np.array(["k4", "k7"], dtype=object), "n": np.array([1, 5])})
    assert got["index"].tolist() == [4, 7] and got["key"].tolist() == ["k4", "k7"] and got[ERROR].tolist() == ["", ""]
    assert set(got) == {"index", "key", ERROR}   # the results stay with the worker: only the row's names go back
    assert [json.loads(p.read_text()) for p in sorted(tmp_path.glob("part_*.json"))] == [3, 15]
    assert sorted(p.name for p in tmp_path.glob("part_*.json")) == ["part_k4.json", "part_k7.json"]
    refused = writer({"index": np.array([8]), "key": np.array(["k8"], dtype=object), "n": np.array([13])})
    assert refused[ERROR].tolist() == ["13: refused"] and not (tmp_path / "part_k8.json").exists()
    bad_settings = PartWriter(_Doubles, {"factor": 0}, "out", str(tmp_path))   # the mapper refuses to open
    assert bad_settings({"index": np.array([9]), "key": np.array(["k9"], dtype=object),
                         "n": np.array([1])})[ERROR].tolist() == ["factor must be >= 1"]


def test_actor_resources_fit_the_cluster():
    # 2 CPUs, default workers: one per CPU, one thread and one CPU each
    assert actor_resources(2, 0, None, None, False) == (2, 1, {"num_cpus": 1.0})
    # 8 CPUs, 2 workers: 4 threads each, asking for 4 CPUs each
    assert actor_resources(8, 0, 2, None, False) == (2, 4, {"num_cpus": 4.0})
    # more workers than CPUs: each asks for its share, so the pool still fits
    assert actor_resources(2, 0, 4, None, False) == (4, 1, {"num_cpus": 0.5})
    # threads asked for beyond the share: the request stays the share
    assert actor_resources(4, 0, 2, 8, False) == (2, 8, {"num_cpus": 2.0})
    # a GPU job shares the GPUs among its workers; a CPU job asks for none
    assert actor_resources(8, 1, 4, None, True)[2] == {"num_cpus": 2.0, "num_gpus": 0.25}
    assert "num_gpus" not in actor_resources(8, 1, 4, None, False)[2]


# ---- the map_batches class: no Ray ----

def test_pose_batches_gives_what_one_process_gives(tmp_path):
    """PoseBatches on a batch of paths (one of them no picture) and on RGB arrays: the records of
    `posecal predict`'s results, the bad file one problem record, the others posed."""
    from posecal.predict.batches import POSES, PoseBatches

    folder = figures(tmp_path / "in", 3)
    out = tmp_path / "one.json"
    assert run_cli_quiet(folder, out) == 0
    want = json.loads(out.read_text())
    paths = sorted(str(p) for p in folder.iterdir())
    poser = PoseBatches(**SETTINGS)
    got = poser({"path": np.array(paths, dtype=object), "index": np.arange(len(paths))})
    assert list(got["index"]) == list(range(len(paths)))
    records = [json.loads(text) for text in got[POSES]]
    bad = [r for rs in records for r in rs if "problem" in r]
    assert len(bad) == 1 and bad[0]["name"] == "fig_bad.jpg" and "cannot decode" in bad[0]["problem"]
    entries = [e | {"image_id": i + 1} for i, rs in enumerate(records[:3]) for r in rs for e in r["entries"]]
    same_results(entries, want)
    rgb = [cv2.imread(p)[..., ::-1] for p in paths[:3]]
    arrays = poser({"image": np.array(rgb + [np.zeros((4, 4), np.uint8)], dtype=object),
                    "name": np.array(["fig_00.png", "fig_01.png", "fig_02.png", "flat"], dtype=object)})
    assert "image" not in arrays
    from_arrays = [json.loads(text) for text in arrays[POSES]]
    assert "expected an (H, W, 3) picture" in from_arrays[3][0]["problem"]
    same_results([e | {"image_id": i + 1} for i, rs in enumerate(from_arrays[:3]) for r in rs for e in r["entries"]],
                 want)


def test_pose_batches_refuses_an_unknown_setting():
    from posecal.predict.batches import PoseBatches

    with pytest.raises(PosecalInputError, match="unknown setting.*colour"):
        PoseBatches(model="fast", colour=True)


def run_cli_quiet(folder: Path, out: Path, *args) -> int:
    """`posecal predict FOLDER` in one process, as the Ray runs are set (model fast, 1 thread): its exit code."""
    from posecal.cli.main import main

    return main(["predict", str(folder), "--model", "fast", "--threads", "1", "--out", str(out), "--no-progress",
                 "--detector", "none", "--min-pose-quality", "0", *map(str, args)])


# ---- refusals: no Ray needed ----

def test_engine_ray_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError, as where it is not installed
    line = cli_error(capsys, "predict", figures(tmp_path / "in", 1, bad=False), "--engine", "ray",
                     "--out", tmp_path / "p.json", "--model", "fast")
    assert line == "posecal predict --engine ray needs Ray Data (ray is not installed): pip install 'posecal[ray]'"
    assert not (tmp_path / "p.json").exists()


def test_ray_options_belong_to_the_ray_engine(tmp_path, capsys):
    line = cli_error(capsys, "predict", figures(tmp_path / "in", 1, bad=False), "--workers", "2",
                     "--out", tmp_path / "p.json")
    assert line == "--address and --workers are --engine ray's options"


@needs_ray
def test_records_and_previews_stay_in_one_process(tmp_path, capsys):
    folder = figures(tmp_path / "in", 1, bad=False)
    for option in (["--out", "-"], ["--max-frames", "1", "--out", tmp_path / "p.json"]):   # .jsonl: merged parts
        assert "one process's, frame by frame" in cli_error(capsys, "predict", folder, "--engine", "ray", *option)


# ---- through Ray: slow ----

@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module's runs (the engine uses a Ray already started, and leaves it)."""
    if not HAS_RAY:
        pytest.skip("Ray Data not installed")
    import logging

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    if started:
        ray.shutdown()


def ray_predict(inputs, out: Path, poser=None, workers: int = 2, **settings):
    from posecal.predict.job import PredictConfig
    from posecal.parallel.ray_rows import RayConfig
    from posecal.predict.units import run_predict

    cfg = PredictConfig(inputs=[str(p) for p in inputs], out=str(out), progress=False, **(SETTINGS | settings))
    lines = []
    summary = run_predict(cfg, log=lines.append, engine=RayConfig(workers=workers),
                          **({"poser": poser} if poser else {}))
    return summary, lines


@pytest.mark.slow
def test_ray_gives_what_one_process_gives_and_says_the_bad_picture(tmp_path, local_ray, capsys):
    folder = figures(tmp_path / "in", 5)
    one = tmp_path / "one.json"
    assert run_cli_quiet(folder, one) == 0
    capsys.readouterr()
    summary, lines = ray_predict([folder], tmp_path / "ray.json")
    same_results(json.loads((tmp_path / "ray.json").read_text()), json.loads(one.read_text()))
    assert summary.frames == 5 and summary.problems == 1
    assert [line for line in lines if "fig_bad.jpg" in line] == [f"{folder / 'fig_bad.jpg'}: cannot decode image "
                                                                "(corrupt, unsupported format, or over OpenCV's "
                                                                "1,073,741,824-pixel limit)"]
    assert (part_folder(tmp_path / "ray.json") / "finished").is_file()   # merged, then kept for the next run
    # JSON Lines: the records one process streams
    assert run_cli_quiet(folder, tmp_path / "one.jsonl") == 0
    ray_predict([folder], tmp_path / "ray.jsonl")
    want = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [(r["frame"], r["file_name"]) for r in got] == [(r["frame"], r["file_name"]) for r in want]
    same_results([p for r in got for p in r["people"]], [p for r in want for p in r["people"]])


@pytest.mark.slow
def test_ctrl_c_keeps_every_finished_unit_and_the_run_goes_on_from_there(tmp_path, local_ray):
    """A Ctrl-C in the driver (here: while it says the second finished unit) keeps the part of every unit its
    workers finished, says how many in one line, and the same run started again does only the rest."""
    from posecal.parallel.parts import resumable
    from posecal.parallel.ray_rows import RayConfig, run_rows
    from posecal.parallel.runner import RowJob

    class Doubles:   # defined here, whole: Ray ships a local class to the actors by value
        def __init__(self, factor: int, threads: int | None = None):
            self.factor = factor

        def __call__(self, batch):
            return dict(batch) | {"out": np.array([json.dumps(int(n) * self.factor) for n in batch["n"]], dtype=object)}

    units = [(tmp_path / f"u{i}", f"u{i}") for i in range(6)]
    job = RowJob(Doubles, {"factor": 2}, "out", batch_rows=1)
    store, rows = resumable(tmp_path / "out.json", units, {"run": "ctrl-c"}, print)
    for row in rows:
        row["n"] = row["index"] + 1
    told = []

    def interrupted_at_the_second(part):
        told.append(part)
        if len(told) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"interrupted: the results of \d+ of \d+ input\(s\) are kept in .*the same command again goes on"):
        run_rows(local_ray, RayConfig(workers=1), job, rows, store, interrupted_at_the_second, progress=False)
    kept = store.done()   # (the shared test Ray keeps the abandoned run's actors: they may still add parts)
    index = {key: i for i, key in enumerate(store.keys)}
    assert len(kept) >= 2 and all(store.read(k) == 2 * (index[k] + 1) for k in kept)
    store.release()   # the stopped driver's run ends
    lines = []
    store, rows = resumable(tmp_path / "out.json", units, {"run": "ctrl-c"}, lines.append)
    done = int(lines[0].split()[1])
    assert lines == [f"resuming: {done} of 6 unit(s) already done in {store.folder}"] and done >= len(kept)
    assert len(rows) == 6 - done   # exactly the units without a part are done again
    for row in rows:
        row["n"] = row["index"] + 1
    with store:
        run_rows(local_ray, RayConfig(workers=1), job, rows, store, progress=False)
        assert list(store.parts()) == [2, 4, 6, 8, 10, 12]


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_repeats_nothing(tmp_path, local_ray):
    """An actor's process is killed (SIGKILL, in the middle of a batch) once: Ray starts another and retries the
    batch, and the results hold every picture exactly once, as one process gives them."""
    from posecal.predict.batches import PoseBatches

    class DiesOnce(PoseBatches):
        marker = str(tmp_path / "killed")

        def __call__(self, batch):
            import os
            import signal

            if not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    folder = figures(tmp_path / "in", 8, bad=False)
    one = tmp_path / "one.json"
    assert run_cli_quiet(folder, one) == 0
    summary, _ = ray_predict([folder], tmp_path / "ray.json", poser=DiesOnce)
    assert (tmp_path / "killed").is_file()   # a worker did die
    got = json.loads((tmp_path / "ray.json").read_text())
    assert summary.frames == 8 and sorted({e["file_name"] for e in got}) == [f"fig_{i:02d}.png" for i in range(8)]
    same_results(got, json.loads(one.read_text()))


@pytest.mark.slow
def test_a_stopped_run_resumes_from_its_finished_parts(tmp_path, local_ray):
    """A run that fails on one picture keeps the parts its workers finished; started again (the picture mended),
    it poses only the files without a part, and the merged results are one process's."""
    from posecal.predict.batches import PoseBatches

    seen = tmp_path / "seen.txt"

    class Fails(PoseBatches):
        def __call__(self, batch):
            if any(Path(str(p)).name == "fig_05.png" for p in batch["path"]):
                raise PosecalInputError("fig_05.png: refused for the test")
            return super().__call__(batch)

    class Counts(PoseBatches):
        log = str(seen)

        def __call__(self, batch):
            with open(self.log, "a") as f:
                f.writelines(f"{Path(str(p)).name}\n" for p in batch["path"])
            return super().__call__(batch)

    folder = figures(tmp_path / "in", 8, bad=False)
    out = tmp_path / "ray.json"
    with pytest.raises(PosecalInputError, match="fig_05.png: refused for the test"):
        ray_predict([folder], out, poser=Fails, workers=1)
    store = part_folder(out)
    index = {unit_key(folder / f"fig_{i:02d}.png", f"fig_{i:02d}.png"): i for i in range(8)}
    finished = {index[p.stem[len("part_"):]] for p in store.glob("part_*.json")}
    # on the CPU a call poses one file, written as its part when done: fig_05 is refused, and which of the others
    # were done first depends on how Ray ordered them: the resumed run must redo exactly the rest
    assert not out.exists() and 5 not in finished
    summary, lines = ray_predict([folder], out, poser=Counts, workers=1)
    redone = set(seen.read_text().split())
    assert redone == {f"fig_{i:02d}.png" for i in set(range(8)) - finished}
    assert (f"resuming: {len(finished)} of 8 unit(s) already done in {store}" in lines) == bool(finished)
    one = tmp_path / "one.json"
    assert run_cli_quiet(folder, one) == 0 and summary.frames == 8
    same_results(json.loads(out.read_text()), json.loads(one.read_text()))
    assert not store.exists()


@pytest.mark.slow
@pytest.mark.skipif(not COCO_CROPS.is_dir(), reason="../shared data not available")
def test_ray_and_one_process_agree_on_real_photos_and_a_clip(tmp_path, local_ray):
    """The default model and detector on real photographs and a video clip: the same persons and keypoints."""
    photos = sorted((COCO_CROPS / "images").iterdir())[:6]
    clip = tmp_path / "clip.avi"
    write_walking_video(clip, frames=4)
    inputs = [*photos, clip]
    one = tmp_path / "one.json"
    from posecal.cli.main import main

    assert main(["predict", *map(str, inputs), "--out", str(one), "--no-progress", "--threads", "1"]) == 0
    summary, _ = ray_predict(inputs, tmp_path / "ray.json", model=None, detector=None, min_pose_quality=0.3)
    want = json.loads(one.read_text())
    assert summary.persons == len(want) > 0
    same_results(json.loads((tmp_path / "ray.json").read_text()), want)


def test_pose_batches_reads_a_detections_file_through_its_annotations(tmp_path):
    """COCO detections keyed by image id, named through the annotation file, as `posecal predict --boxes
    --annotations` reads them: the same people."""
    from posecal.predict.batches import POSES, PoseBatches

    folder = figures(tmp_path / "in", 2, bad=False)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "fig_00.png"}, {"id": 9, "file_name": "fig_01.png"}],
                               "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 7, "bbox": [20, 10, 80, 150], "score": 0.9, "category_id": 1},
                                {"image_id": 9, "bbox": [25, 12, 75, 145], "score": 0.8, "category_id": 1}]))
    out = tmp_path / "one.json"
    from posecal.cli.main import main

    assert main(["predict", str(folder), "--model", "fast", "--threads", "1", "--out", str(out), "--no-progress",
                 "--boxes", str(dets), "--annotations", str(ann), "--min-pose-quality", "0"]) == 0
    want = json.loads(out.read_text())
    poser = PoseBatches(model="fast", threads=1, boxes=str(dets), annotations=str(ann), min_pose_quality=0.0)
    paths = sorted(str(p) for p in folder.iterdir())
    records = [json.loads(t) for t in poser({"path": np.array(paths, dtype=object)})[POSES]]
    ids = {"fig_00.png": 7, "fig_01.png": 9}
    same_results([e | {"image_id": ids[r["name"]]} for rs in records for r in rs for e in r["entries"]], want)
