"""bench/identity_truth.py on a tiny hand-made truth: two people A and B walking apart, id 1 on A then handed to B at
frame 5, id 2 on B then on nobody, id 3 taking A over at frame 5. Scores are checked against values worked out by
hand, on the truth's own run (people by segments) and on a run with other ids and slightly other boxes (people by
box IoU); the shipped vtest truth loads and agrees with itself."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.identity_truth import (VTEST_TRUTH, handoffs_in, load_truth, score, switches_in)
from posecal.errors import PosecalInputError

pytest.importorskip("motmetrics")

REPO = Path(__file__).resolve().parents[2]


def box_of(person: str, frame: int) -> list[float]:
    """A walks right from x = 10, B from x = 200: 20 x 60 boxes 2 px further each frame."""
    return [(10.0 if person == "A" else 200.0) + 2 * frame, 50.0, 20.0, 60.0]


def tiny_truth() -> dict:
    return {"clip": "tiny", "people": {"A": "first walker", "B": "second walker"},
            "segments": [
                {"track_id": 1, "person": "A", "frames": [0, 4], "samples": [[0, box_of("A", 0)], [4, box_of("A", 4)]]},
                {"track_id": 1, "person": "B", "frames": [5, 9], "samples": [[5, box_of("B", 5)], [9, box_of("B", 9)]]},
                {"track_id": 2, "person": "B", "frames": [0, 3], "samples": [[0, box_of("B", 0)], [3, box_of("B", 3)]]},
                {"track_id": 2, "person": None, "frames": [4, 4], "samples": []},
                {"track_id": 3, "person": "A", "frames": [5, 9], "samples": [[5, box_of("A", 5)], [9, box_of("A", 9)]]}],
            "handoffs": [{"track_id": 1, "frame": 5, "from": "A", "to": "B"}],
            "switches": [{"person": "A", "frame": 5, "from": 1, "to": 3}, {"person": "B", "frame": 5, "from": 2, "to": 1}]}


def tiny_run(ids=(1, 2, 3), shift: float = 0.0) -> list[dict]:
    """The tracker's records: id 1 on A (0-4) then B (5-9), id 2 on B (0-3) then on empty ground (4), id 3 on A
    (5-9); id_confidence 0.9 for every continuation but 0.4 (id 1, frame 2, right) and 0.2 (the hand-off)."""
    one, two, three = ids
    out = []
    for f in range(10):
        out.append({"image_id": f, "track_id": one, "bbox": box_of("A" if f < 5 else "B", f),
                    "id_confidence": None if f == 0 else {2: 0.4, 5: 0.2}.get(f, 0.9)})
        if f < 4:
            out.append({"image_id": f, "track_id": two, "bbox": box_of("B", f), "id_confidence": None if f == 0 else 0.9})
        elif f == 4:
            out.append({"image_id": f, "track_id": two, "bbox": [500.0, 50.0, 20.0, 60.0], "id_confidence": 0.3})
        else:
            out.append({"image_id": f, "track_id": three, "bbox": box_of("A", f),
                        "id_confidence": None if f == 5 else 0.9})
    for r in out:
        r["bbox"] = [r["bbox"][0] + shift, *r["bbox"][1:]]
    return out


def test_handoffs_and_switches_are_read_off_the_segments():
    truth = tiny_truth()
    assert handoffs_in(truth) == [{"track_id": 1, "frame": 5, "from": "A", "to": "B"}]
    assert switches_in(truth) == [{"person": "B", "frame": 5, "from": 2, "to": 1},
                                  {"person": "A", "frame": 5, "from": 1, "to": 3}]


def test_scores_on_the_truths_own_run_match_hand_computed_values():
    s = score(tiny_run(), tiny_truth())
    assert s["match"] == "segments"
    assert (s["records"], s["on_a_person"], s["on_nobody"], s["unlabelled"]) == (20, 19, 1, 0)
    # pairs (id, person): (1, A) 5, (1, B) 5, (2, B) 4, (3, A) 5; best one to one: A-3 + B-1 = 10 of 19
    assert (s["idtp"], s["idfp"], s["idfn"]) == (10, 9, 9)
    assert s["idf1"] == pytest.approx(10 / 19)
    assert [(h["track_id"], h["frame"], h["from"], h["to"], h["id_confidence"]) for h in s["handoffs"]] == \
        [(1, 5, "A", "B", 0.2)]
    # rated: id 1 frames 1-9, id 2 frames 1-3 (its frame 4 is on nobody: left out), id 3 frames 6-9: 15 right
    assert (s["rated"], s["right_continuations"], s["right_below_half"]) == (16, 15, 1)
    # ECE, 15 bins: fourteen at 0.9 all right (0.1 each), 0.4 right (0.6), 0.2 a hand-off (0.2): 2.2 / 16
    assert s["ece"] == pytest.approx(2.2 / 16)
    assert [(r["frame"], r["same"]) for r in s["below_half"]] == [(2, True), (4, None), (5, False)]


def test_another_runs_ids_are_matched_back_by_the_sampled_boxes():
    s = score(tiny_run(ids=(7, 8, 9), shift=3.0), tiny_truth())
    assert s["match"] == "boxes"
    # the box on empty ground pairs with nobody's box: unlabelled rather than on nobody; the rest as on the own run
    assert (s["on_a_person"], s["on_nobody"], s["unlabelled"]) == (19, 0, 1)
    assert (s["idtp"], s["idfp"], s["idfn"]) == (10, 9, 9)
    assert [(h["track_id"], h["frame"], h["from"], h["to"]) for h in s["handoffs"]] == [(7, 5, "A", "B")]
    assert s["ece"] == pytest.approx(2.2 / 16)


def test_a_truth_whose_listed_handoffs_its_segments_do_not_imply_is_refused(tmp_path):
    truth = tiny_truth()
    truth["handoffs"] = [{"track_id": 1, "frame": 6, "from": "A", "to": "B"}]
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    with pytest.raises(PosecalInputError, match="truth.json: 'handoffs' lists"):
        load_truth(path)
    truth = tiny_truth()
    truth["segments"][1]["frames"] = [4, 9]                       # id 1 on A and on B at frame 4
    path.write_text(json.dumps(truth))
    with pytest.raises(PosecalInputError, match="track 1 has overlapping segments"):
        load_truth(path)


def test_the_script_scores_a_run_end_to_end(tmp_path):
    (tmp_path / "truth.json").write_text(json.dumps(tiny_truth()))
    (tmp_path / "run.json").write_text(json.dumps(tiny_run()))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "identity_truth.py"), str(tmp_path / "run.json"),
                           "--truth", str(tmp_path / "truth.json"), "--json", str(tmp_path / "scores.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "hand-off: id 1 at frame 5, A -> B: id_confidence 0.200" in done.stdout
    assert json.loads((tmp_path / "scores.json").read_text())["idf1"] == pytest.approx(10 / 19)
    (tmp_path / "run.json").write_text("{}")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "identity_truth.py"), str(tmp_path / "run.json"),
                           "--truth", str(tmp_path / "truth.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "run.json: not `posecal track --out X.json` results" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_vtest_truth_agrees_with_itself():
    truth = load_truth(VTEST_TRUTH)          # its hand-offs and switches are the ones its segments imply
    assert truth["clip"] == "vtest_pedestrians_20s.avi"
    for s in truth["segments"]:
        a, b = s["frames"]
        assert all(a <= f <= b for f, _ in s["samples"])
        assert (s["person"] is None) == (not s["samples"])
    for person, spans in truth["visible"].items():
        assert person in truth["people"] and all(0 <= a <= b <= 199 for a, b in spans)
