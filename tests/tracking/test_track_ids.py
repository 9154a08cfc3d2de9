"""The identity benchmark's parts: the composer's truth is exact (keypoints land where their dots are drawn,
occlusion and frame edges by the truth rule) and the motmetrics scoring on hand-built tracks."""
import json

import numpy as np
import pytest

from bench.lab.moving_people import (SceneSpec, Sprite, Walk, apply_affine, compose_frame, compose_scene,
                                        person_transform, soft_box_alpha, truth_json, write_scene)

from conftest import COCO_CROPS, STANDING, needs_shared

pytest.importorskip("motmetrics")


def dot_colour(k: int) -> tuple[int, int, int]:
    return (20 + 12 * k, 250 - 12 * k, 40 if k % 2 else 200)


def dotted_sprite(size=(120, 160), radius=3) -> Sprite:
    """A grey 120x160 'person' whose 17 keypoints (the STANDING pose) are dots of 17 distinct colours; keypoint
    4 is unlabelled (v = 0), keypoint 3 occluded in the source (v = 1)."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    for k, (x, y) in enumerate(STANDING):
        cv2.circle(img, (int(x), int(y)), radius, dot_colour(k), -1)
    vis = np.full(17, 2.0)
    vis[3], vis[4] = 1, 0
    kp = np.c_[STANDING, vis]
    kp[4, :2] = 0
    bbox = np.array([30.0, 15.0, 60.0, 145.0])
    return Sprite(img, soft_box_alpha((w, h), bbox), kp, bbox, "dots")


def test_keypoints_land_on_their_dots():
    sprite = dotted_sprite()
    bg = np.full((720, 960, 3), 10, np.uint8)
    walk = Walk(0, 0, 9, (120.0, 500.0), (840.0, 660.0), bend=80.0, bob=2.0, bob_period=6.0)
    for t in (0, 4, 9):
        frame, truth = compose_frame(bg, [sprite], [walk], t)
        (p,) = truth
        A = person_transform(sprite, walk, t, bg.shape[0])
        assert A[0, 0] == A[1, 1] > 1.0 and A[0, 1] == A[1, 0] == 0    # scale + translation, enlarged
        kp = np.asarray(p["keypoints"])
        np.testing.assert_allclose(kp[:, :2][kp[:, 2] > 0], apply_affine(A, STANDING)[kp[:, 2] > 0])
        assert kp[4].tolist() == [0, 0, 0] and kp[3, 2] == 1 and (kp[[0, 1, 2] + list(range(5, 17)), 2] == 2).all()
        for k in np.flatnonzero(kp[:, 2] > 0):
            x, y = np.rint(kp[k, :2]).astype(int)
            assert np.abs(frame[y, x].astype(int) - dot_colour(k)).max() <= 3, (t, k)
        foot = walk.feet(t)
        x, y, w, h = p["bbox"]
        assert x + w / 2 == pytest.approx(foot[0]) and y + h == pytest.approx(foot[1])
        assert p["visible_fraction"] == pytest.approx(1.0, abs=0.01) and p["track_id"] == 1


def test_nearer_person_occludes_and_frame_edge_removes():
    sprite = dotted_sprite()
    bg = np.full((720, 960, 3), 10, np.uint8)
    far = Walk(0, 0, 10, (480.0, 500.0), (480.0, 500.0), bob=0.0)          # standing still, feet higher: farther
    near = Walk(0, 0, 10, (500.0, 600.0), (500.0, 600.0), bob=0.0)         # in front of them, drawn on top
    frame, truth = compose_frame(bg, [sprite], [far, near], 0)
    by_id = {p["track_id"]: p for p in truth}
    assert by_id[1]["depth"] == 0 and by_id[2]["depth"] == 1
    kp_far, kp_near = np.asarray(by_id[1]["keypoints"]), np.asarray(by_id[2]["keypoints"])
    assert (kp_near[:, 2] == np.r_[2, 2, 2, 1, 0, [2] * 12]).all()         # the nearer one keeps its flags
    hidden = kp_far[:, 2] == 1
    assert hidden.sum() >= 10 and by_id[1]["visible_fraction"] < 0.5 < by_id[2]["visible_fraction"]
    for k in np.flatnonzero(hidden & (np.arange(17) != 3)):               # pixels show the nearer person
        x, y = np.rint(kp_far[k, :2]).astype(int)
        assert np.abs(frame[y, x].astype(int) - dot_colour(k)).max() > 3
    edge = Walk(0, 0, 10, (4.0, 600.0), (4.0, 600.0), bob=0.0)             # half out of the frame on the left
    _, (p,) = compose_frame(bg, [sprite], [edge], 0)
    kp = np.asarray(p["keypoints"])
    left = apply_affine(person_transform(sprite, edge, 0, 720), STANDING)[:, 0] < 0
    assert left.any() and (kp[left] == 0).all() and (kp[~left & (np.arange(17) != 4), 2] > 0).all()
    assert p["bbox"][0] == 0 and 0.3 < p["visible_fraction"] < 0.7


def test_scene_is_deterministic_and_writes_truth(tmp_path):
    sprites = [dotted_sprite(), dotted_sprite(radius=5)]
    bg = np.full((240, 320, 3), 60, np.uint8)
    spec = SceneSpec(seed=3, n_people=3, n_frames=6)
    a = [(f.copy(), t) for _, f, t in compose_scene(bg, sprites, spec)]
    b = [(f.copy(), t) for _, f, t in compose_scene(bg, sprites, spec)]
    assert all((fa == fb).all() for (fa, _), (fb, _) in zip(a, b))
    video, truth = write_scene(tmp_path, "s", bg, sprites, spec)
    data = json.loads(truth.read_text())
    assert video.exists() and [im["file_name"] for im in data["images"]] == [f"s.avi#{t}" for t in range(6)]
    assert {a["track_id"] for a in data["annotations"]} <= {1, 2, 3}
    assert data == json.loads(json.dumps(truth_json("s.avi", (320, 240), [t for _, t in a], data["info"])))


@needs_shared
def test_real_sprites_load():
    from bench.lab.moving_people import load_sprites

    sprites = load_sprites(COCO_CROPS / "annotations" / "val.json", COCO_CROPS / "images")
    assert len(sprites) >= 20
    assert all(s.bbox[3] >= 150 and (s.keypoints[:, 2] > 0).sum() >= 12 for s in sprites)


# --- scoring -----------------------------------------------------------------------------------------------

def _truth(n_frames=10):
    anns = []
    for t in range(n_frames):
        for tid, x0 in ((1, 0.0), (2, 200.0)):
            kp = np.c_[STANDING + [x0 + 5 * t, 0], np.full(17, 2)]
            anns.append({"image_id": t, "track_id": tid, "bbox": [x0 + 5 * t + 30, 15, 60, 145],
                         "keypoints": kp.reshape(-1).tolist()})
    return {"images": [{"id": t} for t in range(n_frames)], "annotations": anns}


def _results(truth, rename=None, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for a in truth["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, noise, (17, 2)) if noise else 0
        tid = (rename or (lambda t, i: i))(a["image_id"], a["track_id"])
        out.append({"image_id": a["image_id"], "track_id": tid, "bbox": a["bbox"], "keypoints": kp.reshape(-1).tolist()})
    return out


def score_tracks(truth: dict, results: list[dict], **kw) -> dict:
    """One scene's summary row (bench.lab.mot.summarize)."""
    from bench.lab.mot import accumulate, summarize

    return summarize([accumulate("scene", truth, results, **kw)])["scene"]


