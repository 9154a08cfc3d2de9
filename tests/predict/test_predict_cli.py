"""`posecal predict / demo / export` end to end on a tiny model written by the test, and one test per
robustness case of the product: each bad input is one line on stderr and the others still get results."""
import json

import cv2
import numpy as np
import pytest

from posecal.cli.main import main

from conftest import predict


def test_folder_to_coco_results_with_ids_trust_fields_and_overlays(tiny_model, coco, tmp_path, capsys):
    from pycocotools.coco import COCO

    ann, img_dir = coco
    out, render = tmp_path / "res.json", tmp_path / "overlays"
    assert predict(tiny_model, img_dir, "--out", out, "--annotations", ann, "--render", render) == 0
    results = json.loads(out.read_text())
    assert len(results) == 3
    gt = COCO(str(ann))
    ids = {im["file_name"]: im["id"] for im in gt.dataset["images"]}
    assert {r["file_name"]: r["image_id"] for r in results} == ids
    gt.loadRes(str(out))  # pycocotools accepts it
    r = results[0]
    assert len(r["keypoints"]) == 51 and len(r["keypoint_quality"]) == 17
    there = np.asarray(r["visibility"]) > 0          # c = keypoint quality where visibility calls it there, else 0
    assert r["keypoints"][2::3] == pytest.approx(np.asarray(r["keypoint_quality"]) * there, abs=2e-4)
    assert set(r["visibility"]) <= {0, 1, 2} and np.array(r["visibility_probs"]).shape == (17, 3)
    assert 0 <= r["pose_quality"] <= 1 and r["score"] == pytest.approx(r["pose_quality"], abs=1e-4)
    overlays = sorted(p.name for p in render.iterdir())
    assert overlays == ["img0.png", "img1.png", "img2.png"]
    h, w, _ = cv2.imread(str(render / "img0.png")).shape
    assert w == 120 and h >= 160  # small images get the legend as a strip below
    assert "3 person(s) in 3 image(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_score_mode_and_whole_image_box(tiny_model, coco, tmp_path):
    from posecal import Predictor

    _, img_dir = coco
    out = tmp_path / "res.json"
    assert predict(tiny_model, img_dir / "img0.jpg", "--out", out, "--score-mode", "heatmap", "--no-flip") == 0
    r = json.loads(out.read_text())[0]
    assert r["bbox"] == [0, 0, 120, 160] and r["image_id"] == 1 and r["file_name"] == "img0.jpg"
    person = Predictor(tiny_model, flip=False, detector=None, min_pose_quality=0)(str(img_dir / "img0.jpg"))[0]
    assert r["score"] == pytest.approx(person.heatmap_scores.mean(), abs=1e-4)
    assert r["pose_quality"] == pytest.approx(person.pose_quality, abs=1e-4)


