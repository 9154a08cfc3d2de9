"""The command line's outputs under user mistakes (issue 54): a bad video is an error in `track` as in `predict`
(exit 2, nothing written); `--out` names its format or is refused; JSON Lines frames count from 0 in both; Ctrl-C
in eval leaves no empty folder; the demo's line and a weak model's empty pictures say what happened."""
import json

import cv2
import numpy as np
import pytest

from posecal.errors import PosecalInputError

from conftest import cli_error, make_coco, run_cli, write_walking_video


@pytest.fixture
def bad_videos(tmp_path):
    (tmp_path / "fake.mp4").write_text("this is text, not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "out").mkdir()   # an output file's folder must exist (outputs.check_output_file)
    return tmp_path


@pytest.mark.parametrize("command", ["track", "predict"])
@pytest.mark.parametrize("video", ["fake.mp4", "empty.mp4"])
@pytest.mark.parametrize("out", ["r.json", "r.jsonl"])
def test_a_bad_video_exits_2_and_writes_nothing(tiny_model, bad_videos, capsys, command, video, out):
    target = bad_videos / "out" / out
    rc, _, err = run_cli(capsys, command, bad_videos / video, "--model", tiny_model, "--out", target,
                         "--no-progress", "--detector", "none")
    why, last = err.strip().splitlines()   # the file's problem, then the refusal, as predict has always said
    assert rc == 2 and why == f"posecal: {bad_videos / video}: cannot open video (unsupported codec or not a video)"
    assert last.startswith("posecal: error: nothing to do: no ") and last.endswith(str(bad_videos / video))
    assert not target.exists()


@pytest.mark.slow
def test_a_bad_video_beside_a_good_one_is_said_and_the_good_one_tracked(tiny_model, bad_videos, capsys):
    good = write_walking_video(bad_videos / "walk.avi", frames=3)
    rc, _, err = run_cli(capsys, "track", bad_videos / "fake.mp4", good, "--model", tiny_model, "--out",
                         bad_videos / "t.json", "--no-progress", "--detector", "none", "--backend", "torch")
    assert rc == 0 and "fake.mp4: cannot open video" in err
    assert isinstance(json.loads((bad_videos / "t.json").read_text()), list)


@pytest.mark.parametrize("command", ["track", "predict"])
@pytest.mark.parametrize("out", ["out.csv", "out", "out.JSON.txt"])
def test_out_must_name_a_format(tiny_model, tmp_path, capsys, command, out):
    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    line = cli_error(capsys, command, video, "--model", tiny_model, "--out", tmp_path / out, "--no-progress")
    assert line.startswith(f"--out {tmp_path / out}: posecal writes results as .json") and ".jsonl" in line
    assert not (tmp_path / out).exists()


@pytest.mark.slow
def test_json_lines_frames_count_from_0_in_predict_and_track(tiny_model, tmp_path, capsys):
    (tmp_path / "v").mkdir()
    video = write_walking_video(tmp_path / "v" / "walk.avi", frames=3)
    ann, img_dir = make_coco(tmp_path / "data", n_images=3)
    common = ["--model", tiny_model, "--detector", "none", "--min-pose-quality", "0", "--no-progress",
              "--backend", "torch"]
    assert run_cli(capsys, "predict", img_dir, "--out", tmp_path / "i.jsonl", "--annotations", ann, *common)[0] == 0
    images = [json.loads(s) for s in (tmp_path / "i.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in images] == [0, 1, 2]
    assert [p["image_id"] for r in images for p in r["people"]] == [1, 2, 3]   # the annotation file's ids stay
    for command in ("predict", "track"):
        out = tmp_path / f"{command}.jsonl"
        assert run_cli(capsys, command, video, "--out", out, *common)[0] == 0
        records = [json.loads(s) for s in out.read_text().splitlines()]
        assert [r["frame"] for r in records] == [0, 1, 2], command
        assert [r["file_name"] for r in records] == ["walk.avi#0", "walk.avi#1", "walk.avi#2"], command


def test_ctrl_c_in_eval_leaves_no_empty_folder(tiny_model, tmp_path, capsys, monkeypatch):
    from posecal.evaluation import evaluate as evaluation

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluation, "pose_records", interrupted)
    out = tmp_path / "new" / "eval"
    rc, _, err = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", out, "--model",
                         tiny_model, "--no-progress", "--threads", "1")
    assert rc == 130 and err.strip().endswith(f"nothing written to {out}")
    assert not out.exists() and not out.parent.exists()
    kept = tmp_path / "kept"
    (kept / "eval").mkdir(parents=True)                       # a folder the user made stays
    rc, _, _ = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", kept / "eval",
                       "--model", tiny_model, "--no-progress", "--threads", "1")
    assert rc == 130 and (kept / "eval").is_dir()


