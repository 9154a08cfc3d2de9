"""`torchrun -m posecal predict|eval|track` with 2 gloo ranks on CPU: rank 0's one file equals one process's, and a
failure on one rank stops both with one message; plus the sharding, environment and track-id merge rules."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecal.cli.main import main
from posecal.errors import PosecalInputError
from posecal.parallel import Place, default_threads, place_from_env, shard_indices
from posecal.tracking.shards import merged_tracks

from conftest import write_walking_video

REPO = Path(__file__).resolve().parents[1]


def torchrun(args, tmp_path, nproc=2, timeout=240):
    """`python -m torch.distributed.run --standalone --nproc-per-node N ARGS` (1 thread per rank, 2 shared cores)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", *[str(a) for a in args]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_process(args) -> int:
    """The same command as one process, with the ranks' one thread (a thread count may change float32 sums)."""
    return main([str(a) for a in args] + ["--threads", "1", "--no-progress"])


def posecal_ranks(args, tmp_path, nproc=2):
    return torchrun(["-m", "posecal", *args, "--threads", "1", "--no-progress"], tmp_path, nproc)


def by_frame(results: list[dict]) -> list[str]:
    """Results as sorted JSON lines: equality of these is equality up to order."""
    return sorted(json.dumps(r, sort_keys=True) for r in results)


# --- the rules, without processes -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 5, 16, 17])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_every_item_in_exactly_one_share_and_shares_are_stable(n, world):
    shares = [shard_indices(n, r, world) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(n))         # each item once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1              # balanced
    assert all(s == sorted(s) for s in shares)                             # input order kept inside a share
    assert shares == [shard_indices(n, r, world) for r in range(world)]    # the same every time
    assert shares[0] == list(range(0, n, world))
    with pytest.raises(ValueError):
        shard_indices(n, world, world)


