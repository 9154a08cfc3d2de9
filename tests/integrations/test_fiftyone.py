"""posecal in FiftyOne: a Picture's people as FiftyOne labels and samples, COCO ground truth with `posecal audit`'s
findings as mistakenness-like fields, and the folder FiftyOne's own importer loads. The numbers come back
unchanged (points times the image size, confidences, visibility, pose quality), absent keypoints are hidden the
way FiftyOne hides them (NaN points), the findings' fields order the labels as the findings' scores do, and no
FiftyOne database is ever opened (every test runs with the connection made to fail)."""
import json
import math

import cv2
import numpy as np
import pytest

from posecal.audit.findings import KINDS as AUDIT_KINDS
from posecal.cli.main import main
from posecal.errors import MissingPackage, PosecalInputError
from posecal.inference.estimator import PersonPose
from posecal.inference.picture import Picture
from posecal.integrations import fiftyone as pf
from posecal.skeleton import COCO_KEYPOINTS, COCO_LIMBS

from conftest import KNOWN_ABSENT, known_person

fo = pytest.importorskip("fiftyone")
importers = pytest.importorskip("fiftyone.utils.data.importers")

K = 17
ABSENT = KNOWN_ABSENT
W, H = 260, 240       # the test picture's size


@pytest.fixture(autouse=True)
def no_database(monkeypatch):
    """Any connection to FiftyOne's database (MongoDB) fails the test: everything here works without one."""
    import fiftyone.core.odm.database as db
    import pymongo

    def refuse(*args, **kwargs):
        raise AssertionError("FiftyOne's database was opened")

    for name in ("_connect", "_async_connect", "get_db_client", "get_async_db_client", "get_db_conn"):
        if hasattr(db, name):
            monkeypatch.setattr(db, name, refuse)
    monkeypatch.setattr(pymongo.MongoClient, "__init__", refuse)
    yield
    assert db._client is None


def person(offset: float, **fields) -> PersonPose:
    """conftest.known_person, its keypoints 9 px apart in y (inside the test picture's height)."""
    return known_person(offset, y_step=9.0, **fields)


def picture(people, path="", tracked=False, error=None, frame_index=None) -> Picture:
    return Picture("image" if not path else str(path), str(path), people, np.zeros((H, W, 3), np.uint8),
                   frame_index=frame_index, tracked=tracked, error=error)


def pixels(points) -> np.ndarray:
    return np.asarray(points, float) * [W, H]


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and len(text) < 300, text
    return text


# --- posecal's poses as FiftyOne labels ------------------------------------------------------------------------

def test_round_trip_gives_back_the_pictures_numbers():
    pic = picture([person(0, person_probability=0.9), person(30)])
    keypoints, detections = pic.to_fiftyone()
    assert isinstance(keypoints, fo.Keypoints) and isinstance(detections, fo.Detections)
    assert len(keypoints.keypoints) == len(detections.detections) == 2
    for i, (kp, det) in enumerate(zip(keypoints.keypoints, detections.detections)):
        assert kp.label == det.label == "person" and kp.index is None and det.index is None
        shown = pic.visibility[i] != 0
        np.testing.assert_allclose(pixels(kp.points)[shown], pic.keypoints[i][shown], atol=1e-9)
        assert np.isnan(np.asarray(kp.points, float)[~shown]).all()       # absent: hidden as FiftyOne hides them
        np.testing.assert_allclose(kp.confidence, pic.keypoint_quality[i], atol=1e-12)
        assert kp.visible == pic.visibility[i].tolist()
        assert kp.pose_quality == pytest.approx(pic.pose_quality[i], abs=1e-12)
        np.testing.assert_allclose(kp.visibility_probs, pic.visibility_probs[i])
        np.testing.assert_allclose(kp.keypoint_radius, pic.keypoint_radius[i])
        np.testing.assert_allclose(kp.in_frame, pic.in_frame[i])
        assert kp.pose_source == "detected"
        np.testing.assert_allclose(np.asarray(det.bounding_box) * [W, H, W, H], pic.boxes[i], atol=1e-9)
        assert det.confidence == pytest.approx(pic.pose_quality[i], abs=1e-12)
    # p(person) where the verifier judged the box; left out where it did not (not NaN)
    assert keypoints.keypoints[0].person_probability == detections.detections[0].person_probability == 0.9
    assert not keypoints.keypoints[1].has_field("person_probability")
    assert not detections.detections[1].has_field("person_probability")