def test_eval_leaves_the_process_threads_alone(tiny_model, tmp_path, capsys):
    import torch

    ann, img_dir = make_coco(tmp_path / "data", n_images=2)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    rc, _, _ = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", tmp_path / "e",
                       "--model", tiny_model, "--no-progress", "--threads", str(other), "--backend", "torch")
    assert rc == 0 and torch.get_num_threads() == before


def test_the_demo_line_counts_only_present_keypoints():
    from types import SimpleNamespace

    from posecal.predict.demo import person_line

    quality = np.full(17, 0.9)
    visibility = np.array([2] * 11 + [1, 1] + [0] * 4)           # the hips and legs absent, yet quality 0.9
    line = person_line(1, SimpleNamespace(keypoint_quality=quality, visibility=visibility, pose_quality=0.71))
    assert line.endswith("13/13 present keypoints with quality >= 0.5")
    assert "11 visible, 2 occluded, 4 absent" in line
    plain = person_line(2, SimpleNamespace(keypoint_quality=quality, visibility=None, pose_quality=0.5))
    assert plain.endswith("17/17 keypoints with quality >= 0.5")


def test_a_weak_models_dropped_boxes_are_named_as_such(tiny_model, tmp_path, capsys, monkeypatch):
    from posecal.inference import pipeline

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((120, 160, 3), 80, np.uint8))
    found = pipeline.DETECTED   # the detector's tag
    boxes = (np.array([[10.0, 10, 50, 100], [80, 10, 50, 100]]), np.array([0.9, 0.8]), found)
    PosePipeline = pipeline.PosePipeline
    monkeypatch.setattr(PosePipeline, "boxes", lambda self, bgr: boxes)   # the detector finds two boxes
    rc, _, err = run_cli(capsys, "predict", photo, "--model", tiny_model, "--out", tmp_path / "p.json",
                         "--no-progress", "--backend", "torch", "--min-pose-quality", "1")
    assert rc == 0 and "p.png: 2 box(es) from the detector, none kept as a person" in err
    assert "found nobody" not in err


def test_track_with_every_frame_unreadable_is_an_error(tiny_model, tmp_path, monkeypatch):
    from posecal.data.sources import Problem
    from posecal.tracking import job
    from posecal.tracking.pose_tracker import TrackConfig
    from posecal.tracking.units import run_track

    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    monkeypatch.setattr(job, "iter_frames", lambda files, every=1: iter([Problem("walk.avi: broken mid-way")]))
    out = tmp_path / "t.json"
    cfg = TrackConfig([str(video)], out=str(out), model=str(tiny_model), detector="none", backend="torch",
                      progress=False)
    with pytest.raises(PosecalInputError, match="no frame could be read"):
        run_track(cfg, log=lambda m: None)
    assert not out.exists()


def test_evidence_from_another_model_file_without_pytorch_is_one_line(monkeypatch, tmp_path):
    """The shipped trust model runs as its graph (tests/export/test_without_torch.py runs `calibrate --images`
    without PyTorch); another model file's runs in PyTorch only, and without it one line says what it needs."""
    import builtins

    from posecal.errors import MissingPackage
    from posecal.evaluation.evidence import PosecalEvidence

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)   # restored after the test
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"not read")
    with pytest.raises(MissingPackage) as e:
        PosecalEvidence(mine)
    assert str(e.value) == ("--images needs PyTorch: pip install -e '.[train]' in posecal's source tree, or leave "
                            "out --images")