def test_perfect_tracks_score_perfectly():
    truth = _truth()
    row = score_tracks(truth, _results(truth))
    assert row["idf1"] == 1 and row["mota"] == 1 and row["num_switches"] == 0
    assert row["keypoint_error"] == 0 and row["jitter"] == 0 and row["predicted_tracks"] == 2


def test_one_id_swap_is_one_switch_and_lowers_idf1():
    truth = _truth()
    row = score_tracks(truth, _results(truth, rename=lambda t, i: 3 if (i == 1 and t >= 5) else i))
    assert row["num_switches"] == 1 and row["switches_per_100_frames"] == pytest.approx(10.0)
    assert row["idf1"] == pytest.approx(15 / 20) and row["mota"] == pytest.approx(1 - 1 / 20)
    swapped = score_tracks(truth, _results(truth, rename=lambda t, i: 3 - i if t >= 5 else i))
    assert swapped["num_switches"] == 2 and swapped["idf1"] == pytest.approx(0.5)


def test_jitter_and_keypoint_error_measure_noise():
    truth = _truth(30)
    row = score_tracks(truth, _results(truth, noise=2.0))
    # |e[t+1] - 2 e[t] + e[t-1]| of iid N(0, 2^2) per axis: sqrt(6) * 2 per axis, ~ 2 * sqrt(6) * 1.2533 in 2D
    assert row["jitter"] == pytest.approx(2 * np.sqrt(6) * 1.2533 / 145, rel=0.15)
    assert row["keypoint_error"] == pytest.approx(2 * 1.2533 / 145, rel=0.15)


