"""render_people: pixel checks on a black canvas (colour = quality, ring = occluded, hidden = not labelled)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from posecal.errors import PosecalInputError
from posecal.inference.predictor import PersonPose
from posecal.overlay import quality_color, render_people

# A standing person (COCO order) scaled into a 300 x 400 (w x h) canvas.
KP = np.array([[60, 30], [56, 26], [64, 26], [52, 28], [68, 28], [45, 50], [75, 50], [40, 75], [80, 75],
               [38, 98], [82, 98], [50, 100], [70, 100], [48, 128], [72, 128], [47, 152], [73, 152]], float) * 2.5
OCC, HIDDEN = 9, 16            # left wrist occluded, right ankle not labelled
Q = np.linspace(0.3, 0.95, 17)


def person(vis="default", kp=KP, q=Q) -> PersonPose:
    v = np.full(17, 2)
    v[OCC], v[HIDDEN] = 1, 0
    lo, hi = kp.min(0) - 25, kp.max(0) + 25
    return PersonPose(np.r_[lo, hi - lo], kp.copy(), q.copy(), q.copy(), 0.7, v if vis == "default" else vis)


def canvas(h=400, w=300) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def px(img, xy) -> np.ndarray:
    return img[int(round(xy[1])), int(round(xy[0]))].astype(int)


def near(img, xy, r) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return img[y - r:y + r + 1, x - r:x + r + 1]


def test_quality_color_scale():
    lo, hi = quality_color(0.0), quality_color(1.0)
    assert isinstance(lo, tuple) and len(lo) == 3 and all(isinstance(c, int) for c in lo)
    assert lo != hi
    assert lo[2] > lo[1] and hi[1] > hi[2]                        # BGR: red end, green end
    lut = quality_color(np.linspace(0, 1, 256))
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    hue = cv2.cvtColor(lut[None], cv2.COLOR_BGR2HSV_FULL)[0, :, 0].astype(int)
    assert np.all(np.diff(hue) >= -1) and hue[-1] - hue[0] > 60   # one monotone sweep red -> green
    assert quality_color(-3) == lo and quality_color(7) == hi    # clipped
    assert quality_color(np.array([[0.5]])).shape == (1, 1, 3)
    nan = quality_color(float("nan"))
    assert nan[0] == nan[1] == nan[2]                            # unknown quality is grey


def test_visible_keypoint_and_limb_colours():
    img = canvas()
    out = render_people(img, [person()], legend=False)
    for k in (0, 5, 12):
        assert np.abs(px(out, KP[k]) - quality_color(Q[k])).max() <= 2
    # a limb takes the colour of its weaker endpoint: shoulders 5-6, midpoint
    mid = (KP[5] + KP[6]) / 2
    assert np.abs(px(out, mid) - quality_color(min(Q[5], Q[6]))).max() <= 2


def test_occluded_is_hollow_ring_with_dashed_limb():
    out = render_people(canvas(), [person()], legend=False)
    assert px(out, KP[OCC]).max() == 0                           # centre shows the background
    ring = near(out, KP[OCC], 9).reshape(-1, 3).astype(int)
    assert np.abs(ring - quality_color(Q[OCC])).max(1).min() <= 3  # the ring carries the keypoint's colour
    # elbow 7 -> occluded wrist 9 is dashed: along its middle there are both stroke and gap pixels
    t = np.linspace(0.25, 0.75, 60)[:, None]
    samples = np.array([px(out, p) for p in KP[7] + t * (KP[OCC] - KP[7])])
    assert (samples.max(1) == 0).any() and (samples.max(1) > 100).any()


def test_not_labelled_hidden_unless_show_all():
    img = canvas()
    out = render_people(img, [person()], legend=False)
    assert near(out, KP[HIDDEN], 6).max() == 0
    assert px(out, (KP[14] + KP[HIDDEN]) / 2).max() == 0           # its limb is hidden too
    faint = render_people(img, [person()], show_all=True, legend=False)
    c = px(faint, KP[HIDDEN])
    assert 40 < c.min() and c.max() < 230 and c.max() - c.min() <= 2  # faint grey, alpha-blended
    assert px(faint, (KP[14] + KP[HIDDEN]) / 2).max() > 0
    # show_all changes nothing about the labelled keypoints
    assert np.array_equal(px(faint, KP[0]), px(out, KP[0]))


def test_visibility_none_means_all_visible():
    out = render_people(canvas(), [person(vis=None)], legend=False)
    for k in (OCC, HIDDEN):
        assert np.abs(px(out, KP[k]) - quality_color(Q[k])).max() <= 2


def test_copy_shape_dtype_and_input_untouched():
    img = np.random.default_rng(0).integers(0, 255, (400, 300, 3), dtype=np.uint8)
    before = img.copy()
    out = render_people(img, [person()], legend=False)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before) and not np.shares_memory(out, img)
    assert not np.array_equal(out, img)


def test_legend_in_corner_only_when_asked():
    img = canvas(600, 800)
    kp = KP * 0.5 + [20, 20]                                  # a small person in the top-left corner
    on = render_people(img, [person(vis=None, kp=kp)], legend=True)
    off = render_people(img, [person(vis=None, kp=kp)], legend=False)
    assert on.shape == img.shape
    assert np.array_equal(render_people(img, [], legend=True), img)     # nobody found: no legend
    h, w = img.shape[:2]
    assert np.array_equal(on[:h // 2], off[:h // 2]) and np.array_equal(on[:, :w // 2], off[:, :w // 2])
    on = on - off                                             # the legend alone
    br = on[h // 2:, w // 2:]
    assert br.max() > 200                                     # text and colour bar in the bottom-right
    assert on[:h // 2].max() == 0 and on[:, :w // 2].max() == 0  # other corners untouched
    # the bar's left end is red and its right end green: find the row with the most saturated pixels
    hsv = cv2.cvtColor(br, cv2.COLOR_BGR2HSV)
    row = int(np.argmax((hsv[:, :, 1] > 150).sum(1)))
    xs = np.nonzero(hsv[row, :, 1] > 150)[0]
    left, right = br[row, xs[0] + 1].astype(int), br[row, xs[-1] - 1].astype(int)
    assert left[2] > left[1] and right[1] > right[2]


def test_legend_avoids_people():
    img = canvas(600, 800)
    kp = KP + [560, 200]                                      # person in the bottom-right corner
    out = render_people(img, [person(vis=None, kp=kp)], legend=True)
    assert out.shape == img.shape
    assert out[300:, :400].max() > 200 and out[:300, :400].max() == 0   # it moved to the free bottom-left
    for k in range(17):
        assert np.abs(px(out, kp[k]) - quality_color(Q[k])).max() <= 2


@pytest.mark.parametrize("hw", [(150, 120), (270, 480), (100, 100)])
def test_small_image_keeps_its_size_with_a_smaller_legend_in_a_corner(hw):
    h, w = hw
    img = np.full((h, w, 3), 90, np.uint8)
    kp = KP * (0.35 * h / 150)
    out = render_people(img, [person(kp=kp)], legend=True)
    assert out.shape == img.shape and out.dtype == np.uint8   # a render keeps the input's size
    plain = render_people(img, [person(kp=kp)], legend=False)
    if min(h, w) >= 120:
        changed = np.nonzero((out != plain).any(-1))
        assert out.max() > 200 and len(changed[0]) > 200    # a legend (white text, colour bar) was drawn
        ys, xs = changed                                      # ... inside one corner quarter-ish panel
        assert (ys.min() < 12 or ys.max() > h - 13) and (xs.min() < 12 or xs.max() > w - 13)
    assert np.array_equal(render_people(img, [], legend=True), img)


@pytest.mark.slow   # a wall-clock limit: on a shared, busy machine it measures the neighbours
def test_huge_image_is_fast():
    img = canvas(3000, 4000)
    kp = KP * 4 + [1400, 400]                                 # a 440 x 1260 px person, corners free
    p = person(kp=kp)
    t = time.perf_counter()
    out = render_people(img, [p], show_all=True)
    assert time.perf_counter() - t < 2.0
    assert out.shape == img.shape
    assert np.abs(px(out, kp[0]) - quality_color(Q[0])).max() <= 2
    assert px(out, kp[OCC]).max() == 0
    # sizes scale with the image: the dot is much wider than on the small canvas
    row = out[int(kp[0][1]), int(kp[0][0]) - 60:int(kp[0][0]) + 61]
    assert (np.abs(row.astype(int) - quality_color(Q[0])).max(1) <= 2).sum() > 20


def test_robust_to_nan_and_bad_input():
    q = Q.copy()
    q[3] = np.nan
    kp = KP.copy()
    kp[4] = np.nan
    p = person(kp=kp, q=q)
    p.pose_quality = float("nan")
    out = render_people(canvas(), [p])
    assert out.dtype == np.uint8
    with pytest.raises(PosecalInputError):
        render_people(canvas().astype(np.float32), [])
    with pytest.raises(PosecalInputError):
        render_people(canvas(), [PersonPose(np.zeros(4), KP, Q[:5], Q, 0.5)])


def test_quality_tags_of_a_group_do_not_overlap():
    """Five people 20 px apart, their boxes overlapping (a group): each tag finds a spot of its own."""
    from posecal.overlay import _place_labels, _prepare, _style

    img = canvas(400, 600)
    group = [person(vis=None, kp=KP * 0.8 + [20 * i, 60]) for i in range(5)]
    st = _style(*img.shape[:2])
    labels = _place_labels([_prepare(p, False) for p in group], st, *img.shape[:2], tags=[f"#{i}" for i in range(5)])
    rects = [lab.rect for lab in labels]
    overlaps = [(n, m) for n, a in enumerate(rects) for m, b in enumerate(rects[:n])
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]
    assert overlaps == []
    assert [lab.text.split()[0] for lab in labels] == ["#0", "#1", "#2", "#3", "#4"]
