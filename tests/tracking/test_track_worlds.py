"""The tracking worlds (bench/lab/video_worlds.py, bench/lab/camera.py): each kind's generator on a tiny synthetic
scene with known geometry (a moving camera moves the truth exactly as its window moves; blur keeps shape and truth
and smooths; downscale and compression scale the truth; crowds of up to 10), the leave-one-world-out choice, and
one real tracking of a tiny moving-camera scene (with ../shared's person; skipped without it)."""
import json

import cv2
import numpy as np
import pytest

from bench.lab.camera import PanZoom, motion_blur, motion_blur_kernel, plan_pan_zoom, then
from bench.lab.moving_people import (SceneSpec, Sprite, Walk, apply_affine, compose_frame, compose_scene,
                                        soft_box_alpha, write_scene)
from bench.lab.video_worlds import DEGRADED, degraded, parse_kind, scaled_boxes, scene_plan
from bench.lab.world_choice import leave_one_world_out, spread

from test_track_ids import dot_colour, dotted_sprite

WORLD = np.full((300, 400, 3), 30, np.uint8)      # a world picture with a 3x3 white marker at (150, 200)
WORLD[199:202, 149:152] = 255


def test_moving_camera_moves_truth_as_the_window():
    sprite = dotted_sprite(radius=5)
    camera = PanZoom((400, 300), (200, 150), 5, pan=(0.2, 1.0), zoom=(1.0, 1.4), tilt=0.7)
    still = Walk(0, 0, 4, (200.0, 220.0), (200.0, 220.0), bob=0.0)     # a person standing still in the world
    boxes = []
    for t in range(5):
        view = camera.view(t)
        x0, y0, width = camera.window(t)
        np.testing.assert_allclose(apply_affine(view, [[x0, y0], [x0 + width, y0 + width * 0.75]]),
                                   [[0, 0], [200, 150]], atol=1e-9)    # the window's corners are the frame's
        frame, (seen,) = compose_frame(WORLD, [sprite], [still], t, view, (200, 150))
        _, (world,) = compose_frame(WORLD, [sprite], [still], t)
        assert frame.shape == (150, 200, 3)
        kp, kp_world = np.asarray(seen["keypoints"]), np.asarray(world["keypoints"])
        inside = kp[:, 2] > 0
        np.testing.assert_allclose(kp[inside, :2], apply_affine(view, kp_world[inside, :2]), atol=1e-9)
        x, y, w, h = world["bbox"]
        lo, hi = apply_affine(view, [[x, y], [x + w, y + h]])
        lo, hi = np.clip(lo, 0, [200, 150]), np.clip(hi, 0, [200, 150])
        np.testing.assert_allclose(seen["bbox"], [*lo, *(hi - lo)], atol=1e-9)
        assert seen["visible_fraction"] == pytest.approx(1.0, abs=0.01)
        for k in np.flatnonzero((kp[:, 2] == 2) & (np.arange(17) >= 5)):   # the body's dots are where the truth says
            px, py = np.rint(kp[k, :2]).astype(int)
            if 2 <= px < 198 and 2 <= py < 148:
                assert np.abs(frame[py, px].astype(int) - dot_colour(k)).max() <= 12, (t, k)
        mx, my = np.rint(apply_affine(view, [[150, 200]])[0]).astype(int)
        assert frame[my, mx].min() > 150                               # the background's marker moved alike
        boxes.append(seen["bbox"])
    assert boxes[0][0] - boxes[-1][0] > 50 and boxes[-1][3] < 0.8 * boxes[0][3]   # panned right, zoomed out


def test_pan_plans_are_slow_deterministic_and_stay_in_the_world():
    for seed in range(6):
        a = plan_pan_zoom((768, 432), 75, np.random.default_rng(seed))
        assert a == plan_pan_zoom((768, 432), 75, np.random.default_rng(seed))
        for t in range(75):
            x0, y0, width = a.window(t)
            assert x0 >= -1e-9 and y0 >= -1e-9 and x0 + width <= a.world_wh[0] + 1e-6
            assert y0 + width * 432 / 768 <= a.world_wh[1] + 1e-6 and 768 <= width <= 1.3 * 768 + 1e-6
        steps = np.diff([a.window(t)[0] for t in range(75)])
        assert np.abs(steps).max() < 10                                # a slow pan: under 10 px a frame
    A, B = np.array([[2.0, 0, 3], [0, 2, -1]]), np.array([[0.5, 0, 7], [0, 0.5, 2]])
    np.testing.assert_allclose(apply_affine(then(A, B), [[5, 6]]), apply_affine(A, apply_affine(B, [[5, 6]])))


