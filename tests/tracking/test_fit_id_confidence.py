"""tools/fit_id_confidence.py's truth: which tracked records continue their id's person, on hand-made scenes of two
people standing side by side, A at x 0-20 and B at x 30-50 (boxes 20 x 50, every frame)."""
from fit_id_confidence import labelled, records_over_next_person
from posecal.tracking.identity import FEATURES

A, B, OVER_BOTH, NOWHERE = [0, 0, 20, 50], [30, 0, 20, 50], [0, 0, 50, 50], [200, 0, 20, 50]


def _truth(frames: int) -> dict:
    return {"annotations": [{"image_id": f, "track_id": who, "bbox": box, "visible_fraction": 1.0}
                            for f in range(frames) for who, box in ((1, A), (2, B))]}


def _rows(boxes: list) -> list[dict]:
    """One id's records, one a frame, over `boxes`; each record's features are its frame number (none at birth)."""
    return [{"image_id": f, "row": f, "bbox": box, "track_id": 7, "pose_quality": 0.9,
             "features": None if f == 0 else [float(f)] * len(FEATURES)} for f, box in enumerate(boxes)]


def test_a_hand_off_through_a_box_over_two_people_is_labelled_at_that_box():
    """The id goes A, A, a box over both (IoU 0.4 with each: paired to nobody), B, B. The box over both holds all
    of B, the person the id is on next, so it is B's: the hand-off is labelled there, and B's records after it are
    right continuations."""
    rows = _rows([A, A, OVER_BOTH, B, B])
    assert records_over_next_person(rows, _truth(5), {0: 1, 1: 1, 3: 2, 4: 2}) == {2: 2}
    x, same, quality = labelled(rows, _truth(5))
    assert x[:, 0].tolist() == [1, 2, 3, 4] and same.tolist() == [1, 0, 1, 1] and quality.tolist() == [0.9] * 4


def test_an_id_that_passes_to_someone_behind_a_record_on_nobody_is_still_a_hand_off():
    """A, a false box far from both (nobody's, and it says nothing itself), then B: the first record on B is a
    hand-off from A, not the start of a new story."""
    x, same, _ = labelled(_rows([A, NOWHERE, B, B]), _truth(4))
    assert x[:, 0].tolist() == [2, 3] and same.tolist() == [0, 1]