def test_bad_files_are_one_line_each_and_others_go_on(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    jpeg = (img_dir / "img0.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "notes.txt").write_text("hello")  # ignored in folders: not an image type
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "res.json"
    code = predict(tiny_model, img_dir / "img1.jpg", bad, tmp_path / "missing.png", empty, "--out", out)
    assert code == 0
    err = capsys.readouterr().err
    assert "corrupt.jpg: cannot decode image" in err
    assert "truncated.jpg: truncated JPEG" in err
    assert "missing.png: no such file or folder" in err
    assert "empty: folder has no images or videos" in err
    assert "Traceback" not in err
    assert [r["file_name"] for r in json.loads(out.read_text())] == ["img1.jpg"]


def test_gray_rgba_16bit_and_huge_images(tiny_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 255, (90, 70), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (90, 70, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (90, 70, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "huge.jpg"), np.full((4000, 6000, 3), 90, np.uint8))
    out = tmp_path / "res.json"
    assert predict(tiny_model, folder, "--out", out) == 0
    results = {r["file_name"]: r for r in json.loads(out.read_text())}
    assert sorted(results) == ["deep.png", "gray.png", "huge.jpg", "rgba.png"]
    assert results["huge.jpg"]["bbox"] == [0, 0, 6000, 4000]


def test_boxes_outside_or_empty_are_skipped_with_a_message(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"img0.jpg": [[10, 10, 60, 100, 0.9], [500, 500, 20, 20], [5, 5, 0, 30]],
                                 "img1.jpg": [[-50, -50, 10, 10]]}))
    out = tmp_path / "res.json"
    assert predict(tiny_model, img_dir, "--boxes", boxes, "--out", out) == 0
    err = capsys.readouterr().err
    assert "lies outside the 120x160 image" in err and "zero or negative size" in err
    assert "img2.jpg: no boxes for it" in err
    results = json.loads(out.read_text())
    assert len(results) == 1 and results[0]["bbox"] == [10, 10, 60, 100] and results[0]["box_score"] == 0.9


def test_coco_detection_boxes_need_ids_mapped(tiny_model, coco, tmp_path, capsys):
    ann, img_dir = coco
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 2, "category_id": 1, "bbox": [20, 20, 60, 120], "score": 0.8},
                                {"image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    out = tmp_path / "res.json"
    assert predict(tiny_model, img_dir / "img1.jpg", "--boxes", dets, "--out", out) == 2
    assert "pass --annotations" in capsys.readouterr().err
    assert predict(tiny_model, img_dir / "img1.jpg", "--boxes", dets, "--annotations", ann, "--out", out) == 0
    results = json.loads(out.read_text())
    assert [(r["image_id"], r["bbox"]) for r in results] == [(2, [20, 20, 60, 120])]


def _write_empty_detector(path, size: int = 64):
    """A YOLOX-shaped ONNX 'detector' whose every score is 0: it finds nobody."""
    import onnx
    from onnx import TensorProto, helper

    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [1, anchors, 6], np.zeros(anchors * 6, np.float32))
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["images"], ["m"], keepdims=0),
         helper.make_node("Mul", ["m", "zero1"], ["m0"]),
         helper.make_node("Add", ["zeros", "m0"], ["output"])],
        "empty", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, anchors, 6])],
        initializer=[zeros, helper.make_tensor("zero1", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_detector_that_finds_nobody(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    det = tmp_path / "empty_detector.onnx"
    _write_empty_detector(det)
    out = tmp_path / "res.json"
    assert predict(tiny_model, img_dir / "img0.jpg", "--detector", det, "--out", out) == 0
    assert "img0.jpg: the detector found nobody" in capsys.readouterr().err
    assert json.loads(out.read_text()) == []


def test_video_every_n_and_unopenable_video(tiny_model, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 96))
    for i in range(5):
        writer.write(np.full((96, 80, 3), 40 * i, np.uint8))
    writer.release()
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    out, render = tmp_path / "res.json", tmp_path / "ov"
    assert predict(tiny_model, video, broken, "--every", "2", "--out", out, "--render", render) == 0
    assert "broken.mp4: cannot open video" in capsys.readouterr().err
    results = json.loads(out.read_text())
    assert [r["frame_index"] for r in results] == [0, 2, 4]
    assert [r["file_name"] for r in results] == ["clip.avi#0", "clip.avi#2", "clip.avi#4"]
    assert sorted(p.name for p in (render / "clip").iterdir()) == [   # named as an image's overlay: no suffix
        "frame_000000.png", "frame_000002.png", "frame_000004.png"]


def test_nothing_readable_exits_2_and_keeps_the_old_output(tiny_model, tmp_path, capsys):
    out = tmp_path / "res.json"
    out.write_text("[]  previous results")
    assert predict(tiny_model, tmp_path / "nope.jpg", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "posecal: error: nothing to do" in err
    assert out.read_text() == "[]  previous results"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_options_are_one_line(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    assert predict(tiny_model, img_dir, "--boxes", tmp_path / "none.json") == 2
    assert predict(tiny_model, img_dir, "--detector", tmp_path / "none.onnx") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("posecal: error:") for line in err)
    with pytest.raises(SystemExit) as e:   # a bad number is argparse's usage error, naming the option
        predict(tiny_model, img_dir, "--every", "0")
    assert e.value.code == 2 and "argument --every: must be > 0, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_export_onnx_and_onnx_backend_match_torch(tiny_model, coco, tmp_path, capsys):
    _, img_dir = coco
    onnx_file = tmp_path / "tiny.onnx"
    assert main(["export", "--model", str(tiny_model), "--out", str(onnx_file)]) == 0
    line = capsys.readouterr().out
    diffs = [float(x) for x in line.split("difference:")[1].replace(",", " ").split()[1::2]]
    assert len(diffs) == 4 and max(diffs) < 1e-3
    from posecal import Predictor

    image = cv2.imread(str(img_dir / "img0.jpg"))
    torch_people = Predictor(tiny_model)(image, boxes=[[10, 10, 60, 100], [0, 0, 120, 160]])
    onnx_people = Predictor(onnx_file, backend="onnx")(image, boxes=[[10, 10, 60, 100], [0, 0, 120, 160]])
    for a, b in zip(torch_people, onnx_people):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-2)
        np.testing.assert_allclose(a.keypoint_quality, b.keypoint_quality, atol=1e-4)
        np.testing.assert_allclose(a.visibility_probs, b.visibility_probs, atol=1e-4)
    out = tmp_path / "res.json"
    assert predict(onnx_file, img_dir, "--backend", "onnx", "--out", out) == 0
    assert len(json.loads(out.read_text())) == 3


def test_demo_on_the_astronaut(tiny_model, tmp_path, capsys):
    pytest.importorskip("skimage")
    from posecal.predict.demo import run_demo

    assert main(["demo", "--out", str(tmp_path / "demo0"), "--model", str(tiny_model)]) == 0
    assert "overlay:" in capsys.readouterr().out     # the untrained model's poses say nobody: no person line
    lines = []
    run_demo(tmp_path / "demo", model=tiny_model, min_pose_quality=0, log=lines.append)   # keep its doubtful poses
    text = "\n".join(lines)
    assert "person 1: pose quality" in text and "visible" in text and "occluded" in text and "absent" in text
    h, w, _ = cv2.imread(str(tmp_path / "demo" / "overlay" / "astronaut.png")).shape
    assert w == 512 and h >= 512
    assert len(json.loads((tmp_path / "demo" / "astronaut_poses.json").read_text())) == 1
