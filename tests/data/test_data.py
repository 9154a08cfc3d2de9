import json

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from posecal.training.config import TrainConfig, load_train_config
from posecal.data.coco import as_coco_file, load_coco_persons, load_lspet, read_image
from posecal.data.topdown import TopDownDataset
from posecal.data.transforms import AugmentConfig, apply_affine
from posecal.errors import PosecalInputError

from conftest import SHARED, needs_shared


def test_loads_tiny_coco(tiny_coco):
    ann, img_dir = tiny_coco
    recs = load_coco_persons(ann, img_dir)
    assert len(recs) == 4
    assert recs[0].keypoints.shape == (17, 3) and recs[0].keypoints[3, 2] == 1
    assert recs[1].keypoints[4, 2] == 0
    assert recs[0].image_id == 1 and recs[0].ann_id == 100


def test_dataset_item_keypoints_match_geometry(tiny_coco):
    ann, img_dir = tiny_coco
    recs = load_coco_persons(ann, img_dir)
    ds = TopDownDataset(recs, (48, 64), augment=None)
    item = ds[0]
    assert item["image"].shape == (3, 64, 48)
    assert item["heatmaps"].shape == (17, 16, 12)
    m = item["matrix"].numpy()
    np.testing.assert_allclose(item["keypoints"][:, :2].numpy(), apply_affine(recs[0].keypoints[:, :2], m), atol=1e-4)
    # the heatmap peak of a labelled keypoint sits at its input position / 4
    k = 0
    y, x = np.unravel_index(item["heatmaps"][k].numpy().argmax(), (16, 12))
    expected = (item["keypoints"][k, :2].numpy() + 0.5) / 4 - 0.5
    assert abs(x - expected[0]) <= 0.5 and abs(y - expected[1]) <= 0.5


def test_augmented_flip_swaps_sides(tiny_coco):
    ann, img_dir = tiny_coco
    recs = load_coco_persons(ann, img_dir)
    aug = AugmentConfig(flip_prob=1.0, scale_range=0, rotation_prob=0, half_body_prob=0, color_jitter=0)
    item = TopDownDataset(recs, (48, 64), augment=aug)[0]
    kp = item["keypoints"].numpy()
    # the left shoulder is on the image's left; mirrored, it moves right and is relabelled right shoulder
    assert recs[0].keypoints[5, 0] < recs[0].keypoints[6, 0]
    assert kp[6, 0] > kp[5, 0]
    m = item["matrix"].numpy()
    mapped = apply_affine(recs[0].keypoints[:, :2], m)
    np.testing.assert_allclose(kp[6, :2], mapped[5], atol=1e-4)


def test_area_scales_with_the_crop(tiny_coco):
    ann, img_dir = tiny_coco
    rec = load_coco_persons(ann, img_dir)[0]
    item = TopDownDataset([rec], (48, 64))[0]
    s = np.sqrt(abs(np.linalg.det(item["matrix"].numpy()[:, :2])))
    assert float(item["area"]) == pytest.approx(rec.area * s * s, rel=1e-5)


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ({"foo": 1}, "not a COCO annotation file"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 7, "image_id": 1, "bbox": [0, 0, 5, 5]}]},
     "annotations[0] (id 7): keypoints: missing (not a keypoint file?)"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [
        {"id": 8, "image_id": 1, "bbox": [0, 0, 0, 5], "keypoints": [1, 1, 2] * 17, "num_keypoints": 17}]},
     "annotations[0] (id 8): bbox: width and height must be > 0, got [0.0, 0.0, 0.0, 5.0]"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [
        {"id": 9, "image_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [float("nan"), 1, 2] + [1, 1, 2] * 16,
         "num_keypoints": 17}]},
     "annotations[0] (id 9): keypoints[0]: expected a finite number, got nan"),
])
def test_bad_annotation_files_give_one_line_errors(tmp_path, content, message):
    p = _write(tmp_path, "bad.json", content)
    with pytest.raises(PosecalInputError) as e:
        load_coco_persons(p, tmp_path)
    assert str(p) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(PosecalInputError, match="file not found"):
        load_coco_persons(tmp_path / "nope.json", tmp_path)