def test_motion_blur_keeps_shape_and_place_and_smooths_along_its_direction():
    k = motion_blur_kernel(9.0, 30.0)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and k.sum() == pytest.approx(1.0, abs=1e-5)
    ys, xs = np.mgrid[:k.shape[0], :k.shape[1]] - k.shape[0] // 2
    assert (k * xs).sum() == pytest.approx(0, abs=1e-5) and (k * ys).sum() == pytest.approx(0, abs=1e-5)
    along = np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])
    d_along, d_across = xs * along[0] + ys * along[1], -xs * along[1] + ys * along[0]
    assert np.sqrt((k * d_along ** 2).sum()) > 2.5 and np.sqrt((k * d_across ** 2).sum()) < 0.5
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = motion_blur(frame, 9.0, 30.0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < 0.5 * np.abs(np.diff(frame.astype(float), axis=1)).mean()
    flat = np.full((40, 40, 3), 77, np.uint8)
    assert (motion_blur(flat, 12.0, 100.0) == 77).all()


def tiny_scene(folder, n_people=2, frames=4, seed=5, size=(320, 240)):
    bg = np.full((size[1], size[0], 3), 60, np.uint8)
    return write_scene(folder, "tiny", bg, [dotted_sprite()], SceneSpec(seed, n_people, frames))


@pytest.mark.parametrize("how", sorted(DEGRADED))
def test_degraded_copies_keep_their_truth_exact(tmp_path, how):
    video, truth = tiny_scene(tmp_path / "plain")
    out_video, out_truth = degraded(video, truth, tmp_path / how, *DEGRADED[how])
    f = DEGRADED[how].scale
    cap = cv2.VideoCapture(str(out_video))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == (round(240 * f), round(320 * f))
    gt, new = json.loads(truth.read_text()), json.loads(out_truth.read_text())
    assert len(gt["annotations"]) == len(new["annotations"]) > 0
    for a, b in zip(gt["annotations"], new["annotations"]):
        kp, kq = np.reshape(a["keypoints"], (-1, 3)), np.reshape(b["keypoints"], (-1, 3))
        lab = kp[:, 2] > 0
        np.testing.assert_allclose(kq[lab, :2], (kp[lab, :2] + 0.5) * f - 0.5, atol=2e-3)
        assert (kq[:, 2] == kp[:, 2]).all() and b["area"] == pytest.approx(a["area"] * f * f, abs=1e-2)
    if how == "blur":   # its streak drawn from the scene's seed: the same again
        again = degraded(video, truth, tmp_path / "again", *DEGRADED[how])[1]
        assert json.loads(again.read_text())["info"]["blur"] == new["info"]["blur"]
        assert 6.0 <= new["info"]["blur"]["length"] <= 12.0
    assert scaled_boxes(f"vtest_{how}", [(10.0, 20.0, 4.0, 8.0)])[0][2] == pytest.approx(4.0 * f)


def test_crowd_and_pan_kinds_are_planned_as_named():
    room = np.full((240, 320, 3), 60, np.uint8)
    sprites = [dotted_sprite()]
    for i in range(3):
        bg, plan = scene_plan("vtest_crowd", i, 30, room)
        assert plan["camera"] is None and 8 <= plan["spec"].n_people <= 10
        per_frame = [truth for _, _, truth in compose_scene(bg, sprites, plan["spec"])]
        ids = {p["track_id"] for truth in per_frame for p in truth}
        assert ids == set(range(1, plan["spec"].n_people + 1)) and max(len(t) for t in per_frame) >= 6
    bg, plan = scene_plan("intel_pan", 1, 30, room)
    assert bg.shape[:2] == (336, 448) and plan["camera"].size_wh == (320, 240)
    frames = list(compose_scene(bg, sprites, plan["spec"], plan["camera"]))
    assert all(frame.shape == (240, 320, 3) for _, frame, _ in frames)
    assert parse_kind("intel_pan_blur_jpeg") == ("intel_pan", ["blur", "jpeg"])
    assert parse_kind("intel_mirrored") == ("intel_mirrored", [])
    with pytest.raises(SystemExit):
        parse_kind("kitchen_half")


def test_leave_one_world_out_never_chooses_on_the_kind_or_its_copies():
    scores = {0.3: {"a": 0.9, "a_half": 0.9, "b": 0.5, "c": 0.6},
              0.2: {"a": 0.1, "a_half": 0.1, "b": 0.7, "c": 0.8}}
    judged = leave_one_world_out(scores, 0.3, group_of=lambda k: k.split("_")[0])
    assert judged["a"]["chosen"] == 0.2 and judged["a"]["chosen_on"] == ["b", "c"]
    assert judged["a"]["gain"] == pytest.approx(0.1 - 0.9)
    assert judged["b"]["chosen"] == 0.3 and judged["b"]["score"] == 0.5 and judged["b"]["gain"] == 0
    assert spread([1.0, 2.0, 6.0]) == {"mean": 3.0, "min": 1.0, "max": 6.0}


@pytest.mark.slow
def test_a_moving_camera_keeps_its_people_tracked(tmp_path, real_person):
    """posecal track's defaults on a tiny panning and zooming scene of two real people crossing (about 3 s): the
    people found in most of the frames they are well seen, and no more ids than people + 1."""
    pytest.importorskip("motmetrics")
    from bench.lab.mot import accumulate, summarize
    from posecal.tracking.job import TrackConfig
    from posecal.tracking.units import run_track

    path, box, keypoints = real_person
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    sprite = Sprite(image, soft_box_alpha(image.shape[1::-1], box), keypoints, box, "real")
    world = cv2.GaussianBlur(np.random.default_rng(1).integers(40, 200, (336, 448, 3), dtype=np.uint8), (0, 0), 4)
    camera = PanZoom((448, 336), (320, 240), 60, pan=(0.2, 0.8), zoom=(1.0, 1.2), tilt=0.8)
    video, truth = write_scene(tmp_path, "tiny", world, [sprite], SceneSpec(3, 2, 60), camera)
    out = tmp_path / "tracks.json"
    run_track(TrackConfig([str(video)], out=str(out), progress=False, threads=2), log=lambda m: None)
    row = summarize([accumulate("tiny", json.loads(truth.read_text()), json.loads(out.read_text()))])["OVERALL"]
    assert row["num_unique_objects"] == 2 and row["num_misses"] <= 0.3 * row["num_objects"]
    assert row["predicted_tracks"] <= 3 and row["idf1"] >= 0.6