def test_absent_keypoints_are_hidden_and_the_rest_drawn():
    kp = picture([person(0)]).to_fiftyone().keypoints.keypoints[0]
    hidden = [k for k, p in enumerate(kp.points) if any(math.isnan(v) for v in p)]
    assert hidden == [ABSENT] and kp.visible[ABSENT] == 0 and kp.visible[ABSENT + 1] == 1   # occluded is drawn
    assert all(0 <= v <= 1 for k, p in enumerate(kp.points) if k != ABSENT for v in p)
    # FiftyOne's own rule agrees: its confidence threshold hides points the same way (NaN)
    kp.apply_confidence_threshold(0.5)
    assert sum(math.isnan(p[0]) for p in kp.points) == 1 + sum(c < 0.5 for k, c in enumerate(kp.confidence)
                                                               if k != ABSENT)


def test_tracked_picture_gives_track_ids_as_index():
    keypoints, detections = picture([person(0, track_id=7), person(30, track_id=None)], tracked=True).to_fiftyone()
    assert [k.index for k in keypoints.keypoints] == [7, None]
    assert [d.index for d in detections.detections] == [7, None]


def test_model_without_visibility_head_shows_every_point():
    kp = pf.picture_to_fiftyone(picture([person(0, visibility=False)])).keypoints.keypoints[0]
    assert not np.isnan(np.asarray(kp.points, float)).any()
    assert not kp.has_field("visible") and not kp.has_field("visibility_probs")


def test_empty_and_unreadable_pictures_give_empty_labels():
    for pic in (picture([]), Picture("bad.jpg", "bad.jpg", [], np.zeros((0, 0, 3), np.uint8), error="unreadable")):
        keypoints, detections = pf.picture_to_fiftyone(pic)
        assert keypoints.keypoints == [] and detections.detections == []


def test_mistakes_are_one_line():
    with pytest.raises(PosecalInputError) as e:
        pf.picture_to_fiftyone([picture([])])
    assert "takes one Picture" in one_line(e)
    with pytest.raises(PosecalInputError) as e:
        pf.picture_to_fiftyone(person(0))
    assert "not a PersonPose" in one_line(e)
    with pytest.raises(PosecalInputError) as e:
        pf.picture_to_sample(picture([person(0)]))
    assert "came from an array" in one_line(e)
    with pytest.raises(PosecalInputError) as e:
        pf.picture_to_sample(picture([person(0)], path="clip.mp4", frame_index=4))
    assert "sample.frames[5]" in one_line(e)


def test_missing_fiftyone_is_one_line_with_the_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fiftyone", None)      # import fiftyone -> ImportError
    with pytest.raises(MissingPackage) as e:
        pf.picture_to_fiftyone(picture([person(0)]))
    assert "pip install 'posecal[fiftyone]'" in one_line(e)


# --- samples: posecal's poses beside the ground truth -----------------------------------------------------------

def coco_annotation(ann_id: int, image_id: int, shift: float, absent=()) -> dict:
    xy = 30 + shift + np.stack([np.arange(K) * 5.0, np.arange(K) * 7.0], 1)
    v = np.full(K, 2)
    v[list(absent)] = 0
    flat = np.concatenate([np.where(v[:, None] > 0, xy, 0), v[:, None]], 1).reshape(-1)
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [20 + shift, 20, 100, 140],
            "area": 7000.0, "num_keypoints": int((v > 0).sum()), "keypoints": [float(x) for x in flat]}


