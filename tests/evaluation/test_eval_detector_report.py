"""`posecal eval --detector`: the images of a COCO file whose file_name holds a folder are found as eval on labelled
boxes finds them, and the run's report.html shows the run's own figures (the one-to-one ones of metrics.json), its
galleries the poses matched one to one, and names what made them."""
import json
import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from posecal.evaluation.results import evaluate_results
from posecal.viz.report import draw_evaluation

from conftest import STANDING, make_coco, run_cli

TORCH = ("--backend", "torch", "--no-progress", "--threads", "1")


class _Text(HTMLParser):
    """The text of an HTML page, one string per element's text, as a reader sees it."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        if data.strip():
            self.parts.append(data.strip())


def page_text(path) -> str:
    parser = _Text()
    parser.feed(path.read_text())
    return " | ".join(parser.parts)


def in_a_folder(ann, folder: str):
    """The COCO file with each image's file_name under `folder` ("val/img0.jpg")."""
    data = json.loads(ann.read_text())
    for im in data["images"]:
        im["file_name"] = f"{folder}/{im['file_name']}"
    out = ann.with_name("in_folder.json")
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("layout", ["flat", "sub-folder"])
def test_eval_detector_finds_images_by_their_file_name_or_else_base_name(tmp_path, capsys, tiny_model, layout):
    """file_name "val/imgN.jpg": the images are found in the folder's val/ (the path file_name gives) or, lying flat
    in the folder, by their base name; each pose carries its image's id. An image in neither place is one line
    and the others are posed; eval on labelled boxes finds the same images."""
    ann, images = make_coco(tmp_path / "data", n_images=3)
    ann = in_a_folder(ann, "val")
    if layout == "sub-folder":
        (images / "val").mkdir()
        for f in images.glob("*.jpg"):
            f.rename(images / "val" / f.name)
    where = images / "val" if layout == "sub-folder" else images
    (where / "img2.jpg").unlink()
    rc, out, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--out", tmp_path / "e",
                           "--detector", "none", "--model", tiny_model, *TORCH)
    assert rc == 0, err
    missing = [line for line in err.splitlines() if "img2.jpg" in line]
    assert len(missing) == 1 and "no such file" in missing[0], err
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [1, 2]
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["one_to_one"]["matched"] == 2 and m["one_to_one"]["people_labelled"] == 3
    with pytest.warns(UserWarning, match="img2.jpg: image not found"):
        rc, _, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--out", tmp_path / "b",
                             "--model", tiny_model, *TORCH)
    assert rc == 0, err
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["num_instances"] == 2


def test_eval_detector_report_holds_the_runs_figures_and_names_what_made_them(tmp_path, capsys, tiny_model):
    ann, images = make_coco(tmp_path / "data", n_images=3)
    rc, out, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--out", tmp_path / "e",
                           "--detector", "none", "--model", tiny_model, *TORCH)
    assert rc == 0, err
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    e = m["one_to_one"]
    text = page_text(tmp_path / "e" / "report.html")
    for named in (f"model | {tiny_model}", "boxes | detector none", f"precision | {m['precision']}",
                  f"fingerprint | {m['fingerprint']}"):
        assert named in text, (named, text[:600])
    assert f"pose-quality ECE | {e['ece']:.3f} | ECE floor | {e['ece_floor'][0]:.3f}" in text
    assert f"labelled people | {e['people_labelled']}" in text and f"poses reported | {e['poses']}" in text
    # the terminal says the same figures, shares as percentages
    assert (f"found {100 * e['found_right']:.1f} % of the {e['people_labelled']} labelled people with a right pose, "
            f"pose-quality ECE {e['ece']}") in out


def person(image_id: int, xy: np.ndarray, ann_id: int) -> dict:
    lo, hi = xy.min(0), xy.max(0)
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": np.c_[xy, np.full(17, 2)].ravel().tolist(), "bbox": [*lo, *(hi - lo)],
            "area": float((hi - lo).prod())}


def pose(image_id: int, xy: np.ndarray, q: float) -> dict:
    lo, hi = xy.min(0) - 5, xy.max(0) + 5
    return {"image_id": image_id, "category_id": 1, "keypoints": np.c_[xy, np.full(17, 0.9)].ravel().tolist(),
            "score": q, "pose_quality": q, "keypoint_quality": [0.9] * 17, "bbox": [*lo, *(hi - lo)]}


