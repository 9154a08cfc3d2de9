"""`posecal predict` never gives silently wrong results from what an earlier run kept: a photo whose boxes changed
(in the boxes file, or by the annotations' ids that find them) is posed again, a finished run's results serve a
later run with the same settings (only an added photo is posed; a removed one is left out), two inputs of one name
get distinct names, overlays and records, two runs on one .jsonl never interleave, and a bad file is named as the
user gave it."""
import json
import os

import pytest

from posecal.parallel.parts import part_folder

from conftest import make_coco, run_cli, write_walking_video
from test_resume_one_process import posed


@pytest.fixture
def images(tmp_path):
    return make_coco(tmp_path / "d", n_images=3)[1]


def predict(capsys, model, inputs, out, *extra):
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return run_cli(capsys, "predict", *inputs, "--model", model, "--out", out, "--batch-size", "1", "--threads",
                   "1", "--no-progress", *extra)


def stopped_after(monkeypatch, inputs: int) -> None:
    """Ctrl-C as the run asks for its next input after `inputs` were posed."""
    from posecal.predict.batches import PoseBatches

    real, calls = PoseBatches.__call__, []

    def counted(self, batch):
        if len(calls) == inputs:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, batch)
    monkeypatch.setattr(PoseBatches, "__call__", counted)


def bbox_of(results, name) -> list[float]:
    return [r["bbox"] for r in results if r["file_name"] == name]


# --- item 1: a unit's key covers the boxes it was posed with


def test_a_photo_whose_boxes_were_edited_is_posed_again_and_the_others_are_kept(tiny_model, images, tmp_path,
                                                                               capsys, monkeypatch):
    boxes = tmp_path / "B.json"
    boxes.write_text(json.dumps({f"img{i}.jpg": [[20, 10, 60, 90]] for i in range(3)}))
    out = tmp_path / "R.json"
    with monkeypatch.context() as m:
        stopped_after(m, 2)
        rc, _, _ = predict(capsys, tiny_model, images, out, "--boxes", boxes)
    assert rc == 130 and not out.exists()
    boxes.write_text(json.dumps({"img0.jpg": [[30, 20, 50, 80]], "img1.jpg": [[20, 10, 60, 90]],
                                 "img2.jpg": [[20, 10, 60, 90]]}))   # img0's box moved
    with monkeypatch.context() as m:
        names = posed(m)
        rc, _, err = predict(capsys, tiny_model, images, out, "--boxes", boxes)
    assert rc == 0 and names == ["img0.jpg", "img2.jpg"]   # img1 (done, unedited) kept
    assert "resuming: 1 of 3 unit(s) already done" in err
    results = json.loads(out.read_text())
    assert bbox_of(results, "img0.jpg") == [[30.0, 20.0, 50.0, 80.0]]
    fresh = tmp_path / "fresh.json"
    assert predict(capsys, tiny_model, images, fresh, "--boxes", boxes)[0] == 0
    assert results == json.loads(fresh.read_text())


def test_detections_found_through_other_annotation_ids_are_posed_again(tiny_model, tmp_path, capsys, monkeypatch):
    ann, images = make_coco(tmp_path / "d", n_images=4)
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps([{"image_id": 1, "bbox": [20, 10, 60, 90], "score": 0.9, "category_id": 1},
                                 {"image_id": 2, "bbox": [30, 20, 50, 80], "score": 0.8, "category_id": 1},
                                 {"image_id": 3, "bbox": [20, 10, 60, 90], "score": 0.7, "category_id": 1},
                                 {"image_id": 4, "bbox": [20, 10, 60, 90], "score": 0.7, "category_id": 1}]))
    out = tmp_path / "R.json"
    with monkeypatch.context() as m:
        stopped_after(m, 3)
        assert predict(capsys, tiny_model, images, out, "--boxes", boxes, "--annotations", ann)[0] == 130
    coco = json.loads(ann.read_text())
    for image in coco["images"]:   # ids 1 and 2 swap their pictures: img0's and img1's detections swap
        image["file_name"] = {"img0.jpg": "img1.jpg", "img1.jpg": "img0.jpg"}.get(image["file_name"],
                                                                                image["file_name"])
    ann.write_text(json.dumps(coco))
    with monkeypatch.context() as m:
        names = posed(m)
        rc, _, _ = predict(capsys, tiny_model, images, out, "--boxes", boxes, "--annotations", ann)
    assert rc == 0 and names == ["img0.jpg", "img1.jpg", "img3.jpg"]   # img2 (done, its detection unmoved) kept
    results = json.loads(out.read_text())
    assert bbox_of(results, "img0.jpg") == [[30.0, 20.0, 50.0, 80.0]]
    assert bbox_of(results, "img1.jpg") == [[20.0, 10.0, 60.0, 90.0]]
    fresh = tmp_path / "fresh.json"
    assert predict(capsys, tiny_model, images, fresh, "--boxes", boxes, "--annotations", ann)[0] == 0
    assert results == json.loads(fresh.read_text())