def test_sample_holds_poses_and_ground_truth(tmp_path):
    path = tmp_path / "a.jpg"
    gt = [coco_annotation(5, 1, 0, absent=(3, 4)), coco_annotation(6, 1, 40)]
    sample = pf.picture_to_sample(picture([person(0)], path=path), ground_truth=gt)
    assert sample.filepath == str(path) and sample.media_type == "image"
    assert (sample.metadata.width, sample.metadata.height) == (W, H)
    assert len(sample[pf.KEYPOINTS_FIELD].keypoints) == 1 and len(sample[pf.BOXES_FIELD].detections) == 1
    truth = sample[pf.GROUND_TRUTH_FIELD].keypoints
    assert [k.coco_id for k in truth] == [5, 6] and all(k.label == "person" for k in truth)
    for k, ann in zip(truth, gt):
        labels = np.asarray(ann["keypoints"], float).reshape(K, 3)
        shown = labels[:, 2] > 0
        np.testing.assert_allclose(pixels(k.points)[shown], labels[shown, :2], atol=1e-9)
        assert np.isnan(np.asarray(k.points, float)[~shown]).all() and k.visible == labels[:, 2].astype(int).tolist()
    assert not sample.has_field(pf.MISTAKENNESS)    # no findings given: no finding fields
    with pytest.raises(PosecalInputError) as e:
        pf.picture_to_sample(picture([person(0)], path=path), ground_truth=[{"id": 9, "keypoints": [1, 2]}])
    assert "(id 9): 'keypoints' must be 17" in one_line(e)


# --- audit findings as mistakenness ------------------------------------------------------------------------------

FINDINGS = [   # findings.json's contract (posecal/audit/findings.py), highest score first
    {"id": "12:swap:5", "annotation_id": 12, "keypoint": 5, "kind": "swap", "score": 0.999, "strength": 3.0,
     "pair": [5, 6]},
    {"id": "11:position:9", "annotation_id": 11, "keypoint": 9, "kind": "position", "score": 0.98,
     "strength": 1.7},
    {"id": "13:person:-", "annotation_id": 13, "keypoint": None, "kind": "person", "score": 0.45, "strength": 0.45},
    {"id": "11:visibility:3", "annotation_id": 11, "keypoint": 3, "kind": "visibility", "score": 0.93,
     "strength": 1.1},
    {"id": "12:missing:4", "annotation_id": 12, "keypoint": 4, "kind": "missing", "score": 0.91, "strength": 1.0},
    {"id": "99:position:1", "annotation_id": 99, "keypoint": 1, "kind": "position", "score": 1.0, "strength": 9},
]


def write_coco(folder, annotations_per_image) -> tuple:
    """A tiny COCO file and its images (grey pictures W x H); annotation_per_image: per image, its annotations."""
    images, anns = [], []
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for n, image_anns in enumerate(annotations_per_image, start=1):
        name = f"img{n}.jpg"
        cv2.imwrite(str(folder / "images" / name), np.full((H, W, 3), 90, np.uint8))
        images.append({"id": n, "file_name": name, "width": W, "height": H})
        anns += [coco_annotation(a, n, 10 * j) for j, a in enumerate(image_anns)]
    path = folder / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path, folder / "images"


def test_kinds_are_the_audits():
    assert pf.KINDS == AUDIT_KINDS