def test_barely_visible_truth_is_neither_missed_nor_a_false_positive():
    truth = _truth()
    for a in truth["annotations"]:
        a["visible_fraction"] = 0.1 if a["track_id"] == 2 else 0.9
    row = score_tracks(truth, _results(truth))
    assert row["num_objects"] == 10 and row["num_false_positives"] == 0 and row["idf1"] == 1
    row = score_tracks(truth, _results(truth), min_visible=0.0)
    assert row["num_objects"] == 20


def _walk_behind(hidden_frames: int, n_frames: int = 40):
    """Person 2 goes behind person 1 (nearer, depth 1) from frame 10 for `hidden_frames` frames."""
    truth = _truth(n_frames)
    for a in truth["annotations"]:
        behind = a["track_id"] == 2 and 10 <= a["image_id"] < 10 + hidden_frames
        a["depth"] = 1 if a["track_id"] == 1 else 0
        a["visible_fraction"] = 0.05 if behind else 1.0
        if behind:                                   # inside person 1's box
            a["bbox"] = [a["bbox"][0] - 200 + 5, 20, 50, 135]
    return truth


def test_a_person_who_walks_behind_another_keeps_or_loses_their_id():
    truth = _walk_behind(8)
    row = score_tracks(truth, _results(truth))
    assert row["occlusions"] == 1 and row["occlusions_kept"] == 1
    row = score_tracks(truth, _results(truth, rename=lambda t, i: 7 if (i == 2 and t >= 18) else i))
    assert row["occlusions"] == 1 and row["occlusions_kept"] == 0        # a new id when they came out
    late = [r for r in _results(truth) if not (r["track_id"] == 2 and r["image_id"] in (18, 19))]
    assert score_tracks(truth, late)["occlusions_kept"] == 1             # found again two frames later: kept
    lost = [r for r in _results(truth) if not (r["track_id"] == 2 and r["image_id"] >= 18)]
    assert score_tracks(truth, lost)["occlusions_kept"] == 0             # never found again: not kept
    assert score_tracks(_walk_behind(20), _results(_walk_behind(20)))["occlusions"] == 0   # over a second
    from bench.lab.mot import occlusions_kept

    assert occlusions_kept(_walk_behind(8), _events(_walk_behind(8)), max_hidden=5) == []


def _events(truth):
    from bench.lab.mot import accumulate

    return accumulate("scene", truth, _results(truth)).acc.mot_events


def test_a_track_on_a_background_person_is_an_ignored_box_not_a_false_positive():
    """bench/track_ids.py: the real person baked into the tuning background has no truth track; a track on them
    is neither found nor false, while a track elsewhere still is a false positive."""
    from bench.track_ids import with_background_people

    truth = _truth()
    results = _results(truth)
    standing = [700.0, 300.0, 14.0, 45.0]
    on_them = [{"image_id": t, "track_id": 9, "bbox": standing, "keypoints": [0.0] * 51} for t in range(10)]
    assert score_tracks(truth, results + on_them)["num_false_positives"] == 10
    ignored = with_background_people(truth, (tuple(standing),))
    row = score_tracks(ignored, results + on_them)
    assert row["num_false_positives"] == 0 and row["idf1"] == 1 and row["num_unique_objects"] == 2
    elsewhere = [{**r, "bbox": [400.0, 300.0, 14.0, 45.0]} for r in on_them]
    assert score_tracks(ignored, results + elsewhere)["num_false_positives"] == 10