def test_place_from_torchruns_environment():
    assert place_from_env({}) == Place(0, 1, 0, 1)
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert place_from_env(env) == Place(3, 4, 1, 2) and not place_from_env(env).is_main
    assert place_from_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}).local_world_size == 2
    with pytest.raises(PosecalInputError, match="LOCAL_RANK not set"):
        place_from_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(PosecalInputError, match="RANK='x'"):
        place_from_env({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(PosecalInputError, match="not a rank of the group"):
        place_from_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_threads_per_rank_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert default_threads(Place()) == cores                              # one process: every core it may use
    assert default_threads(Place(0, 4, 0, 4)) == max(1, cores // 4)
    assert default_threads(Place(0, 2 * cores, 0, 2 * cores)) == 1        # never 0


def test_track_ids_renumbered_video_by_video_in_input_order():
    def entries(video, ids):
        return [{"file_name": f"v{video}.mp4#0", "track_id": i} for i in ids]
    # One process: v0 ids 1-2, v1 ids 3-5 (id 4 never confirmed, so absent), v2 ids 6, v3 none, v4 id 7.
    # Two ranks number from 1 each: rank 0 has v0 (1-2), v2 (3), v4 (4); rank 1 has v1 (1-3), v3 (none).
    r0 = entries(0, [1, 2, 1]) + entries(2, [3]) + entries(4, [4])
    r1 = entries(1, [1, 3]) + entries(3, [])
    shares = [([(0, 1, 3, 0, 3), (2, 3, 4, 3, 4), (4, 4, 5, 4, 5)], r0, 10),
              ([(1, 1, 4, 0, 2), (3, 4, 4, 2, 2)], r1, 7)]
    merged, next_id = merged_tracks(shares)
    assert [(e["file_name"], e["track_id"]) for e in merged] == [
        ("v0.mp4#0", 1), ("v0.mp4#0", 2), ("v0.mp4#0", 1), ("v1.mp4#0", 3), ("v1.mp4#0", 5), ("v2.mp4#0", 6),
        ("v4.mp4#0", 7)]
    assert next_id == 8
    assert all("track_id" in e and e["track_id"] < 5 for e in r0 + r1)     # the ranks' own lists are left alone


# --- two gloo ranks under torchrun -----------------------------------------------------------------------------

@pytest.mark.slow
def test_predict_on_two_ranks_writes_one_process_file(tiny_model, coco, tmp_path):
    ann, img_dir = coco
    extra = tmp_path / "extra"                        # images the annotation file lacks: ids 4, 5, ... in input order
    extra.mkdir()
    for i in range(3):
        cv2.imwrite(str(extra / f"x{i}.png"), cv2.imread(str(img_dir / f"img{i}.jpg"))[:, ::-1])
    video = tmp_path / "clip.avi"                     # a video's frames are spread over the ranks too
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 160))
    for i in range(5):
        writer.write(cv2.imread(str(img_dir / f"img{i % 3}.jpg")))
    writer.release()
    args = ["predict", img_dir, extra, video, "--annotations", ann, "--model", tiny_model, "--detector", "none",
            "--min-pose-quality", "0", "--batch-size", "2"]
    assert one_process(args + ["--out", tmp_path / "one.json"]) == 0
    run = posecal_ranks(args + ["--out", tmp_path / "two.json", "--render", tmp_path / "overlays"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(one) == 3 + 3 + 5
    assert by_frame(two) == by_frame(one)
    assert two == one                                  # and, merged in input order, in one process's order too
    assert sorted(r["image_id"] for r in two) == list(range(1, 12))
    assert run.stdout.count("person(s) in 11 image(s)") == 1, run.stdout   # rank 0 alone says it
    overlays = sorted(p.relative_to(tmp_path / "overlays").as_posix() for p in (tmp_path / "overlays").rglob("*.png"))
    assert overlays == [f"clip/frame_{i:06d}.png" for i in range(5)] + [f"img{i}.png" for i in range(3)] + \
        [f"x{i}.png" for i in range(3)]


@pytest.mark.slow
def test_eval_on_two_ranks_computes_one_process_metrics(tiny_model, tmp_path):
    from conftest import make_coco

    ann, img_dir = make_coco(tmp_path / "data", n_images=5)
    args = ["eval", "--annotations", ann, "--images", img_dir, "--model", tiny_model, "--batch-size", "2"]
    assert one_process(args + ["--out", tmp_path / "one"]) == 0
    run = posecal_ranks(args + ["--out", tmp_path / "two"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (m1, r1), (m2, r2) = ([json.loads((tmp_path / d / f).read_text()) for f in ("metrics.json", "results.json")]
                          for d in ("one", "two"))
    assert r2 == r1
    m1.pop("seconds"), m2.pop("seconds")
    assert m2 == m1 and m2["num_instances"] == 5
    assert run.stdout.count("5 persons in") == 1, run.stdout


@pytest.mark.slow
def test_track_on_two_ranks_renumbers_ids_as_one_process(tiny_model, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_walking_video(videos / f"walk{i}.avi", frames=4 + i, shift=10 * i)
    # the untrained tiny model's pose quality is below the default birth threshold and the person rule's: let it
    # start tracks anyway
    args = ["track", videos, "--model", tiny_model, "--detector", "none", "--backend", "torch",
            "--min-birth-quality", "0", "--min-pose-quality", "0"]
    assert one_process(args + ["--out", tmp_path / "one.json"]) == 0
    run = posecal_ranks(args + ["--out", tmp_path / "two.json"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len({r["file_name"].split("#")[0] for r in one}) == 3
    assert len({r["track_id"] for r in one}) >= 3      # ids run on over the videos: a collision would show
    assert two == one


WORKER = """
import sys, os
import posecal.predict.job as job
from posecal.errors import PosecalInputError
from posecal.cli.main import main
real = job._boxes_for
def boxes_for(frame, *a):
    if os.environ["RANK"] == "1" and frame.name == "img1.jpg":
        raise {error}
    return real(frame, *a)
job._boxes_for = boxes_for
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow   # two torchrun launches
@pytest.mark.parametrize("error", ['PosecalInputError("img1.jpg: cannot use it")', 'ValueError("a bug")'])
def test_a_failure_on_one_rank_stops_every_rank_with_one_message(tiny_model, coco, tmp_path, error):
    _, img_dir = coco
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(error=error))
    out = tmp_path / "never.json"
    run = torchrun([worker, "predict", img_dir, "--model", tiny_model, "--detector", "none", "--out", out,
                    "--threads", "1", "--no-progress"], tmp_path, timeout=120)   # a hang would time out
    assert run.returncode != 0 and not out.exists()
    said = [line for line in run.stderr.splitlines() if line.startswith("posecal: error:")]
    bug = error.startswith("ValueError")
    message = "ValueError: a bug" if bug else "img1.jpg: cannot use it"
    assert said == [f"posecal: error: {message} (rank 1 of 2; every rank stopped)"], run.stderr[-3000:]
    assert "exitcode  : 2" in run.stderr                                 # a user error, as torchrun saw it
    # a bug keeps its traceback (printed by its rank before rank 0 may exit); a bad input is the one line only
    assert ('raise ValueError("a bug")' in run.stderr) == bug
    assert "raise PosecalInputError" not in run.stderr


def test_other_commands_refuse_several_ranks(tmp_path, capsys, monkeypatch):
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == ""                                  # rank 1: quiet
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == ("posecal: error: posecal export runs as one process; under torchrun "
                                               "only train, predict, track, eval share their work over ranks")


@pytest.mark.slow
def test_an_error_every_rank_meets_alike_is_said_once(coco, tmp_path):
    _, img_dir = coco
    run = posecal_ranks(["predict", img_dir, "--model", tmp_path / "missing.pt", "--detector", "none",
                         "--out", tmp_path / "never.json"], tmp_path)
    said = [line for line in run.stderr.splitlines() if line.startswith("posecal: error:")]
    assert said == [f"posecal: error: {tmp_path / 'missing.pt'}: model file not found"], run.stderr[-3000:]
    assert run.returncode != 0 and not (tmp_path / "never.json").exists()