def test_findings_fields_rank_labels_as_the_findings_scores(tmp_path):
    from posecal.audit.fiftyone_export import audit_samples

    ann, images = write_coco(tmp_path, [[10, 11], [12, 13, 14]])
    (tmp_path / "findings.json").write_text(json.dumps(FINDINGS))
    samples = audit_samples(ann, images, tmp_path / "findings.json")
    assert [s.filepath for s in samples] == [str(images / "img1.jpg"), str(images / "img2.jpg")]
    labels = {k.coco_id: k for s in samples for k in s[pf.GROUND_TRUTH_FIELD].keypoints}
    assert sorted(labels) == [10, 11, 12, 13, 14]
    ranked = sorted(labels, key=lambda a: -labels[a][pf.MISTAKENNESS])
    assert ranked[:3] == [12, 11, 13] and {labels[a][pf.MISTAKENNESS] for a in (10, 14)} == {0.0}
    assert labels[12][pf.MISTAKENNESS] == 0.999 and labels[11][pf.MISTAKENNESS] == 0.98
    # per kind, per point (a swap on both points of its pair) and the ids `audit apply --accept` takes
    assert labels[11]["posecal_position"] == 0.98 and labels[11]["posecal_visibility"] == 0.93
    assert labels[11]["posecal_swap"] == 0.0 and labels[13]["posecal_person"] == 0.45
    points = labels[12][pf.POINT_MISTAKENNESS]
    assert points[5] == points[6] == 0.999 and points[4] == 0.91 and sum(p > 0 for p in points) == 3
    assert labels[13][pf.POINT_MISTAKENNESS] == [0.0] * K       # a person finding names no point
    assert labels[11][pf.FINDING_IDS] == ["11:position:9", "11:visibility:3"]
    # the sample: the highest of its labels, as Brain's mistakenness, so a view sorts images by it
    assert [s[pf.MISTAKENNESS] for s in samples] == [0.98, 0.999]


def test_bad_findings_are_one_line(tmp_path):
    ann, images = write_coco(tmp_path, [[10]])
    from posecal.audit.fiftyone_export import audit_samples

    for bad, words in (({"annotation_id": "x", "kind": "swap", "score": 1}, "'annotation_id' must be an integer"),
                       ({"annotation_id": 1, "kind": "typo", "score": 1}, "'kind' must be one of"),
                       ({"annotation_id": 1, "kind": "swap", "score": None}, "'score' must be a finite number"),
                       ({"annotation_id": 1, "kind": "swap", "score": 1, "keypoint": 40}, "keypoints 0-16")):
        (tmp_path / "f.json").write_text(json.dumps([bad]))
        with pytest.raises(PosecalInputError) as e:
            audit_samples(ann, images, tmp_path / "f.json")
        assert "findings[0]" in one_line(e) and words in one_line(e)
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(PosecalInputError) as e:
        audit_samples(ann, images, tmp_path / "f.json")
    assert "not a findings file" in one_line(e)


# --- on disk: read back by FiftyOne's own importer ---------------------------------------------------------------

def read_back(folder) -> list:
    """The samples FiftyOne's importer of fo.types.LegacyFiftyOneDataset reads (what Dataset.from_dir adds)."""
    importer = importers.LegacyFiftyOneDatasetImporter(str(folder))
    importer.setup()
    return list(importer)


def test_folder_is_read_back_by_fiftyones_importer_with_the_same_numbers(tmp_path):
    ann, images = write_coco(tmp_path, [[11, 12]])
    pic = picture([person(0, person_probability=0.9, track_id=3), person(30, track_id=4)],
                  path=images / "img1.jpg", tracked=True)
    gt = json.loads(ann.read_text())["annotations"]
    sample = pf.picture_to_sample(pic, ground_truth=gt, findings=FINDINGS)
    out = pf.write_fiftyone_dir([sample, picture([person(5)], path=images / "img2.jpg")], tmp_path / "fo")
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "samples.json"]   # no temp files left

    first, second = read_back(out)
    assert first.filepath == str(images / "img1.jpg") and (first.metadata.width, first.metadata.height) == (W, H)
    for i, kp in enumerate(first[pf.KEYPOINTS_FIELD].keypoints):
        shown = pic.visibility[i] != 0
        np.testing.assert_allclose(pixels(kp.points)[shown], pic.keypoints[i][shown], atol=1e-9)
        assert np.isnan(np.asarray(kp.points, float)[~shown]).all()
        np.testing.assert_allclose(kp.confidence, pic.keypoint_quality[i], atol=1e-12)
        assert kp.visible == pic.visibility[i].tolist() and kp.index == pic.track_ids[i]
        assert kp.pose_quality == pytest.approx(pic.pose_quality[i], abs=1e-12)
        np.testing.assert_allclose(kp.visibility_probs, pic.visibility_probs[i])
    boxes = first[pf.BOXES_FIELD].detections
    np.testing.assert_allclose([np.asarray(d.bounding_box) * [W, H, W, H] for d in boxes], pic.boxes, atol=1e-9)
    assert [d.confidence for d in boxes] == pytest.approx(pic.pose_quality.tolist(), abs=1e-12)
    truth = first[pf.GROUND_TRUTH_FIELD].keypoints
    assert [(k.coco_id, k[pf.MISTAKENNESS]) for k in truth] == [(11, 0.98), (12, 0.999)]
    assert truth[1][pf.POINT_MISTAKENNESS][6] == 0.999 and first[pf.MISTAKENNESS] == 0.999
    assert second.filepath == str(images / "img2.jpg") and not second.has_field(pf.GROUND_TRUTH_FIELD)

    # metadata.json: the COCO skeleton, in the form the dataset's default_skeleton field takes
    import fiftyone.core.odm as foo

    info = importers.LegacyFiftyOneDatasetImporter(str(out))
    info.setup()
    skeleton = foo.DatasetDocument._fields["default_skeleton"].to_python(info.get_dataset_info()["default_skeleton"])
    assert list(skeleton.labels) == list(COCO_KEYPOINTS) and [tuple(e) for e in skeleton.edges] == list(COCO_LIMBS)
    # fo.types.FiftyOneDataset's importer hands a folder without a format version to the same importer
    assert importers.FiftyOneDatasetImporter(str(out))._is_legacy_format_data()


