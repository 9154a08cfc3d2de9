"""render_people in crowds and on small pictures: pixel checks on drawn scenes.

Markers follow each person's size (a small person's limbs stay visible between its dots), the "Q" labels avoid
each other and the people and stay inside the picture, and the legend covers at most a tenth of a small picture.
Keypoint quality is NaN in the crowd scenes (keypoints and limbs drawn grey), so each label is found by its own
pose-quality colour.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from posecal.inference.predictor import PersonPose
from posecal.overlay import quality_color, render_people

# A standing person, COCO order, 1 px tall (y from 0 to 1), centred on x = 0.
UNIT = np.array([[60, 30], [56, 26], [64, 26], [52, 28], [68, 28], [45, 50], [75, 50], [40, 75], [80, 75],
                 [38, 98], [82, 98], [50, 100], [70, 100], [48, 128], [72, 128], [47, 152], [73, 152]], float)
UNIT = (UNIT - [60, 26]) / 126.0
GREY = np.array(quality_color(float("nan")))
BACKGROUND = (70, 45, 30)     # dark blue: no quality colour, no grey


def standing(x: float, top: float, height: float, pose_q: float, kq: float = float("nan")) -> PersonPose:
    """A person ``height`` px tall whose head top is at (x, top), with its box 10 % larger than its keypoints."""
    kp = UNIT * height + [x, top]
    lo, hi = kp.min(0), kp.max(0)
    pad = 0.1 * (hi - lo)
    box = np.r_[lo - pad, hi - lo + 2 * pad]
    q = np.full(17, kq)
    return PersonPose(box, kp, q, q.copy(), pose_q, np.full(17, 2))


def street(h=426, w=640) -> list[PersonPose]:
    """Eleven people as on a street photo: a back row 50-60 px tall and, just below and slightly to the side, a
    front row 70-80 px tall, their boxes overlapping the back row's (the spot above a front box is a back
    person's legs)."""
    back = [standing(70 + 95 * i, 140, 50 + 2 * i, 0.35 + 0.05 * i) for i in range(6)]
    front = [standing(85 + 95 * i, 200, 70 + 2.5 * i, 0.65 + 0.06 * i) for i in range(5)]
    return back + front


def canvas(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    return img


def label_rect(img: np.ndarray, pose_q: float):
    """Bounding rectangle (x0, y0, x1, y1, exclusive) of the filled label of that pose quality's colour, found
    by its pixels (thin box outlines and leader lines of the same colour are opened away); None if absent."""
    mask = np.all(img == np.array(quality_color(pose_q), np.uint8), -1).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    parts = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] >= 20]
    if not parts:
        return None
    x0 = min(s[0] for s in parts)
    y0 = min(s[1] for s in parts)
    return x0, y0, max(s[0] + s[2] for s in parts), max(s[1] + s[3] for s in parts)