def test_reported_poses_report_the_one_to_one_figures_and_cards(tmp_path):
    """Picture 1: labelled A, and beside them B whom the file does not label; poses on A (Q 0.6) and on B (Q 0.95).
    Picture 2: labelled C, posed (Q 0.8). Paired by OKS alone (COCOeval's greedy rule), B's pose takes A (OKS ~0):
    pose ECE (0.95 + 0.2) / 2 and an 'over-confident' card of B. One to one, B's pose covers nobody labelled and is
    not scored: ECE (0.4 + 0.2) / 2 = 0.3 (15 bins), and the cards are A's and C's poses only."""
    a, b, c = STANDING, STANDING + [200, 0], STANDING
    truth = {"images": [{"id": 1, "file_name": "one.png", "width": 400, "height": 200},
                        {"id": 2, "file_name": "two.png", "width": 400, "height": 200}],
             "annotations": [person(1, a, 1), person(2, c, 2)],
             "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "results.json").write_text(json.dumps([pose(1, a, 0.6), pose(1, b, 0.95), pose(2, c, 0.8)]))
    images = tmp_path / "images"
    images.mkdir()
    for name in ("one.png", "two.png"):
        cv2.imwrite(str(images / name), np.full((200, 400, 3), 90, np.uint8))
    about = {"boxes": "detector nanodet", "model": "accurate", "precision": "int8", "fingerprint": "0123abcd"}
    ev = evaluate_results(tmp_path / "results.json", tmp_path / "truth.json", tmp_path / "out", images=images,
                          about=about, reported=True)
    assert ev.metrics["pose_score_ece"]["pose_quality"] == pytest.approx(0.575, abs=1e-3)   # the pairs'
    assert ev.metrics["one_to_one"]["ece"] == pytest.approx(0.3, abs=1e-4)
    assert sorted(p.pose_quality for p in ev.pictures.people) == [0.6, 0.8]
    np.testing.assert_allclose(ev.pictures.gt_oks, [1.0, 1.0])
    np.testing.assert_allclose(sorted(ev.pictures.pose_scores["pose_quality"]), [0.6, 0.8])
    text = page_text(draw_evaluation(ev))
    assert "model | accurate | , boxes | detector nanodet | , precision | int8 | , fingerprint | 0123abcd" in text
    assert "pose-quality ECE | 0.300" in text and "0.575" not in text
    qualities = re.findall(r"predicted quality \| (\d\.\d\d)", text)
    assert sorted(set(qualities)) == ["0.60", "0.80"]


def test_the_one_to_one_line_says_shares_as_percentages():
    from posecal.cli.commands import one_to_one_summary

    e = {"found_right": 2 / 3, "people_labelled": 3, "ece": 0.0721, "ece_floor": [0.02, 0.04], "confident": 22,
         "confident_wrong_share": 0.0}
    assert one_to_one_summary(e) == ("found 66.7 % of the 3 labelled people with a right pose, pose-quality ECE "
                                     "0.0721 (floor 0.02, p90 0.04), 0.0 % of the 22 poses with Q >= 0.7 wrong")
    assert one_to_one_summary(e | {"confident": 0, "confident_wrong_share": None}).endswith(
        "no pose with Q >= 0.7")


def test_image_ids_by_file_name_and_by_a_base_name_no_other_image_has(tmp_path):
    """predict names an input by its base name: an image whose file_name holds a folder is found by it too, unless
    two images share it; the inverse (id -> name) still names each image by its file_name."""
    from posecal.data.coco import coco_image_ids

    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "val/1.jpg"}, {"id": 2, "file_name": "a/x.jpg"},
                                           {"id": 3, "file_name": "b/x.jpg"}, {"id": 4, "file_name": "4.jpg"}],
                                "annotations": []}))
    ids = coco_image_ids(path)
    assert ids == {"1.jpg": 1, "val/1.jpg": 1, "a/x.jpg": 2, "b/x.jpg": 3, "4.jpg": 4}
    assert {v: k for k, v in ids.items()} == {1: "val/1.jpg", 2: "a/x.jpg", 3: "b/x.jpg", 4: "4.jpg"}