# --- item 10 (b): a finished run's results serve the next run with the same settings


def test_a_photo_added_to_a_finished_folder_is_the_only_one_posed(tiny_model, images, tmp_path, capsys,
                                                                 monkeypatch):
    out = tmp_path / "R.json"
    assert predict(capsys, tiny_model, images, out, "--detector", "none")[0] == 0
    (images / "img0b.jpg").write_bytes((images / "img2.jpg").read_bytes())   # added, before img1 in input order
    with monkeypatch.context() as m:
        names = posed(m)
        rc, _, err = predict(capsys, tiny_model, images, out, "--detector", "none")
    assert rc == 0 and names == ["img0b.jpg"] and "resuming: 3 of 4 unit(s) already done" in err
    fresh = tmp_path / "fresh.json"
    assert predict(capsys, tiny_model, images, fresh, "--detector", "none")[0] == 0
    assert json.loads(out.read_text()) == json.loads(fresh.read_text())   # image ids in input order
    (images / "img1.jpg").unlink()
    with monkeypatch.context() as m:
        names = posed(m)
        assert predict(capsys, tiny_model, images, out, "--detector", "none")[0] == 0
    assert names == []
    assert predict(capsys, tiny_model, images, fresh, "--detector", "none")[0] == 0
    assert json.loads(out.read_text()) == json.loads(fresh.read_text())
    assert len(list(part_folder(out).glob("part_*.json"))) == 3   # the removed photo's part is not kept


def test_another_setting_after_a_finished_run_starts_afresh(tiny_model, images, tmp_path, capsys, monkeypatch):
    """A finished run's kept results are no unfinished work to protect: a run with other settings replaces them."""
    out = tmp_path / "R.json"
    assert predict(capsys, tiny_model, images, out, "--detector", "none")[0] == 0
    with monkeypatch.context() as m:
        names = posed(m)
        rc, _, err = predict(capsys, tiny_model, images, out, "--detector", "none", "--min-pose-quality", "0.5")
    assert rc == 0 and names == ["img0.jpg", "img1.jpg", "img2.jpg"] and "resuming" not in err
    fresh = tmp_path / "fresh.json"
    assert predict(capsys, tiny_model, images, fresh, "--detector", "none", "--min-pose-quality", "0.5")[0] == 0
    assert json.loads(out.read_text()) == json.loads(fresh.read_text())


def test_a_removed_overlay_is_drawn_again(tiny_model, images, tmp_path, capsys, monkeypatch):
    out, render = tmp_path / "R.json", tmp_path / "overlays"
    assert predict(capsys, tiny_model, images, out, "--detector", "none", "--render", render)[0] == 0
    (render / "img1.png").unlink()
    with monkeypatch.context() as m:
        names = posed(m)
        assert predict(capsys, tiny_model, images, out, "--detector", "none", "--render", render)[0] == 0
    assert names == ["img1.jpg"] and (render / "img1.png").is_file()


# --- item 8: inputs of one name from two folders


