"""Other estimators' outputs as posecal's results entries (posecal/integrations/estimators.py): the numbers
land where COCO and `posecal calibrate` read them, from the objects each library returns."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from posecal.cli.main import main
from posecal.errors import PosecalInputError
from posecal.evaluation.results import load_results
from posecal.integrations.estimators import (MEDIAPIPE_TO_COCO, from_mediapipe, from_rtmlib, from_ultralytics,
                                             image_id_of, write_results)

from conftest import make_coco


def test_rtmlib_arrays_become_entries_with_the_body_keypoints_first():
    rng = np.random.default_rng(0)
    kp, sc = rng.uniform(0, 200, (2, 133, 2)), rng.uniform(0, 1, (2, 133))   # COCO-WholeBody
    entries = from_rtmlib(kp, sc, "imgs/000000397133.jpg", boxes=[[10, 20, 110, 220], [0, 0, 50, 80]])
    assert [e["image_id"] for e in entries] == [397133, 397133] and entries[0]["file_name"] == "000000397133.jpg"
    triples = np.reshape(entries[1]["keypoints"], (17, 3))
    np.testing.assert_allclose(triples[:, :2], kp[1, :17], atol=1e-3)
    np.testing.assert_allclose(triples[:, 2], sc[1, :17], atol=1e-3)
    assert entries[0]["bbox"] == [10, 20, 100, 200] and entries[0]["category_id"] == 1
    assert entries[0]["score"] == pytest.approx(sc[0, :17].mean(), abs=1e-4)
    one = from_rtmlib(kp[0, :17], sc[0, :17], "a.jpg", image_id=5)   # one person, no box: the keypoints' box
    lo, hi = kp[0, :17].min(0), kp[0, :17].max(0)
    np.testing.assert_allclose(one[0]["bbox"], [*lo, *(hi - lo)], atol=0.01)
    with pytest.raises(PosecalInputError, match="expected \\(N, K, 2\\)"):
        from_rtmlib(kp[:, :20], sc[:, :20], "a.jpg", image_id=1)


def _landmarks(n_people: int):
    """BlazePose's 33 landmarks per person, landmark i at (i / 100, i / 50) with visibility i / 40."""
    try:
        from mediapipe.tasks.python.components.containers.landmark import NormalizedLandmark as Landmark
    except ImportError:   # the same fields, as mediapipe's tasks API has them
        Landmark = lambda **f: SimpleNamespace(**f)  # noqa: E731
    return [[Landmark(x=i / 100 + p / 10, y=i / 50, z=0.0, visibility=i / 40, presence=1.0) for i in range(33)]
            for p in range(n_people)]


def test_mediapipe_landmarks_map_to_coco_keypoints_in_pixels():
    people = _landmarks(2)
    entries = from_mediapipe(people, (640, 480), "b.jpg", image_id=7)
    triples = np.reshape(entries[1]["keypoints"], (17, 3))
    idx = np.array(MEDIAPIPE_TO_COCO)
    np.testing.assert_allclose(triples[:, 0], (idx / 100 + 0.1) * 640, atol=1e-3)
    np.testing.assert_allclose(triples[:, 1], idx / 50 * 480, atol=1e-3)
    np.testing.assert_allclose(triples[:, 2], idx / 40, atol=1e-3)
    assert triples[5, 0] == pytest.approx((11 / 100 + 0.1) * 640)    # left shoulder is BlazePose's 11
    one = from_mediapipe(people[0], (640, 480), "b.jpg", image_id=7)   # one person's list
    legacy = from_mediapipe(SimpleNamespace(landmark=people[0]), (640, 480), "b.jpg", image_id=7)
    assert one == legacy == entries[:1]
    with pytest.raises(PosecalInputError, match="33 are needed"):
        from_mediapipe([people[0][:20]], (640, 480), "b.jpg", image_id=7)


def _ultralytics_result(path, data, xyxy, conf):
    """An ultralytics pose Results as posecal reads it; the real one where ultralytics is installed."""
    try:
        import torch
        from ultralytics.engine.results import Results
    except Exception:   # noqa: BLE001 - ultralytics missing or unimportable here: its attributes by hand
        return SimpleNamespace(path=path, keypoints=SimpleNamespace(data=np.asarray(data)),
                               boxes=SimpleNamespace(xyxy=np.asarray(xyxy), conf=np.asarray(conf)))
    boxes = torch.tensor(np.concatenate([xyxy, np.asarray(conf)[:, None], np.zeros((len(conf), 1))], 1)).float()
    return Results(np.zeros((480, 640, 3), np.uint8), path=path, names={0: "person"}, boxes=boxes,
                   keypoints=torch.tensor(data).float())