def test_cli_audit_writes_the_fiftyone_folder(tmp_path, capsys):
    """`posecal audit --results R --fiftyone DIR` (no model: an estimator's calibrated results): the folder holds
    the labels with the findings' scores, the planted error first."""
    pose = 60 + np.stack([np.arange(K) * 4.0, np.arange(K) * 9.0], 1)
    anns = []
    for a in range(3):
        labels = np.concatenate([pose, np.full((K, 1), 2.0)], 1)
        if a == 1:
            labels[9, :2] += [40, 0]           # planted: a wrist 40 px off
        anns.append({"id": 20 + a, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [50, 50, 90, 170],
                     "area": 7650.0, "num_keypoints": K, "keypoints": labels.reshape(-1).tolist()})
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((H, W, 3), 90, np.uint8))
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": W,
                                                              "height": H}], "annotations": anns,
                                                  "categories": [{"id": 1, "name": "person"}]}))
    res = [{"image_id": 1, "category_id": 1, "bbox": [50, 50, 90, 170], "score": 0.8, "pose_quality": 0.8,
            "keypoints": np.concatenate([pose, np.ones((K, 1))], 1).reshape(-1).tolist(),
            "visibility_probs": [[0.02, 0.02, 0.96]] * K, "keypoint_radius": [8.0] * K} for _ in range(3)]
    (tmp_path / "r.json").write_text(json.dumps(res))
    args = ["audit", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json"),
            "--out", str(tmp_path / "out")]
    assert main(args + ["--fiftyone", str(tmp_path / "fo")]) == 2                 # no --images: refused first
    assert "--fiftyone needs --images" in capsys.readouterr().err
    assert not (tmp_path / "out" / "findings.json").exists()
    assert main(args + ["--images", str(tmp_path / "images"), "--fiftyone", str(tmp_path / "fo")]) == 0
    assert f"FiftyOne folder {tmp_path / 'fo'}" in capsys.readouterr().out
    findings = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert findings and all(f["annotation_id"] == 21 for f in findings)
    (sample,) = read_back(tmp_path / "fo")
    truth = sorted(sample[pf.GROUND_TRUTH_FIELD].keypoints, key=lambda k: -k[pf.MISTAKENNESS])
    assert [k.coco_id for k in truth][0] == 21 and truth[0][pf.MISTAKENNESS] == max(f["score"] for f in findings)
    assert truth[0][pf.POINT_MISTAKENNESS][9] == truth[0][pf.MISTAKENNESS]
    assert sorted(truth[0][pf.FINDING_IDS]) == sorted(f["id"] for f in findings)
    assert [k[pf.MISTAKENNESS] for k in truth[1:]] == [0.0, 0.0]
