"""The tracker API (posecal.tracking.pose_tracker.PoseTracker): `posecal track` is I/O around it, so the API and
the command give the same people with the same ids on a clip; and the one opener/estimator every path shares."""
import dataclasses
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from posecal.cli.main import main
from posecal.inference.person_policy import VIDEO
from posecal.tracking.units import run_track
from posecal.tracking.pose_tracker import PoseTracker, TrackConfig

from conftest import write_tiny_model, write_walking_video


def frames_of(video) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(bgr)


def tracked_by_track_job(tmp_path, cfg: TrackConfig) -> list[dict]:
    """What `posecal track` writes for cfg (run_track is the command's job; the CLI only parses its options)."""
    out = tmp_path / "t.json"
    run_track(dataclasses.replace(cfg, out=str(out), progress=False), log=lambda m: None)
    return json.loads(out.read_text())


def assert_same_people(api_frames, cli_results):
    cli_by_frame: dict[int, list[dict]] = {}
    for r in cli_results:
        cli_by_frame.setdefault(r["image_id"], []).append(r)
    assert sum(len(p.people) for p in api_frames) == len(cli_results) > 0
    for k, picture in enumerate(api_frames):
        mine = sorted(picture.people, key=lambda p: p.track_id)
        theirs = sorted(cli_by_frame.get(k, []), key=lambda r: r["track_id"])
        assert [p.track_id for p in mine] == [r["track_id"] for r in theirs]
        for p, r in zip(mine, theirs):
            np.testing.assert_allclose(np.reshape(r["keypoints"], (17, 3))[:, :2], p.keypoints, atol=2e-3)
            assert r["pose_quality"] == pytest.approx(p.pose_quality, abs=1e-4)
            np.testing.assert_allclose(r["bbox"], p.box, atol=1e-3)
            assert p.to_dict()["track_id"] == r["track_id"]


@pytest.mark.slow
def test_tracker_api_gives_the_ids_and_poses_of_posecal_track(tmp_path):
    model = write_tiny_model(tmp_path / "tiny.pt")
    video = write_walking_video(tmp_path / "walk.avi", frames=6)
    # an untrained model's visibility and quality are noise: births are let through so that there are tracks
    cfg = TrackConfig([str(video)], model=str(model), backend="torch", detector="none", min_pose_quality=0.0,
                      policy=replace(VIDEO, birth_visible=0, birth_quality=0.0))
    tracker = PoseTracker(cfg, fps=10)
    api = [tracker(bgr) for bgr in frames_of(video)]
    assert all(p.track_id is not None for pic in api for p in pic.people)
    assert [pic.frame_index for pic in api] == list(range(6))
    assert_same_people(api, tracked_by_track_job(tmp_path, cfg))
    # reset(): a new video starts without tracks, and its ids go on after the last one
    last = max(p.track_id for pic in api for p in pic.people)
    tracker.reset()
    again = tracker(frames_of(video)[0])
    assert again.frame_index == 0 and min(p.track_id for p in again.people) > last


def test_tracker_api_refuses_a_bad_setting_by_its_name(tmp_path):
    from posecal.errors import PosecalInputError

    with pytest.raises(PosecalInputError, match="detect-every"):
        PoseTracker(model=str(write_tiny_model(tmp_path / "tiny.pt")), detect_every=0)
    with pytest.raises(TypeError):
        PoseTracker(no_such_setting=1)


@pytest.mark.slow
def test_eval_reads_an_onnx_file_named_in_any_case_and_writes_the_fields_predict_writes(tmp_path, tiny_coco):
    """One opener: `eval --model M.ONNX` and `m.onnx` both run; one estimator: an eval results entry carries
    every field `predict` writes for the same person and box, with the same values."""
    ann, images = tiny_coco
    model = write_tiny_model(tmp_path / "tiny.pt")
    lower = tmp_path / "m.onnx"
    assert main(["export", "--model", str(model), "--out", str(lower)]) == 0
    upper = tmp_path / "M.ONNX"
    upper.write_bytes(lower.read_bytes())
    results = {}
    for path in (lower, upper):
        out = tmp_path / f"eval_{path.name}"
        assert main(["eval", "--model", str(path), "--annotations", str(ann), "--images", str(images), "--out",
                     str(out), "--no-progress"]) == 0
        results[path.name] = json.loads((out / "results.json").read_text())
    assert results["m.onnx"] == results["M.ONNX"]
    entry = results["m.onnx"][0]
    data = json.loads(ann.read_text())
    ann0 = next(a for a in data["annotations"] if a["image_id"] == entry["image_id"]
                and np.allclose(a["bbox"], entry["bbox"], atol=0.01))
    image = next(i for i in data["images"] if i["id"] == entry["image_id"])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image["file_name"]: [ann0["bbox"]]}))
    out = tmp_path / "p.json"
    assert main(["predict", str(images / image["file_name"]), "--model", str(lower), "--boxes", str(boxes),
                 "--out", str(out), "--no-progress", "--min-pose-quality", "0"]) == 0
    person = json.loads(out.read_text())[0]
    fields = set(person) - {"score"}
    assert fields <= set(entry), fields - set(entry)
    assert entry["pose_source"] == person["pose_source"] == "detected"
    for key in ("keypoint_quality", "visibility", "visibility_probs", "pose_quality", "bbox", "box_score",
                "keypoint_radius", "in_frame"):
        if key in person:
            np.testing.assert_allclose(np.asarray(entry[key], float), np.asarray(person[key], float), atol=2e-3,
                                       err_msg=key)


