"""Issue 53: a video map ships for a pose source only where it beats no map on every kind of world it was not
fitted on (tools/video_choice.py); maps are shrunk towards the identity where data is thin."""
import numpy as np

from posecal.calibration.maps import IsotonicMap
from posecal.calibration.video import VideoCalibration, fit_source_maps, toward_identity
from video_choice import choose_video_calibration, keep_judged, trust_eces

from conftest import offset_pairs


def test_a_map_worse_than_none_on_a_held_out_world_is_refused():
    """Two rooms where the records say 0.9 and the keypoints sit 6 px off (true OPKS about 0.2 to 0.9 by
    type: over-confident), and a third where they sit 1 px off (true OPKS 0.95-1: the 0.9 is about right). A map
    fitted with the two rooms pulls 0.9 down, which is worse than no map in the third: refused, the source keeps
    its values."""
    worlds = {"room_a": offset_pairs(120, 6.0, 0.9, seed=1), "room_b": offset_pairs(120, 6.0, 0.9, seed=2),
              "room_c": offset_pairs(120, 1.0, 0.9, seed=3)}
    cal = choose_video_calibration(worlds)
    verdict = cal.fit_info["judgement"]["detected"]
    assert cal.by_source == {} and not verdict["ships"]
    by_world = {w["world"]: w for w in verdict["worlds"]}
    assert set(by_world) == {"room_a", "room_b", "room_c"}
    c = by_world["room_c"]
    assert not c["better"] and c["keypoint_ece"] > c["keypoint_ece_none"] and c["pose_ece"] > c["pose_ece_none"]
    assert by_world["room_a"]["better"]          # where the rooms agree, the map did help
    assert "room_c" in verdict["why"]
    # refused: tracked records go through unchanged
    record = worlds["room_c"][0][1]
    assert VideoCalibration.from_dict(cal.to_dict()).apply_record(record) is record



def test_a_fitted_map_worse_than_none_on_a_world_it_never_saw_is_dropped():
    """keep_judged: a model file's maps, judged as they are on other worlds; the source whose map loses anywhere
    is dropped, another source whose map wins everywhere keeps it."""
    fitted_in = offset_pairs(200, 6.0, 0.9, seed=1) + offset_pairs(200, 6.0, 0.9, source="carried", seed=2)
    split = {s: [p for p in fitted_in if p[1]["pose_source"] == s] for s in ("detected", "carried")}
    cal = VideoCalibration({s: fit_source_maps(pairs) for s, pairs in split.items()}, {"source": "room a"})
    others = {"room_b": offset_pairs(100, 6.0, 0.9, seed=3) + offset_pairs(100, 6.0, 0.9, source="carried", seed=4),
              "room_c": offset_pairs(100, 1.0, 0.9, seed=5) + offset_pairs(100, 6.0, 0.9, source="carried", seed=6)}
    judged = keep_judged(cal, others, "fixture rooms b and c")
    assert set(judged.by_source) == {"carried"} and judged.by_source["carried"] is cal.by_source["carried"]
    verdicts = judged.fit_info["judged_as_fitted"]["judgement"]
    assert not verdicts["detected"]["ships"] and verdicts["detected"]["why"] == "worse than no map on room_c"
    assert judged.fit_info["source"] == "room a"                 # the calibration's own record is kept
    assert keep_judged(cal, {"room_b": others["room_b"]}).by_source == {}   # one world judges nothing

def test_a_map_that_beats_none_on_every_held_out_world_ships():
    worlds = {f"room_{i}": offset_pairs(120, 6.0, 0.9, seed=i) for i in range(3)}
    cal = choose_video_calibration(worlds, source="fixture")
    assert set(cal.by_source) == {"detected"} and cal.fit_info["judgement"]["detected"]["ships"]
    assert all(w["better"] for w in cal.fit_info["judgement"]["detected"]["worlds"])
    # the shipped map, fitted on all three, brings each world's ECE below no map's
    for pairs in worlds.values():
        kp, pose = trust_eces(pairs, cal.by_source["detected"])
        kp_none, pose_none = trust_eces(pairs)
        assert kp < kp_none / 2 and pose < pose_none / 2
    # sources never seen, or seen in fewer worlds than it takes to judge, get no map
    assert cal.fit_info["judgement"]["carried"]["pairs"] == 0 and not cal.fit_info["judgement"]["carried"]["ships"]