def test_ultralytics_results_become_entries_with_their_boxes():
    rng = np.random.default_rng(1)
    data = np.concatenate([rng.uniform(0, 400, (2, 17, 2)), rng.uniform(0, 1, (2, 17, 1))], -1)
    r = _ultralytics_result("/x/000000000785.jpg", data, np.array([[10., 20, 110, 220], [5, 5, 60, 90]]),
                            [0.9, 0.4])
    entries = from_ultralytics([r])
    assert len(entries) == 2 and entries[0]["image_id"] == 785 and entries[0]["file_name"] == "000000000785.jpg"
    np.testing.assert_allclose(np.reshape(entries[1]["keypoints"], (17, 3)), data[1], atol=2e-3)
    assert entries[0]["bbox"] == [10, 20, 100, 200] and entries[1]["score"] == pytest.approx(0.4, abs=1e-4)
    assert from_ultralytics(r) == entries
    with pytest.raises(PosecalInputError, match="without keypoints"):
        from_ultralytics(SimpleNamespace(path="a.jpg", keypoints=None))


def test_image_ids_by_name_or_digits_or_one_line():
    assert image_id_of("dir/pic.jpg", image_ids={"pic.jpg": 12}) == 12
    assert image_id_of("dir/000000000042.png") == 42
    with pytest.raises(PosecalInputError, match="no image id"):
        image_id_of("dir/pic.jpg")


CALIBRATED_R = 0.5


def test_converted_results_calibrate_end_to_end(tmp_path):
    """rtmlib-shaped arrays of a noisy 'estimator' -> results file -> calibrate fit/apply -> read back."""
    ann, _ = make_coco(tmp_path / "d", n_images=20, seed=3)
    coco = json.loads(ann.read_text())
    ids = {im["id"]: im["file_name"] for im in coco["images"]}
    rng = np.random.default_rng(0)
    entries = []
    for a in coco["annotations"]:
        k = np.asarray(a["keypoints"], float).reshape(17, 3)
        err = rng.uniform(0, 10, 17)
        xy = k[:, :2] + rng.normal(0, 1, (17, 2)) * err[:, None]
        score = np.clip(1 - err / 15 + np.where(k[:, 2] > 0, 0, -0.5), 0, 1)
        x, y, w, h = a["bbox"]
        entries += from_rtmlib(xy[None], score[None], ids[a["image_id"]], image_id=a["image_id"],
                               boxes=[[x, y, x + w, y + h]])
    res = write_results(entries, tmp_path / "r.json")
    assert len(load_results(res).entries) == len(entries)
    cal, out = tmp_path / "cal.json", tmp_path / "out.json"
    assert main(["calibrate", "fit", "--results", str(res), "--annotations", str(ann), "--out", str(cal)]) == 0
    assert main(["calibrate", "apply", "--calibrator", str(cal), "--results", str(res), "--out", str(out)]) == 0
    applied = json.loads(out.read_text())
    assert len(applied) == len(entries) and all(0 <= e["pose_quality"] <= 1 for e in applied)
    # the calibrated pose quality follows the true OKS of the noisy estimator's poses (fitted on these 20)
    from posecal.metrics.oks import oks

    truth = [np.asarray(a["keypoints"], float).reshape(17, 3) for a in coco["annotations"]]
    true_oks = np.array([oks(np.reshape(e["keypoints"], (17, 3))[:, :2], t[:, :2], t[:, 2], a["area"])
                         for e, t, a in zip(applied, truth, coco["annotations"])])
    quality = np.array([e["pose_quality"] for e in applied])
    assert np.corrcoef(quality, true_oks)[0, 1] > CALIBRATED_R and abs(quality.mean() - true_oks.mean()) < 0.1
    np.testing.assert_allclose(applied[0]["raw_keypoint_scores"], np.reshape(entries[0]["keypoints"], (17, 3))[:, 2])