def intersects(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_street_scene_labels_overlap_nothing_and_hide_no_keypoint():
    people = street()
    assert len({quality_color(p.pose_quality) for p in people}) == len(people)   # one label colour each
    out = render_people(canvas(426, 640), people, legend=False)
    rects = [label_rect(out, p.pose_quality) for p in people]
    assert all(r is not None for r in rects)
    # every label is whole (a label cut by the picture's edge or by another label would be smaller) ...
    assert len({(r[2] - r[0], r[3] - r[1]) for r in rects}) == 1
    # ... and overlaps no other label
    assert [(n, m) for n, a in enumerate(rects) for m, b in enumerate(rects[:n]) if intersects(a, b)] == []
    # no keypoint lies under a label, and the body's keypoints still show their (grey) dots
    for p in people:
        for k, (x, y) in enumerate(p.keypoints):
            assert not any(r[0] - 1 <= x < r[2] + 1 and r[1] - 1 <= y < r[3] + 1 for r in rects), (p.pose_quality, k)
            if k >= 5:   # the face's five points lie within a few px of each other: their dots overlap
                assert np.abs(out[int(round(y)), int(round(x))].astype(int) - GREY).max() <= 3, (p.pose_quality, k)


def test_labels_stay_inside_the_picture():
    """People at the picture's corners, their boxes reaching past its edges: every label is drawn whole, as large
    as the same person's label when that person stands alone in the middle of the picture."""
    h, w = 206, 159
    people = [standing(12, -6, 90, 0.4), standing(w - 10, h - 80, 90, 0.8)]
    for p in people:
        assert (p.box[:2] < 0).any() or (p.box[:2] + p.box[2:] > [w, h]).any()   # the box leaves the picture
    out = render_people(canvas(h, w), people, legend=False)
    for p in people:
        shift = np.array([w / 2, h / 2]) - (p.box[:2] + p.box[2:] / 2)
        moved = PersonPose(p.box + np.r_[shift, 0, 0], p.keypoints + shift, p.keypoint_quality, p.heatmap_scores,
                           p.pose_quality, p.visibility)
        ref = label_rect(render_people(canvas(h, w), [moved], legend=False), p.pose_quality)
        r = label_rect(out, p.pose_quality)
        assert r is not None and 0 <= r[0] and 0 <= r[1] and r[2] <= w and r[3] <= h
        assert (r[2] - r[0], r[3] - r[1]) == (ref[2] - ref[0], ref[3] - ref[1])


def _runs(img: np.ndarray, a: np.ndarray, b: np.ndarray) -> str:
    """Along the centre line from a to b, the sequence of 'c' (green: a dot's or the limb's colour, q = 0.9) and
    'd' (dark: a dot's rim) runs, other pixels (antialiasing) left out: "cdcdc" = dot, rim, limb, rim, dot."""
    seq = []
    for t in np.linspace(0.0, 1.0, int(4 * np.hypot(*(b - a))) + 2):
        x, y = a + t * (b - a)
        v = img[int(round(y)), int(round(x))].astype(int)   # BGR
        kind = "d" if v[1] < 100 else "c" if v[1] >= 110 and v[1] - max(v[0], v[2]) >= 40 else ""
        if kind and (not seq or seq[-1] != kind):
            seq.append(kind)
    return "".join(seq)


@pytest.mark.parametrize("height", [40, 55, 80])
def test_small_person_limbs_visible_between_the_dots(height):
    """A person 40-80 px tall on a 800 x 600 picture: every arm and leg segment shows limb pixels between the
    dark rims of its two dots (sized by the picture alone, the dots would cover the whole limb)."""
    q = 0.9
    p = standing(300, 250, height, 0.8, kq=q)
    out = render_people(np.full((600, 800, 3), 128, np.uint8), [p], legend=False)
    color = np.array(quality_color(q))
    kp = p.keypoints
    for i, j in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 11), (6, 12)):
        assert "dcd" in _runs(out, kp[i], kp[j]), (i, j)
        assert np.abs(out[int(round(kp[i][1])), int(round(kp[i][0]))].astype(int) - color).max() <= 3  # dot kept


def test_large_person_keeps_the_picture_sized_markers():
    """Sizes only shrink for people smaller than the picture calls for: a person filling the picture is drawn
    as before (dots of about 0.9 % of the picture's side)."""
    p = standing(400, 40, 520, 0.8, kq=0.9)
    out = render_people(np.full((600, 800, 3), 128, np.uint8), [p], legend=False)
    x, y = (int(round(v)) for v in p.keypoints[0])
    row = out[y, x - 15:x + 16].astype(int)
    assert (np.abs(row - quality_color(0.9)).max(1) <= 3).sum() >= 9       # a dot ~12 px across (r = 0.9 u)


@pytest.mark.parametrize("hw", [(159, 206), (206, 159), (270, 480)])
def test_legend_covers_at_most_a_tenth_of_a_small_picture(hw):
    """One person in the middle of a small sports photo: a legend is drawn in a free corner, inside the
    picture, covering at most 10 % of it and no keypoint."""
    h, w = hw
    img = np.random.default_rng(1).integers(60, 200, (h, w, 3), dtype=np.uint8)
    p = standing(w / 2, 0.2 * h, 0.6 * h, 0.9, kq=0.8)
    on = render_people(img, [p], legend=True)
    off = render_people(img, [p], legend=False)
    assert on.shape == img.shape
    ys, xs = np.nonzero((on != off).any(-1))
    assert len(ys) > 100                                                    # a legend was drawn
    area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert area <= 0.10 * h * w
    for x, y in p.keypoints:
        assert np.array_equal(on[int(round(y)), int(round(x))], off[int(round(y)), int(round(x))])


def test_legend_left_out_of_a_small_picture_it_would_cover():
    """A person reaching every corner of a 206 x 159 picture: no corner is free, so no legend (the render equals
    the legend-free one) rather than a panel over the person."""
    h, w = 159, 206
    img = np.random.default_rng(2).integers(60, 200, (h, w, 3), dtype=np.uint8)
    kp = np.array([[3, 3], [w - 4, 3], [3, h - 4], [w - 4, h - 4]] + [[w / 2, h / 2]] * 13, float)
    kp[4:] += np.linspace(-40, 40, 13)[:, None]
    q = np.full(17, 0.8)
    p = PersonPose(np.array([0, 0, w - 1, h - 1], float), kp, q, q.copy(), 0.8, np.full(17, 2))
    assert np.array_equal(render_people(img, [p], legend=True), render_people(img, [p], legend=False))