def test_one_world_is_not_enough_to_ship():
    cal = choose_video_calibration({"room": offset_pairs(200, 6.0, 0.9)})
    assert cal.by_source == {} and "judged on 0 world kinds" in cal.fit_info["judgement"]["detected"]["why"]


def test_thin_data_shrinks_the_map_towards_the_identity():
    m = IsotonicMap(np.array([0.2, 0.8]), np.array([0.1, 0.3]))
    assert np.allclose(toward_identity(m, 0, 200)(np.linspace(0, 1, 11)), np.linspace(0, 1, 11))
    half = toward_identity(m, 200, 200)
    x = np.array([0.0, 0.2, 0.5, 0.8, 1.0])
    assert np.allclose(half(x), 0.5 * m(x) + 0.5 * x)
    assert np.allclose(toward_identity(m, 10, 0)(x), m(x))
    # fitted on few poses, a map moves the records' 0.9 less far than fitted on many
    few, many = fit_source_maps(offset_pairs(30, 6.0, 0.9)), fit_source_maps(offset_pairs(600, 6.0, 0.9))
    assert many.pose_map(0.9) < few.pose_map(0.9) < 0.9


def test_the_conditions_bench_prints_no_map_beside_the_shipped_map(monkeypatch):
    """bench/trust_conditions.py's video rows: `records as written` (through the model's video calibration) and
    `no map`, each ECE with its floor, per world kind; tracking stubbed by fixture pairs."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("trust_conditions", ROOT / "bench" / "trust_conditions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    worlds = {"vtest": offset_pairs(60, 6.0, 0.9, seed=1), "intel": offset_pairs(60, 6.0, 0.9, seed=2),
              "intel_mirrored": offset_pairs(60, 1.0, 0.9, seed=3)}
    monkeypatch.setattr(bench, "model_without_video_map", lambda model, work: model)
    monkeypatch.setattr(bench, "world_scenes", lambda *a: None)
    monkeypatch.setattr(bench, "tracked_pairs", lambda *a: worlds)
    video = VideoCalibration({"detected": fit_source_maps(worlds["vtest"], shrink=0)}, {})
    rows = bench.video_rows("m.pt", video, None, [0], [0, 1], 30, 1)
    assert {"video", "video_detected", "video_other_background", "video_intel", "video_intel_mirrored"} <= set(rows)
    for name, by_cal in rows.items():
        assert set(by_cal) == {"records as written", "no map"}
        assert all("floor_p90" in figs["against_floors"]["keypoint"] for figs in by_cal.values())
    mirrored = rows["video_intel_mirrored"]
    assert mirrored["records as written"]["keypoint_ece"] > mirrored["no map"]["keypoint_ece"]   # map hurts there
    vt = rows["video"]
    assert vt["records as written"]["keypoint_ece"] < vt["no map"]["keypoint_ece"]               # fitted there
    printed = bench.floors_table(rows)
    assert printed.count("no map") == len(rows) and printed.count("records as written") == len(rows)


def test_a_rooms_degraded_copies_do_not_vouch_for_it():
    """With families, a held-out kind's whole room leaves the fit: room_c's copy (room_c_half) cannot carry its
    offset into the map judged on room_c, so the map fitted on the other room alone is refused there; without
    families, the copy makes the same map look fine."""
    worlds = {"a": offset_pairs(120, 6.0, 0.9, seed=1), "a_half": offset_pairs(120, 6.0, 0.9, seed=2),
              "c": offset_pairs(120, 1.0, 0.9, seed=3), "c_half": offset_pairs(120, 1.0, 0.9, seed=4)}
    rooms = {w: w.split("_")[0] for w in worlds}
    strict = choose_video_calibration(worlds, family=rooms)
    assert strict.by_source == {} and strict.fit_info["families"] == rooms
    assert not {w["world"]: w for w in strict.fit_info["judgement"]["detected"]["worlds"]}["c"]["better"]
    loose = {w["world"]: w for w in choose_video_calibration(worlds).fit_info["judgement"]["detected"]["worlds"]}
    assert loose["c"]["keypoint_ece"] < {w["world"]: w for w in strict.fit_info["judgement"]["detected"]["worlds"]
                                         }["c"]["keypoint_ece"]