@pytest.mark.slow
def test_eval_and_predict_write_the_same_in_frame_for_the_shipped_model(tmp_path, tiny_coco):
    """The shipped model's calibration fills in_frame and the radius; eval writes them as predict does."""
    ann, images = tiny_coco
    out = tmp_path / "eval"
    assert main(["eval", "--model", "accurate", "--backend", "torch", "--annotations", str(ann), "--images",
                 str(images), "--out", str(out), "--no-progress"]) == 0
    entry = json.loads((out / "results.json").read_text())[0]
    data = json.loads(ann.read_text())
    image = next(i for i in data["images"] if i["id"] == entry["image_id"])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image["file_name"]: [entry["bbox"]]}))
    pred = tmp_path / "p.json"
    assert main(["predict", str(images / image["file_name"]), "--model", "accurate", "--backend", "torch",
                 "--boxes", str(boxes), "--out", str(pred), "--no-progress", "--min-pose-quality", "0"]) == 0
    person = json.loads(pred.read_text())[0]
    assert len(entry["in_frame"]) == 17 and len(entry["keypoint_radius"]) == 17
    np.testing.assert_allclose(entry["in_frame"], person["in_frame"], atol=2e-3)
    np.testing.assert_allclose(entry["keypoint_quality"], person["keypoint_quality"], atol=2e-3)


def test_c_is_the_keypoint_quality_where_the_keypoint_is_there():
    """COCO's c in posecal's results: the keypoint quality where `visibility` calls the keypoint there, 0 where it
    calls it absent, so thresholding c leaves out every keypoint called absent (a hip below the picture whose
    quality is high) and no keypoint called there is worth less than its quality."""
    from posecal.inference.estimator import PersonPose
    from posecal.inference.scoring import present_and_right, visibility_classes

    kq, in_frame = np.full(17, 0.8), np.full(17, 0.95)
    probs = np.tile([0.1, 0.2, 0.7], (17, 1))
    probs[11] = [0.9, 0.05, 0.05]                                  # a hip below the picture: called absent
    in_frame[11] = 0.1
    probs[5], kq[5] = [0.6, 0.1, 0.3], 0.5                         # a shoulder the model cannot place: absent
    vis = visibility_classes(probs, 0.75, kq, in_frame)
    person = PersonPose(np.array([0, 0, 10, 20.0]), np.zeros((17, 2)), kq, kq, 0.7, vis, probs, in_frame=in_frame)
    c = np.reshape(person.to_dict()["keypoints"], (17, 3))[:, 2]
    assert c[0] == pytest.approx(0.8) and c[11] == 0 and c[5] == 0 and vis[11] == vis[5] == 0
    assert ((c > 0) == (vis > 0)).all()
    assert person.to_dict()["keypoint_quality"][11] == pytest.approx(0.8)    # the quality itself is unchanged
    np.testing.assert_allclose(present_and_right(kq), kq)                     # no visibility head: the quality


def test_a_tracked_box_on_another_persons_legs_is_not_reported():
    """PersonPolicy.without_tracked_parts: a small box mostly inside another person's (a track left on a walker's legs) is dropped;
    a person beside another, or as tall, is kept."""
    from posecal.inference.estimator import PersonPose
    from posecal.inference.person_policy import VIDEO

    def person(box):
        return PersonPose(np.asarray(box, float), np.zeros((17, 2)), np.ones(17), np.ones(17), 0.7)

    walker, legs = person([100, 100, 40, 100]), person([110, 150, 16, 37])
    beside, overlapping = person([150, 100, 40, 100]), person([105, 105, 40, 95])
    kept = VIDEO.without_tracked_parts([walker, legs, beside, overlapping])
    assert kept == [walker, beside, overlapping]
    assert VIDEO.without_tracked_parts([legs]) == [legs]          # alone, a small box is somebody


def test_a_tracked_pictures_id_confidence_is_nan_where_its_records_say_null_and_its_repr_is_one_line(tmp_path):
    """Picture.id_confidence of a tracked frame is an array whatever the frame: NaN for the poses that start their
    tracks (all of a first frame's), as their records' id_confidence is null; the next frame rates them. A
    picture that was not tracked has none. repr(PoseTracker) says in one line what tracks and where it stands."""
    video = write_walking_video(tmp_path / "walk.avi", frames=2)
    tracker = PoseTracker(model=str(write_tiny_model(tmp_path / "tiny.pt")), backend="torch", detector="none",
                          threads=1, min_pose_quality=0.0, policy=replace(VIDEO, birth_visible=0, birth_quality=0.0))
    assert repr(tracker) == (f"PoseTracker(model={str(tmp_path / 'tiny.pt')!r}, detector=none, between=flow, frames=0, "
                             f"live tracks=0, next_id=1, fps=25)")
    first, second = (tracker(bgr) for bgr in frames_of(video))
    assert len(first.people) == 1 and [r["id_confidence"] for r in first.to_dict()["people"]] == [None]
    assert first.id_confidence.shape == (1,) and np.isnan(first.id_confidence).all()
    assert 0 <= second.id_confidence[0] <= 1 and second.to_dict()["people"][0]["id_confidence"] is not None
    assert replace(first, tracked=False).id_confidence is None
    assert repr(tracker).endswith("frames=2, live tracks=1, next_id=2, fps=25)") and "\n" not in repr(tracker)
