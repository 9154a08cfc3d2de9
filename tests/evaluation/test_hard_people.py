"""Issue 62's measuring helpers against known geometry: neighbours mapped into a crop of a drawn photograph
(posecal.data.neighbours), where a wrong keypoint lands (own joint, neighbour, elsewhere) and the photograph's
edge read from a crop's black border (bench/hard_people.py)."""
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecal.data.neighbours import by_photo, keypoints_in_crop, neighbours_in_crop, with_neighbours
from posecal.data.transforms import invert_affine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hp():
    path = REPO / "bench/hard_people.py"
    spec = importlib.util.spec_from_file_location("script_bench_hard_people", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def crop_ann(ann_id: int, photo_kp: list, s: float, tx: float, ty: float, photo_area: float) -> dict:
    """A crop annotation as the data set writes it: keypoints and area mapped into the crop by [[s,0,tx],[0,s,ty]]."""
    kp = np.zeros((17, 3))
    for j, (x, y, v) in photo_kp:
        kp[j] = (s * x + tx, s * y + ty, v)
    return {"id": ann_id, "orig_image_id": 7, "keypoints": kp.reshape(-1).tolist(), "area": photo_area * s * s,
            "crop_transform": [[s, 0.0, tx], [0.0, s, ty]]}


def test_neighbour_keypoints_land_where_the_crop_shows_them():
    # a drawn photograph 160 x 120: person A's nose at (40, 50), person B's nose at (100, 60) and left wrist at
    # (120, 90), each a bright dot of its own colour
    photo = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(photo, (100, 60), 2, (0, 0, 255), -1)
    cv2.circle(photo, (120, 90), 2, (0, 255, 0), -1)
    a = crop_ann(1, [(0, (40, 50, 2))], s=0.5, tx=10.0, ty=-5.0, photo_area=400.0)
    b = crop_ann(2, [(0, (100, 60, 2)), (9, (120, 90, 1))], s=1.0, tx=-40.0, ty=-20.0, photo_area=900.0)
    # B's own crop: nose at (60, 40), wrist at (80, 70)
    assert np.reshape(b["keypoints"], (17, 3))[0].tolist() == [60, 40, 2]
    kp, area = neighbours_in_crop(a, [a, b])      # A itself is left out
    assert kp.shape == (1, 17, 3) and area.shape == (1,)
    # hand-computed: A's crop = 0.5 * photo + (10, -5)
    np.testing.assert_allclose(kp[0, 0], [60.0, 25.0, 2])
    np.testing.assert_allclose(kp[0, 9], [70.0, 40.0, 1])
    assert (kp[0, [1, 2, 10, 16]] == 0).all()        # unlabelled stays 0, 0, 0
    assert area[0] == pytest.approx(900.0 * 0.25)    # B's area in the photograph, times A's scale squared
    # and the crop of the photograph warped with A's matrix shows B's dots there
    crop = cv2.warpAffine(photo, np.asarray(a["crop_transform"]), (80, 60))
    for (x, y, _), channel in ((kp[0, 0], 2), (kp[0, 9], 1)):
        patch = crop[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2, channel]
        assert patch.max() > 100
    # the other way round: A's nose in B's crop is (40 - 40, 50 - 20)
    kp_ab, area_ab = keypoints_in_crop(b, a)
    np.testing.assert_allclose(kp_ab[0], [0.0, 30.0, 2])
    assert area_ab == pytest.approx(400.0)
    np.testing.assert_allclose(invert_affine(np.array([[0.5, 0, 10], [0, 0.5, -5]])), [[2, 0, -20], [0, 2, 10]])
    assert sorted(by_photo([a, b, {**a, "id": 3, "orig_image_id": 8}])) == [7, 8]


def test_a_crop_set_with_neighbours_holds_every_person_each_crop_shows():
    """with_neighbours: each crop gets its photograph's other people as annotations after its own (marked
    neighbour_of), keypoints mapped as keypoints_in_crop maps them and the box from the photograph's box."""
    a = crop_ann(1, [(0, (40, 50, 2))], s=0.5, tx=10.0, ty=-5.0, photo_area=400.0) | {"image_id": 11,
                                                                                       "orig_bbox": [30, 40, 20, 30]}
    b = crop_ann(2, [(0, (100, 60, 2)), (9, (120, 90, 1))], s=1.0, tx=-40.0, ty=-20.0, photo_area=900.0) | {
        "image_id": 12, "orig_bbox": [90, 50, 40, 50]}
    alone = crop_ann(3, [(0, (10, 10, 2))], s=1.0, tx=0.0, ty=0.0, photo_area=100.0) | {
        "image_id": 13, "orig_image_id": 8, "orig_bbox": [0, 0, 20, 20]}
    out = with_neighbours({"images": [], "annotations": [a, b, alone]})
    assert [x["id"] for x in out["annotations"][:3]] == [1, 2, 3]       # the crops' own, first and unchanged
    added = out["annotations"][3:]
    assert [(x["image_id"], x["neighbour_of"]) for x in added] == [(11, 1), (12, 2)]   # the lone crop has nobody
    b_in_a = added[0]
    np.testing.assert_allclose(np.reshape(b_in_a["keypoints"], (17, 3))[[0, 9]], [[60, 25, 2], [70, 40, 1]])
    assert b_in_a["bbox"] == [0.5 * 90 + 10, 0.5 * 50 - 5, 20.0, 25.0] and b_in_a["num_keypoints"] == 2
    assert b_in_a["area"] == pytest.approx(225.0) and len({x["id"] for x in out["annotations"]}) == 5


def test_wrong_keypoints_are_told_apart(hp):
    # one person of area 10,000 (s = 100): wrists at (100, 100) and (140, 100), left elbow at (100, 60)
    gt = np.zeros((17, 3))
    gt[9] = (100, 100, 2)    # left wrist
    gt[10] = (140, 100, 1)   # right wrist, occluded
    gt[7] = (100, 60, 2)     # left elbow
    gt[0] = (300, 300, 2)    # nose
    pred = gt[:, :2].copy()
    pred[9] = (140, 101)     # on the right wrist: a left/right swap
    pred[10] = (101, 62)     # on the left elbow: across the limb
    pred[0] = (500, 500)     # nowhere: elsewhere ... unless a neighbour's joint is there
    neighbour = np.zeros((1, 17, 3))
    neighbour[0, 3] = (500, 502, 2)   # a neighbour's left ear
    rows = hp.landing(pred, gt, 10_000.0, neighbour, np.array([10_000.0]))
    assert sorted(rows, key=lambda r: r[0]) == [(0, 2, "neighbour", (0, 3)), (9, 2, "own", 10), (10, 1, "own", 7)]
    # the left elbow (right where it is) is not wrong; without the neighbour the nose lands elsewhere
    rows = hp.landing(pred, gt, 10_000.0, np.zeros((0, 17, 3)), np.zeros(0))
    assert (0, 2, "elsewhere", None) in rows
    # a neighbour's unlabelled joint (v = 0 at 0, 0) is never a landing place
    pred[0] = (0, 0)
    assert (0, 2, "elsewhere", None) in hp.landing(pred, gt, 10_000.0, np.zeros((1, 17, 3)), np.array([1e4]))
    # KS of the swapped wrist: d = 40 px, kappa = 2 * 0.062: exp(-1600 / (2 * 10000 * 0.124^2)) is wrong (< 0.5)
    assert np.exp(-1600 / (2 * 10_000 * 0.124 ** 2)) < 0.01
    assert hp.pair_kind(9, 10) == "left/right swap"
    assert hp.pair_kind(9, 7) == "along the limb"
    assert hp.pair_kind(10, 7) == "across, along the limb"
    assert hp.pair_kind(1, 0) == "face part"
    assert hp.pair_kind(9, 11) == "other"
    table = hp.confusion_table([(9, 2, "own", 10, False), (10, 1, "own", 7, False), (0, 2, "neighbour", (0, 0), True),
                                (5, 1, "elsewhere", None, True)])
    assert table["all"]["wrong"] == 4 and table["all"]["own"] == 2 and table["all"]["own_share"] == 0.5
    assert table["occluded_v1"]["own"] == 1 and table["occluded_v1"]["elsewhere"] == 1
    assert table["visible_v2"]["neighbour"] == 1 and table["neighbour_same_joint"] == 1
    assert table["own_pairs"][0]["n"] == 1 and table["own_by_kind"]["left/right swap"] == 1


def test_photo_edge_from_a_crops_black_border(hp):
    # a 100 x 80 photograph of noise; a crop 90 x 120 of it at scale 1 starting at photo x = 40, y = -10: columns
    # 60.. and rows 90.. of the crop lie outside the photograph and come out black
    rng = np.random.default_rng(0)
    photo = rng.integers(60, 255, (80, 100, 3), dtype=np.uint8)
    m = np.array([[1.0, 0.0, -40.0], [0.0, 1.0, 10.0]])
    crop = cv2.warpAffine(photo, m, (90, 120), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    grey = crop.max(2)
    assert hp.border_edge(grey, 0) == pytest.approx(59.5 - hp.BLEED)
    assert hp.border_edge(grey, 1) == pytest.approx(89.5 - hp.BLEED)
    ann = {"id": 1, "orig_image_id": 5, "crop_transform": m.tolist(), "orig_bbox": [50, 20, 49, 59]}
    (w, h), = hp.photo_sizes([ann], {1: grey}).values()
    assert w == pytest.approx(100, abs=0.5) and h == pytest.approx(80, abs=0.5)
    # a crop inside the photograph shows no border: that side is unknown (None), and nobody touches it
    inner = cv2.warpAffine(photo, np.array([[1.0, 0, -10], [0, 1.0, -10]]), (40, 40))
    assert hp.border_edge(inner.max(2), 0) is None
    assert hp.cut_by_frame([50, 20, 49, 59], (w, h))          # reaches the right and bottom edges
    assert hp.cut_by_frame([0, 20, 10, 10], (None, None))      # the left edge is x = 0
    assert not hp.cut_by_frame([50, 20, 30, 30], (w, h))
    assert not hp.cut_by_frame([50, 20, 40, 30], (None, None))