def test_detection_boxes_replace_gt(tiny_coco, tmp_path):
    ann, img_dir = tiny_coco
    dets = _write(tmp_path, "dets.json", [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9},
                                          {"image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.1},
                                          {"image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.9}])
    recs = load_coco_persons(ann, img_dir, boxes_file=dets, min_box_score=0.05)
    assert [r.image_id for r in recs] == [1, 2] and recs[0].score == 0.9
    bad = _write(tmp_path, "dets_bad.json", [{"image_id": 1, "bbox": [0, 0, -3, 4], "score": 1},
                                             {"image_id": 1, "bbox": [10, 10, 50, 100], "score": 1}])
    with pytest.warns(UserWarning, match=r"dets_bad.json: skipped 1 of 2 person boxes: entry 0 \(image_id 1\) has "
                                         "zero or negative size$"):
        assert len(load_coco_persons(ann, img_dir, boxes_file=bad)) == 1  # the bad box is skipped, not fatal


def test_lspet_joints_map_onto_coco(tmp_path):
    kp = np.zeros((14, 3))
    kp[:, :2] = np.arange(28).reshape(14, 2) + 10
    kp[:, 2] = 2
    ann = _write(tmp_path, "lsp.json", {"images": [{"id": 1, "file_name": "im1.jpg"}], "annotations": [
        {"id": 1, "image_id": 1, "bbox": [0, 0, 60, 80], "keypoints": kp.reshape(-1).tolist(), "num_keypoints": 14}]})
    rec = load_lspet(ann, tmp_path)[0]
    assert rec.keypoints[16].tolist() == [10, 11, 2]   # LSP right_ankle -> COCO right_ankle (16)
    assert rec.keypoints[9].tolist() == [32, 33, 2]    # LSP left_wrist (11) -> COCO left_wrist (9)
    assert rec.keypoints[:5, 2].tolist() == [0] * 5    # no face joints in LSP
    # the same person written as COCO keypoints (as_coco_file: what `posecal audit` reads and `audit apply`
    # writes) reads back alike
    data = as_coco_file([rec], {1: (60, 80)})
    assert data["images"] == [{"id": 1, "file_name": "im1.jpg", "width": 60, "height": 80}]
    assert data["annotations"][0]["num_keypoints"] == 12 and len(data["annotations"][0]["keypoints"]) == 51
    again = load_lspet(_write(tmp_path, "lsp17.json", data), tmp_path)[0]
    assert np.array_equal(again.keypoints, rec.keypoints) and again.visibility_known is False
    assert again.bbox.tolist() == rec.bbox.tolist() and again.area == rec.area


@needs_shared
def test_real_lspet_loads():
    recs = load_lspet(SHARED / "data/lspet/annotations/lspet.json", SHARED / "data/lspet/images")
    assert len(recs) == 8500 and all(r.keypoints[:5, 2].max() == 0 for r in recs[:50])


def test_read_image_converts_formats(tmp_path):
    gray = np.full((20, 30), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert read_image(tmp_path / "g.png").shape == (20, 30, 3)
    rgba = np.full((20, 30, 4), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert read_image(tmp_path / "a.png").shape == (20, 30, 3)
    deep = np.full((20, 30, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    img = read_image(tmp_path / "d.png")
    assert img.dtype == np.uint8 and img.max() == 255
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(PosecalInputError, match="bad.jpg: truncated JPEG"):
        read_image(tmp_path / "bad.jpg")
    (tmp_path / "bad2.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage \xff\xd9")
    with pytest.raises(PosecalInputError, match="bad2.jpg: cannot decode image"):
        read_image(tmp_path / "bad2.jpg")
    with pytest.raises(PosecalInputError, match="image not found"):
        read_image(tmp_path / "missing.jpg")


def test_config_yaml_round_trip_and_unknown_keys(tmp_path):
    p = _write(tmp_path, "c.yaml", "epochs: 3\nmodel:\n  input_wh: [96, 128]\naugment:\n  flip_prob: 0.1\n")
    cfg = load_train_config(p)
    assert isinstance(cfg, TrainConfig) and cfg.epochs == 3 and cfg.model.input_wh == (96, 128)
    assert cfg.augment.flip_prob == 0.1 and cfg.augment.rotation_max == 45.0
    bad = _write(tmp_path, "b.yaml", "epochz: 3\n")
    with pytest.raises(PosecalInputError, match="unknown key"):
        load_train_config(bad)