def test_two_photos_and_two_videos_of_one_name_get_distinct_names_and_overlays(tiny_model, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, first = make_coco(tmp_path / "a", n_images=1)
    _, second = make_coco(tmp_path / "b", n_images=1, seed=1)
    write_walking_video(first / "clip.avi", frames=2)
    write_walking_video(second / "clip.avi", frames=2, shift=40)
    inputs = ["a/images/img0.jpg", "b/images/img0.jpg", "a/images/clip.avi", "b/images/clip.avi"]
    rc, _, err = predict(capsys, tiny_model, inputs, "R.json", "--detector", "none", "--render", "overlays")
    assert rc == 0
    assert ("2 inputs are named img0.jpg: told apart by their folders as a/images/img0.jpg, b/images/img0.jpg"
            in err)
    assert "2 inputs are named clip.avi: told apart by their folders as a/images/clip.avi, b/images/clip.avi" in err
    results = json.loads((tmp_path / "R.json").read_text())
    assert {r["file_name"] for r in results} == {"a/images/img0.jpg", "b/images/img0.jpg", "a/images/clip.avi#0",
                                                 "a/images/clip.avi#1", "b/images/clip.avi#0", "b/images/clip.avi#1"}
    overlays = sorted(p.relative_to(tmp_path / "overlays").as_posix() for p in (tmp_path / "overlays").rglob("*.png"))
    assert overlays == ["a/images/clip/frame_000000.png", "a/images/clip/frame_000001.png", "a/images/img0.png",
                        "b/images/clip/frame_000000.png", "b/images/clip/frame_000001.png", "b/images/img0.png"]
    records = tmp_path / "R.jsonl"
    assert predict(capsys, tiny_model, inputs, records, "--detector", "none")[0] == 0
    names = [json.loads(line)["file_name"] for line in records.read_text().splitlines()]
    assert names == ["a/images/img0.jpg", "b/images/img0.jpg", "a/images/clip.avi#0", "a/images/clip.avi#1",
                     "b/images/clip.avi#0", "b/images/clip.avi#1"]


def test_two_videos_of_one_name_are_tracked_into_two_overlays_and_told_apart(tiny_model, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder, shift in (("a", 10), ("b", 40)):
        (tmp_path / folder).mkdir()
        write_walking_video(tmp_path / folder / "clip.mp4", frames=2, shift=shift)
    rc, _, err = run_cli(capsys, "track", "a/clip.mp4", "b/clip.mp4", "--model", tiny_model, "--detector", "none",
                         "--min-birth-quality", "0", "--min-pose-quality", "0", "--threads", "1", "--no-progress",
                         "--out", "T.json", "--render", "overlays")
    assert rc == 0
    assert "2 inputs are named clip.mp4: told apart by their folders as a/clip.mp4, b/clip.mp4" in err
    results = json.loads((tmp_path / "T.json").read_text())
    assert {r["file_name"] for r in results} == {"a/clip.mp4#0", "a/clip.mp4#1", "b/clip.mp4#0", "b/clip.mp4#1"}
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["clip-2.mp4", "clip.mp4"]
    assert "b/clip.mp4: overlay written as overlays/clip-2.mp4 (overlays/clip.mp4 belongs to another input)" in err


# --- item 10 (a): two runs on one .jsonl


def test_a_second_run_on_a_jsonl_being_written_is_refused_and_the_first_ends_whole(tiny_model, images, tmp_path,
                                                                                  capsys):
    """Another run writes R.jsonl (here: this test's own RecordStream, as `predict` and `track` write one); a
    `posecal predict` on it meanwhile is refused in one line and leaves it as it was, so the first ends whole."""
    from posecal.records import RecordStream

    out = tmp_path / "R.jsonl"
    with RecordStream(out) as first:
        first.write({"frame": 0, "text": "a long line " * 10})
        rc, _, err = predict(capsys, tiny_model, images, out, "--detector", "none")
        first.write({"frame": 1})
    assert rc == 2 and err.strip().splitlines()[-1] == (
        f"posecal: error: {out}: another posecal run is writing it now; wait for it or give another --out")
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 1]
    assert predict(capsys, tiny_model, images, out, "--detector", "none")[0] == 0   # once it is done: replaced
    assert [json.loads(line)["file_name"] for line in out.read_text().splitlines()] == ["img0.jpg", "img1.jpg",
                                                                                        "img2.jpg"]


def test_a_jsonl_written_again_is_replaced_whole(tmp_path):
    from posecal.records import RecordStream

    out = tmp_path / "R.jsonl"
    with RecordStream(out) as first:
        for i in range(3):
            first.write({"frame": i, "text": "a long line " * 10})
    with RecordStream(out) as again:
        again.write({"frame": 0})
    assert out.read_text() == '{"frame":0}\n'


# --- item 12 (part): a bad file named as given


def test_a_bad_photo_in_a_relative_folder_is_named_as_given(tiny_model, images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(images.parent)
    (images / "bad.jpg").write_bytes(b"not a picture")
    rc, _, err = predict(capsys, tiny_model, "images", "R.json", "--detector", "none")
    assert rc == 0
    bad = [line for line in err.splitlines() if "bad.jpg" in line]
    assert bad and bad[0].startswith(f"posecal: images{os.sep}bad.jpg: ") and str(images) not in err
