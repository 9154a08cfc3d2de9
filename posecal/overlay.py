"""Draw poses so that a viewer sees how far to trust each one.

Colour = calibrated quality on one red -> amber -> green scale (keypoints: predicted OPKS; the "Q" label: predicted
OKS). Shape = visibility: filled dot and solid limb for visible, hollow ring and dashed limb for occluded, nothing
for not labelled (faint grey with ``show_all=True``).

Sizes derive from the image size, and shrink for a person small for the picture (box height or keypoint spread),
so limbs stay visible between dots in a crowd; they never grow past the image's.

Labels: one "Q 0.72" per person, larger people first, at the candidate spot around the box that overlaps no earlier
label and hides the fewest keypoints, limbs and boxes, always inside the picture (a leader line when away from its
box; text down to 9 px in a crowd).

Legend: inside the picture (the render keeps the input's size), at most 10 % of it: a translucent panel in a corner
that hides no keypoint, limb or label; else smaller text; else a compact "quality 0 [bar] 1" scale; as a last
resort, on pictures of 80,000 px and more, the compact scale in the corner hiding the fewest points (smaller
pictures go without). No legend when nobody is drawn.

People are read by their fields alone (box, keypoints, keypoint_quality, visibility, pose_quality,
keypoint_radius), so this module sits in a low layer and the result types above it draw themselves.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
import cv2
import numpy as np

from posecal.errors import PosecalInputError
from posecal.skeleton import COCO_LIMBS

__all__ = ["quality_color", "render_people"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_AA = cv2.LINE_AA
_SHIFT = 4                      # sub-pixel drawing: coordinates are multiplied by 2**_SHIFT
_DARK = (20, 20, 20)            # outlines and halos: separate the colours from any background
_FAINT = (205, 205, 205)        # not-labelled keypoints with show_all (alpha-blended)
_NEUTRAL = (235, 235, 235)      # legend symbols: shape only, no quality implied
_NAN_COLOR = (150, 150, 150)    # quality unknown
_HALO_ALPHA, _FAINT_ALPHA, _PANEL_ALPHA = 0.55, 0.5, 0.72

# Anchors of the scale in RGB (q = 0, .25, .5, .75, 1). Interpolated in CIELAB so that equal steps in q
# look like equal colour steps; the hue rises monotonically red -> orange -> amber -> green, and the
# middle stays a saturated amber (a pale yellow centre, as in diverging maps, vanishes on bright photos).
_ANCHORS_RGB = ((215, 38, 38), (240, 112, 32), (245, 196, 40), (150, 205, 60), (26, 158, 78))


@functools.lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """256 BGR uint8 colours for q = 0 .. 1."""
    anchors = np.array(_ANCHORS_RGB, np.float32)[None] / 255.0
    lab = cv2.cvtColor(anchors, cv2.COLOR_RGB2Lab)[0]
    pos = np.linspace(0.0, 1.0, len(lab))
    q = np.linspace(0.0, 1.0, 256)
    lab_q = np.stack([np.interp(q, pos, lab[:, c]) for c in range(3)], -1).astype(np.float32)
    rgb = cv2.cvtColor(lab_q[None], cv2.COLOR_Lab2RGB)[0]
    return np.clip(np.round(rgb[:, ::-1] * 255), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _lut_tuples() -> tuple:
    return tuple(tuple(int(c) for c in row) for row in _lut())


def quality_color(q):
    """BGR colour of quality ``q`` (clipped to [0, 1]; NaN -> grey).

    A scalar gives a tuple of 3 ints (ready for OpenCV); an array gives a uint8 array of shape
    ``q.shape + (3,)``. For a matplotlib colorbar use
    ``ListedColormap(quality_color(np.linspace(0, 1, 256))[:, ::-1] / 255)``.
    """
    if np.ndim(q) == 0:   # the per-keypoint case, ~50 calls a person: a table lookup, no array round trip
        v = float(q)
        return _NAN_COLOR if v != v else _lut_tuples()[round(min(max(v, 0.0), 1.0) * 255)]
    arr = np.asarray(q, dtype=float)
    nan = np.isnan(arr)
    idx = np.round(np.clip(np.where(nan, 0.0, arr), 0.0, 1.0) * 255).astype(np.intp)
    out = _lut()[idx]
    out[nan] = _NAN_COLOR
    return out


@dataclass(frozen=True)
class _Style:
    """Pixel sizes, all proportional to a unit ``u`` (the image's: sqrt of its area / 100; a person's: smaller)."""

    u: float
    lw: int          # limb thickness
    r: float         # visible dot radius
    o: int           # dark outline / halo width
    ring_r: float    # occluded ring radius (centre of the stroke)
    ring_t: int      # occluded ring stroke
    faint_t: int
    faint_r: float
    box_t: int
    dash: float
    gap: float
    th: float        # text height (label and legend)


def _style_at(u: float, r_min: float, th: float) -> _Style:
    """Sizes for unit ``u``: the dot radius is at least ``r_min``, every stroke at least 1 px."""
    lw = max(1, round(0.5 * u))
    r = max(r_min, 0.9 * u)
    o = max(1, round(0.2 * u))
    ring_t = max(lw, round(0.4 * r))
    # a slightly larger ring than the dot, with a hole of >= 2 px even on tiny images, so "hollow" stays readable
    ring_r = max(1.2 * r, ring_t / 2 + 2.0)
    return _Style(u=u, lw=lw, r=r, o=o, ring_r=ring_r, ring_t=ring_t, faint_t=max(1, lw // 2),
                  faint_r=max(1.5, 0.55 * r), box_t=max(1, round(0.25 * u)), dash=2.5 * lw + 2, gap=2.0 * lw + 3,
                  th=th)


def _style(h: int, w: int) -> _Style:
    """The image's sizes: what a person as large as the picture gets, and the legend's text."""
    u = math.sqrt(h * w) / 100.0
    return _style_at(u, 2.5, max(9.0, 2.0 * u))


# A person this many px tall gets the sizes of unit 1 (a 100 x 100 picture's): dots of radius ~ height / 39 and
# limbs ~ height / 70 thick, so a 50 px tall figure in a crowd keeps its limbs visible between its dots.
_PERSON_PX_PER_UNIT = 35.0
_SMALL_R, _MIN_LABEL_TH = 1.5, 9.0   # smallest dot radius (a 3 px colour core in a dark rim); label text


def _person_size(xy: np.ndarray, drawn: np.ndarray, box: np.ndarray) -> float:
    """How tall a person is drawn, in px: the box's height, or the drawn keypoints' spread where that is
    larger (someone lying down has a flat box); NaN when neither is known."""
    size = float(box[3]) if np.isfinite(box).all() and box[3] > 0 else math.nan
    pts = xy[drawn]
    if len(pts) >= 2:
        spread = float((pts.max(0) - pts.min(0)).max())
        size = spread if not size >= spread else size   # NaN-safe max
    return size


def _person_style(img: _Style, size: float) -> _Style:
    """The image's sizes, made smaller for a person smaller than the picture (never larger): markers and lines
    follow the person's size down to readable minima; label text shrinks more gently (square root), to 9 px."""
    if not size > 0:
        return img
    u = min(img.u, size / _PERSON_PX_PER_UNIT)
    if u >= img.u:
        return img
    th = min(img.th, max(_MIN_LABEL_TH, img.th * math.sqrt(u / img.u)))
    return _style_at(u, min(img.r, _SMALL_R), th)


# ----------------------------------------------------------------------------------------------- primitives
def _pt(p) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def _rad(r: float) -> int:
    return max(1, int(round(r * (1 << _SHIFT))))


def _line(img, a, b, color, t) -> None:
    cv2.line(img, _pt(a), _pt(b), color, int(t), _AA, _SHIFT)


def _circle(img, c, r, color, t) -> None:
    cv2.circle(img, _pt(c), _rad(r), color, int(t), _AA, _SHIFT)


def _font(th: float) -> tuple[float, int]:
    """cv2 font scale and stroke for a cap height of ``th`` px (Hershey simplex caps are ~22 px at scale 1)."""
    return th / 22.0, max(1, round(th / 11.0))


def _text_size(text: str, th: float) -> tuple[int, int]:
    scale, thick = _font(th)
    (w, _), _ = cv2.getTextSize(text, _FONT, scale, thick)
    return w, int(round(th))


def _text(img, text: str, x: float, baseline_y: float, th: float, color) -> None:
    scale, thick = _font(th)
    cv2.putText(img, text, (int(round(x)), int(round(baseline_y))), _FONT, scale, color, thick, _AA)


def _blend_mask(img: np.ndarray, mask: np.ndarray, color, alpha: float) -> None:
    """img <- img blended towards ``color`` by alpha * mask/255; pixels where mask == 0 stay bit-exact.

    Only the touched pixels are computed, so thin strokes on a 4K image cost milliseconds.
    """
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    sub = mask[y:y + h, x:x + w]
    ys, xs = np.nonzero(sub)
    roi = img[y:y + h, x:x + w]
    m = sub[ys, xs, None].astype(np.float32) * (alpha / 255.0)
    roi[ys, xs] = np.round(roi[ys, xs] * (1.0 - m) + np.asarray(color, np.float32) * m).astype(np.uint8)


# id_confidence under which a tracked person's identity is drawn as unsure (a dashed box): more likely someone else
# than the person the track held in its previous record than not
UNSURE_IDENTITY = 0.5


def _trim(a: np.ndarray, b: np.ndarray, ta: float, tb: float):
    """Segment a-b shortened by ta at a and tb at b (so a limb stops at a ring); None if nothing is left."""
    d = b - a
    n = float(np.hypot(*d))
    if n <= ta + tb + 1.0:
        return None
    u = d / n
    return a + u * ta, b - u * tb


def _dashes(a: np.ndarray, b: np.ndarray, dash: float, gap: float):
    """Dash pieces of a-b, stretched so the pattern starts and ends exactly on the endpoints."""
    n = float(np.hypot(*(b - a)))
    k = max(1, int(round((n + gap) / (dash + gap))))
    if k == 1:
        return [(a, b)]
    d = (n - (k - 1) * gap) / k
    u = (b - a) / n
    return [(a + u * (i * (d + gap)), a + u * (i * (d + gap) + d)) for i in range(k)]


# ----------------------------------------------------------------------------------------------- people
@dataclass
class _Prepared:
    xy: np.ndarray
    q: np.ndarray
    vis: np.ndarray        # 0 / 1 / 2, and -1 for non-finite coordinates (never drawn)
    limbs: list            # (i, j, kind, quality) with kind "solid" / "dashed" / "faint"
    box: np.ndarray
    pose_q: float
    st: _Style             # this person's sizes (see _person_style)
    id_unsure: bool = False   # a tracked person whose id_confidence is under UNSURE_IDENTITY: box drawn dashed


def _prepare(p, show_all: bool, st: _Style | None = None) -> _Prepared:
    """A person's arrays, checked, with the limbs to draw and the sizes to draw them at (``st``: the image's
    style, made smaller for a small person; None: no sizes, for callers that only lay out)."""
    xy = np.asarray(p.keypoints, float).reshape(-1, 2)
    k = len(xy)
    q = np.asarray(p.keypoint_quality, float).reshape(-1)
    if len(q) != k:
        raise PosecalInputError(f"keypoint_quality has {len(q)} values for {k} keypoints")
    vis = np.full(k, 2, int) if p.visibility is None else np.asarray(p.visibility).astype(int).reshape(-1)
    if len(vis) != k:
        raise PosecalInputError(f"visibility has {len(vis)} values for {k} keypoints")
    vis = np.where(np.isfinite(xy).all(1), vis, -1)   # -1: cannot be drawn at all
    limbs = []
    for i, j in COCO_LIMBS:
        if i >= k or j >= k or vis[i] < 0 or vis[j] < 0:
            continue
        if vis[i] == 0 or vis[j] == 0:
            if show_all:
                limbs.append((i, j, "faint", math.nan))
            continue
        kind = "dashed" if 1 in (vis[i], vis[j]) else "solid"
        limbs.append((i, j, kind, float(np.fmin(q[i], q[j]))))  # fmin: one NaN endpoint -> the other's q
    box = np.asarray(p.box, float).reshape(4)
    if st is not None:
        st = _person_style(st, _person_size(xy, vis >= (0 if show_all else 1), box))
    id_confidence = getattr(p, "id_confidence", None)
    unsure = id_confidence is not None and float(id_confidence) < UNSURE_IDENTITY
    return _Prepared(xy, q, vis, limbs, box, float(p.pose_quality), st, unsure)


def _draw_radii(img, people: list, prepared: list[_Prepared]) -> None:
    """Thin circles of the keypoints' conformal radii (people without radii are skipped)."""
    for person, p in zip(people, prepared):
        radii = getattr(person, "keypoint_radius", None)
        if radii is None:
            continue
        for i, r in enumerate(np.asarray(radii, float).reshape(-1)[: len(p.xy)]):
            if p.vis[i] > 0 and np.isfinite(r) and r > 0:
                _circle(img, p.xy[i], float(r), quality_color(p.q[i]), p.st.faint_t)


def _end_trim(vis: int, st: _Style) -> float:
    """How far a limb stops short of its keypoint: at the outer edge of a ring, at the centre of a dot."""
    return st.ring_r + st.ring_t / 2.0 + st.o if vis == 1 else 0.0


def _draw_faint(img, people: list[_Prepared]) -> None:
    mask = np.zeros(img.shape[:2], np.uint8)
    for p in people:
        st = p.st
        for i, j, kind, _ in p.limbs:
            if kind == "faint":
                _line(mask, p.xy[i], p.xy[j], 255, st.faint_t)
        for c in p.xy[p.vis == 0]:
            _circle(mask, c, st.faint_r, 255, -1)
    _blend_mask(img, mask, _FAINT, _FAINT_ALPHA)


def _limb_pieces(p: _Prepared, i: int, j: int, kind: str):
    st = p.st
    seg = _trim(p.xy[i], p.xy[j], _end_trim(p.vis[i], st), _end_trim(p.vis[j], st))
    if seg is None:
        return []
    return _dashes(*seg, st.dash, st.gap) if kind == "dashed" else [seg]


def _draw_skeletons(img, people: list[_Prepared]) -> None:
    """Limbs over a translucent dark halo, then keypoints on top, each person at their own sizes."""
    # 1. translucent dark halo under every limb: keeps colours legible on any background
    halo = np.zeros(img.shape[:2], np.uint8)
    for p in people:
        for i, j, kind, _ in p.limbs:
            if kind != "faint":
                for a, b in _limb_pieces(p, i, j, kind):
                    _line(halo, a, b, 255, p.st.lw + 2 * p.st.o)
    _blend_mask(img, halo, _DARK, _HALO_ALPHA)
    # 2. limbs, coloured by the weaker endpoint (a limb is only as trustworthy as its worse end)
    for p in people:
        for i, j, kind, lq in p.limbs:
            if kind != "faint":
                for a, b in _limb_pieces(p, i, j, kind):
                    _line(img, a, b, quality_color(lq), p.st.lw)
    # 3. keypoints on top: dark rim, then the quality colour; occluded ones stay hollow
    for p in people:
        st = p.st
        for k in np.argsort(p.vis, kind="stable"):   # visible dots last, i.e. on top
            c, color = p.xy[k], quality_color(p.q[k])
            if p.vis[k] == 2:
                _circle(img, c, st.r + st.o, _DARK, -1)
                _circle(img, c, st.r, color, -1)
            elif p.vis[k] == 1:
                # dark rim outside only: the hole shows the image itself, which is what "hollow" means
                _circle(img, c, st.ring_r + st.o / 2, _DARK, st.ring_t + st.o)
                _circle(img, c, st.ring_r, color, st.ring_t)


@dataclass
class _Label:
    text: str
    rect: tuple        # x0, y0, x1, y1 (x1, y1 exclusive)
    padx: int
    pady: int
    bg: tuple
    th: float          # text height
    leader: tuple | None = None   # (label point, box point) of a thin line when the label is away from its box


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """M x T overlap areas of the rectangles ``a`` (M x 4, x0 y0 x1 y1) with the rectangles ``b`` (T x 4)."""
    a, b = a[:, None, :], np.asarray(b, float).reshape(1, -1, 4)
    dx = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    dy = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(dx, 0, None) * np.clip(dy, 0, None)


# Label placement costs. A label never lies on another label if any spot allows; then it avoids hiding keypoints
# and limbs (anyone's: the label of the person behind should not sit on the head of the person in front), then
# other people's boxes, and stays near its own box (cost per label height of distance).
_COST_LABEL, _COST_KEYPOINT, _COST_LIMB, _COST_BOX, _COST_AWAY = 1e4, 30.0, 6.0, 10.0, 8.0


@dataclass
class _Scene:
    """What labels must not hide: every drawn keypoint and points along every drawn limb (with their person's
    index), and every person's box."""

    kp: np.ndarray         # K x 2
    kp_who: np.ndarray     # K
    limb: np.ndarray       # L x 2
    limb_who: np.ndarray   # L
    boxes: np.ndarray      # N x 4 (x0 y0 x1 y1; NaN rows for people without a box)


def _scene(people: list[_Prepared]) -> _Scene:
    kp, kp_who, limb, limb_who = [np.zeros((0, 2))], [np.zeros(0, int)], [np.zeros((0, 2))], [np.zeros(0, int)]
    t = np.linspace(0.15, 0.85, 6)[:, None]
    for n, p in enumerate(people):
        pts = p.xy[p.vis >= 1]
        kp.append(pts)
        kp_who.append(np.full(len(pts), n))
        for i, j, kind, _ in p.limbs:
            if kind != "faint":
                limb.append(p.xy[i] + t * (p.xy[j] - p.xy[i]))
                limb_who.append(np.full(len(t), n))
    boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (p.box for p in people)], float).reshape(-1, 4)
    return _Scene(np.concatenate(kp), np.concatenate(kp_who), np.concatenate(limb), np.concatenate(limb_who), boxes)


def _label_spots(box: np.ndarray, lw: int, lh: int, box_t: int, h: int, w: int) -> np.ndarray:
    """Candidate label rectangles (M x 4) around a box, inside the picture, most usual first: above the box
    (left, right, centre), inside its top, below it, beside it, then the same one and two label heights further
    out (a crowd), then down the box's inner left edge."""
    x0, y0, bw, bh = box
    x1, y1 = x0 + bw, y0 + bh
    m = box_t // 2 + 1
    xs = (round(x0) - m + 1, round(x1) + m - lw, round(x0 + (bw - lw) / 2))
    ys_side = (round(y0), round(y0 + (bh - lh) / 2))
    spots = []
    for k in range(3):
        step = k * lh
        spots += [(x, round(y0) - lh - step) for x in xs]
        if k == 0:
            spots += [(x, round(y0)) for x in xs[:2]]
        spots += [(x, round(y1) + m + step) for x in xs]
        spots += [(round(x0) - m - lw - k * lw // 2, y) for y in ys_side]
        spots += [(round(x1) + m + k * lw // 2, y) for y in ys_side]
    spots += [(xs[0], round(y0) + k * lh) for k in range(1, int(min(bh // max(lh, 1), 24)))]
    xy = np.array(spots, float)
    xy[:, 0] = np.clip(xy[:, 0], 0, max(0, w - lw))
    xy[:, 1] = np.clip(xy[:, 1], 0, max(0, h - lh))
    return np.column_stack([xy, xy[:, 0] + lw, xy[:, 1] + lh])


def _count_inside(pts: np.ndarray, rects: np.ndarray, grow: float) -> np.ndarray:
    """For each rectangle (M x 4), how many points (P x 2) lie within ``grow`` px of it."""
    lo, hi = rects[:, :2].min(0) - grow, rects[:, 2:].max(0) + grow
    pts = pts[((pts > lo) & (pts < hi)).all(1)]     # only the points near some candidate (crowds: most are far)
    return ((pts[None, :, 0] > rects[:, None, 0] - grow) & (pts[None, :, 0] < rects[:, None, 2] + grow)
            & (pts[None, :, 1] > rects[:, None, 1] - grow) & (pts[None, :, 1] < rects[:, None, 3] + grow)).sum(1)


def _away(rects: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Gap in px between each candidate rectangle and the box (0 where they touch or overlap)."""
    dx = np.maximum(0.0, np.maximum(box[0] - rects[:, 2], rects[:, 0] - box[2]))
    dy = np.maximum(0.0, np.maximum(box[1] - rects[:, 3], rects[:, 1] - box[3]))
    return np.hypot(dx, dy)


def _spot_costs(rects: np.ndarray, n: int, scene: _Scene, taken: list, grow: float) -> np.ndarray:
    """Cost of each candidate rectangle for person ``n``'s label (see the _COST_ weights)."""
    lh = float(rects[0, 3] - rects[0, 1])
    area = float((rects[0, 2] - rects[0, 0]) * lh)
    ov = _overlaps(rects, taken)
    cost = (_COST_LABEL * (ov > 0) + ov).sum(1)
    cost += _COST_KEYPOINT * _count_inside(scene.kp, rects, grow)
    cost += _COST_LIMB * _count_inside(scene.limb, rects, 1.0)
    others = np.isfinite(scene.boxes).all(1)
    others[n] = False
    cost += _COST_BOX * _overlaps(rects, scene.boxes[others]).sum(1) / area
    cost += _COST_AWAY * _away(rects, scene.boxes[n]) / lh
    return cost + 1e-3 * np.arange(len(rects))   # ties: the usual spot first


def _leader(rect, box: np.ndarray):
    """(label point, box point) of the shortest line from a label to its box, or None when they (nearly) touch."""
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    bx, by = float(np.clip(cx, box[0], box[2])), float(np.clip(cy, box[1], box[3]))
    lx, ly = float(np.clip(bx, rect[0], rect[2] - 1)), float(np.clip(by, rect[1], rect[3] - 1))
    return None if math.hypot(bx - lx, by - ly) <= 3 else ((lx, ly), (bx, by))


def _label_text(p: _Prepared, tag) -> str:
    text = "Q n/a" if math.isnan(p.pose_q) else f"Q {p.pose_q:.2f}"
    return text if tag is None else f"{tag} {text}"


def _label_size(text: str, th: float, h: int, w: int) -> tuple[float, int, int, int, int]:
    """(text height, label width, label height, padx, pady), the text made smaller where the label would be
    wider or taller than the picture."""
    for _ in range(4):
        tw, tht = _text_size(text, th)
        padx, pady = round(0.35 * th), round(0.3 * th)
        lw, lh = tw + 2 * padx, tht + 2 * pady
        if (lw <= w and lh <= h) or th <= 6.0:
            break
        th = max(6.0, th * min(w / lw, h / lh))
    return th, lw, lh, padx, pady


def _place_labels(people: list[_Prepared], st: _Style, h: int, w: int, tags=None) -> list:
    """One "Q 0.72" label per person with a finite box (prefixed by its tag, e.g. a track id), inside the
    picture, placed greedily, larger people first: each takes the candidate spot around its box (_label_spots)
    that overlaps no label placed before it and hides the fewest keypoints, limbs and other people's boxes,
    nearest its box (_spot_costs). A label away from its box gets a thin leader line to it."""
    scene = _scene(people)
    sizes = [float(p.box[2] * p.box[3]) if np.isfinite(p.box).all() else -1.0 for p in people]
    labels, taken = [None] * len(people), []
    for n in sorted(range(len(people)), key=lambda n: -sizes[n]):
        p = people[n]
        if not np.isfinite(p.box).all():
            continue
        pst = p.st or st
        text = _label_text(p, None if tags is None else tags[n])
        th, lw, lh, padx, pady = _label_size(text, 1.15 * pst.th, h, w)
        rects = _label_spots(p.box, lw, lh, pst.box_t, h, w)
        rect = tuple(int(v) for v in rects[int(np.argmin(_spot_costs(rects, n, scene, taken, pst.r + pst.o)))])
        taken.append(rect)
        labels[n] = _Label(text, rect, padx, pady, quality_color(p.pose_q), th, _leader(rect, scene.boxes[n]))
    return labels


def _draw_box(img, p: _Prepared) -> None:
    """The person's box in its pose quality's colour; dashed where their track's identity is unsure (cv2 draws
    no dashed line: short segments, as occluded limbs are drawn)."""
    if not np.isfinite(p.box).all():
        return
    x, y, bw, bh = p.box
    colour = quality_color(p.pose_q)
    if not p.id_unsure:
        cv2.rectangle(img, _pt((x, y)), _pt((x + bw, y + bh)), colour, p.st.box_t, _AA, _SHIFT)
        return
    corners = np.array([(x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh)], float)
    for k in range(4):
        for a, b in _dashes(corners[k], corners[(k + 1) % 4], p.st.dash, p.st.gap):
            _line(img, a, b, colour, p.st.box_t)


def _draw_label(img, lab: _Label | None) -> None:
    if lab is None:
        return
    x0, y0, x1, y1 = lab.rect
    if lab.leader is not None:
        _line(img, *lab.leader, lab.bg, 1)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), lab.bg, -1)
    # dark text on the bright part of the scale, white on the dark red end
    fg = (0, 0, 0) if 0.114 * lab.bg[0] + 0.587 * lab.bg[1] + 0.299 * lab.bg[2] > 120 else (255, 255, 255)
    _text(img, lab.text, x0 + lab.padx, y1 - lab.pady, lab.th, fg)


# ----------------------------------------------------------------------------------------------- legend
class _Legend:
    """Layout of the legend panel (title, colour bar with ticks, symbol keys, Q note) for a given width.

    Items wrap like words when the width is tight; ``fits`` is False when a single item is wider.
    """

    TITLE = ("keypoint quality", "(predicted OPKS)")   # wrap units: never break inside the parenthesis
    NOTE = ("Q: pose quality", "(predicted OKS)")

    def __init__(self, th: float, max_w: float, show_faint: bool):
        self.th = th
        th_i = int(round(th))
        self.pad = max(3, round(0.6 * th))
        self.line_h = int(round(1.65 * th))
        self.space = _text_size(" ", th)[0] + max(1, round(0.15 * th))
        sym_w = int(round(2.6 * th))
        keys = [("visible", "dot"), ("occluded", "ring")] + ([("not labelled", "faint")] if show_faint else [])
        self.key_items = [(sym_w + round(0.6 * th) + _text_size(t, th)[0], t, kind) for t, kind in keys]
        self.sym_w = sym_w
        title_words = [(_text_size(wd, th)[0], wd) for wd in self.TITLE]
        note_words = [(_text_size(wd, th)[0], wd) for wd in self.NOTE]
        key_gap = int(round(1.2 * th))

        def natural(items, gap):
            return sum(w for w, *_ in items) + gap * (len(items) - 1)

        want = max(natural(title_words, self.space), natural(self.key_items, key_gap), natural(note_words, self.space))
        inner = int(min(want, max_w))
        widest = max(w for w, *_ in title_words + note_words + self.key_items)
        self.fits = widest <= inner and inner >= 6 * th
        inner = max(inner, widest)
        self.inner = inner

        def flow(items, gap):
            lines, cur, cur_w = [], [], 0
            for it in items:
                add = it[0] + (gap if cur else 0)
                if cur and cur_w + add > inner:
                    lines.append(cur)
                    cur, cur_w = [], 0
                    add = it[0]
                cur.append(it)
                cur_w += add
            return lines + ([cur] if cur else [])

        self.title_lines = flow(title_words, self.space)
        self.key_lines = flow(self.key_items, key_gap)
        self.note_lines = flow(note_words, self.space)
        self.key_gap = key_gap
        self.bar_h = max(4, int(round(0.9 * th)))
        self.tick_len = max(2, int(round(0.35 * th)))
        ticks = (0.0, 0.25, 0.5, 0.75, 1.0)
        tick_w = sum(_text_size(f"{t:g}", th)[0] for t in ticks) + 4 * key_gap
        self.ticks = ticks if tick_w <= inner else (0.0, 0.5, 1.0)
        self.gap = int(round(0.55 * th))
        self.w = inner + 2 * self.pad
        self.h = (2 * self.pad + self.line_h * (len(self.title_lines) + len(self.key_lines) + len(self.note_lines))
                  + self.gap + self.bar_h + self.tick_len + th_i + 2 * self.gap + self.gap)

    def paint(self, img, x0: int, y0: int, panel: bool) -> None:
        """Draw at (x0, y0); ``panel`` darkens the area behind it (corner mode); a strip is already dark."""
        th = self.th
        if panel:
            y1, x1 = min(img.shape[0], y0 + self.h), min(img.shape[1], x0 + self.w)
            roi = img[y0:y1, x0:x1]
            roi[:] = cv2.convertScaleAbs(roi, alpha=1 - _PANEL_ALPHA, beta=_DARK[0] * _PANEL_ALPHA)  # _DARK is grey
        x, y = x0 + self.pad, y0 + self.pad
        white = (245, 245, 245)
        for line in self.title_lines:
            cx = x
            for w, wd in line:
                _text(img, wd, cx, y + (self.line_h + th) / 2, th, white)
                cx += w + self.space
            y += self.line_h
        y += self.gap // 2
        bar = np.repeat(quality_color(np.linspace(0.0, 1.0, self.inner))[None], self.bar_h, 0)
        hh = min(self.bar_h, img.shape[0] - y)
        ww = min(self.inner, img.shape[1] - x)
        if hh > 0 and ww > 0:
            img[y:y + hh, x:x + ww] = bar[:hh, :ww]
        y += self.bar_h
        tick_t = max(1, round(0.12 * th))
        for t in self.ticks:
            tx = x + t * (self.inner - 1)
            cv2.line(img, _pt((tx, y)), _pt((tx, y + self.tick_len)), white, tick_t, _AA, _SHIFT)
            label = f"{t:g}"
            lw = _text_size(label, th)[0]
            lx = min(max(tx - lw / 2, x), x + self.inner - lw)
            _text(img, label, lx, y + self.tick_len + self.gap // 2 + th, th, white)
        y += self.tick_len + int(round(th)) + 2 * self.gap
        for line in self.key_lines:
            cx = x
            for w, text, kind in line:
                self._symbol(img, kind, cx, y + self.line_h / 2)
                _text(img, text, cx + self.sym_w + round(0.6 * th), y + (self.line_h + th) / 2, th, white)
                cx += w + self.key_gap
            y += self.line_h
        for line in self.note_lines:
            cx = x
            for w, wd in line:
                _text(img, wd, cx, y + (self.line_h + th) / 2, th, (200, 200, 200))
                cx += w + self.space
            y += self.line_h

    def _symbol(self, img, kind: str, x: float, yc: float) -> None:
        """Keypoint symbol with a short limb stub: dot + solid, ring + dashed, faint dot + thin line."""
        th = self.th
        r = 0.42 * th
        lw = max(1, round(0.22 * th))
        c = np.array([x + r + 1, yc])
        end = np.array([x + self.sym_w, yc])
        if kind == "dot":
            _line(img, c, end, _NEUTRAL, lw)
            _circle(img, c, r, _NEUTRAL, -1)
        elif kind == "ring":
            rt = max(1, round(0.3 * r))
            seg = _trim(c, end, r + rt / 2, 0.0)
            if seg is not None:
                for a, b in _dashes(*seg, 1.2 * lw + 1.5, 1.6 * lw + 2):
                    _line(img, a, b, _NEUTRAL, lw)
            _circle(img, c, r, _NEUTRAL, rt)
        else:
            mask = np.zeros(img.shape[:2], np.uint8)
            _line(mask, c, end, 255, max(1, lw // 2))
            _circle(mask, c, 0.6 * r, 255, -1)
            _blend_mask(img, mask, _FAINT, 0.75)


class _CompactLegend:
    """One line, "quality 0 [colour bar] 1", for pictures too small for the full legend: the colour scale
    alone (the symbol keys and the Q note are left out)."""

    fits = True
    WORD = "quality"

    def __init__(self, th: float):
        self.th = th
        self.pad = max(2, round(0.45 * th))
        self.space = max(2, round(0.4 * th))
        self.bar_w, self.bar_h = int(round(4.0 * th)), max(3, int(round(0.8 * th)))
        self.widths = [_text_size(t, th)[0] for t in (self.WORD, "0", "1")]
        self.w = sum(self.widths) + self.bar_w + 3 * self.space + 2 * self.pad
        self.h = int(round(th)) + 2 * self.pad

    def paint(self, img, x0: int, y0: int, panel: bool) -> None:
        th, white = self.th, (245, 245, 245)
        if panel:
            roi = img[y0:min(img.shape[0], y0 + self.h), x0:min(img.shape[1], x0 + self.w)]
            roi[:] = cv2.convertScaleAbs(roi, alpha=1 - _PANEL_ALPHA, beta=_DARK[0] * _PANEL_ALPHA)
        base = y0 + self.pad + th
        x = x0 + self.pad
        for text, tw in zip((self.WORD, "0"), self.widths):
            _text(img, text, x, base, th, white if text == "0" else (200, 200, 200))
            x += tw + self.space
        top = int(round(y0 + (self.h - self.bar_h) / 2))
        bar = np.repeat(quality_color(np.linspace(0.0, 1.0, self.bar_w))[None], self.bar_h, 0)
        hh, ww = min(self.bar_h, img.shape[0] - top), min(self.bar_w, img.shape[1] - x)
        if hh > 0 and ww > 0:
            img[top:top + hh, x:x + ww] = bar[:hh, :ww]
        _text(img, "1", x + self.bar_w + self.space, base, th, white)


# The legend covers at most this share of the picture; on a picture under _SMALL_PICTURE px it never hides
# anything drawn (left out when no corner is free), since any corner of it is a large part of a person.
_LEGEND_SHARE, _SMALL_PICTURE = 0.10, 80_000


def _legend_obstacles(people: list[_Prepared], labels: list, show_faint: bool):
    """(points, boxes, label rects) a legend should not hide: drawn keypoints, points along limbs, boxes."""
    pts, boxes = [np.zeros((0, 2))], []
    t = np.linspace(0.0, 1.0, 12)[:, None]
    for p in people:
        pts.append(p.xy[p.vis >= (0 if show_faint else 1)])
        for i, j, _, _ in p.limbs:
            pts.append(p.xy[i] + t * (p.xy[j] - p.xy[i]))
        if np.isfinite(p.box).all():
            x, y, bw, bh = p.box
            boxes.append((x, y, x + bw, y + bh))
    return np.concatenate(pts), boxes, [lab.rect for lab in labels if lab is not None]


def _legend_layouts(th: float, w: int, show_faint: bool, strict: bool, compact: bool) -> list:
    """Layouts to try, preferred first: the full legend wide (one-line title) then narrow (wrapped), and, when
    not strict, as wide as the picture; or the compact one-line legend."""
    if compact:
        return [_CompactLegend(th)]
    pad = max(3, round(0.6 * th))
    m = max(2, round(0.6 * th))
    widths = (0.5 * w - 2 * pad, 0.36 * w - 2 * pad) + (() if strict else (w - 2 * m - 2 * pad,))
    return [_Legend(th, max_w, show_faint) for max_w in widths]


def _place_legend(st: _Style, h: int, w: int, people: list[_Prepared], labels: list, show_faint: bool,
                  th: float | None = None, strict: bool = True, compact: bool = False):
    """(legend, x0, y0) for a corner panel, or None when no corner can take it.

    Tries each layout of _legend_layouts in each corner, with text height ``th`` (default: the image's); a
    layout larger than _LEGEND_SHARE of the picture is never used. strict: a corner that would cover a
    keypoint, a limb or a Q label is rejected, and the panel is at most half the picture wide and a third of
    it tall; among the rest the least covered box area wins, then the earlier layout, then the order
    bottom-right, bottom-left, top-right, top-left. strict=False (last resort) takes the corner that hides
    the fewest drawn points instead, and lets the panel be half the picture tall.
    """
    th = st.th if th is None else th
    m = max(2, round(0.6 * th))
    pts, boxes, rects = _legend_obstacles(people, labels, show_faint)
    grow = st.r + st.o + st.lw   # a dot or stroke partly under the panel counts as hidden
    best = None
    for rank, lg in enumerate(_legend_layouts(th, w, show_faint, strict, compact)):
        if not (lg.fits and lg.w * lg.h <= _LEGEND_SHARE * h * w and lg.w <= w - 2 * m
                and lg.h <= (h / 3 if strict else h / 2) and (not strict or lg.w <= 0.5 * w or compact)):
            continue
        corners = [(w - m - lg.w, h - m - lg.h), (m, h - m - lg.h), (w - m - lg.w, m), (m, m)]
        for pref, (x0, y0) in enumerate(corners):
            r = (x0, y0, x0 + lg.w, y0 + lg.h)
            inside = ((pts[:, 0] > r[0] - grow) & (pts[:, 0] < r[2] + grow)
                      & (pts[:, 1] > r[1] - grow) & (pts[:, 1] < r[3] + grow))
            hidden = int(inside.sum()) + sum(_overlap(r, lr) > 0 for lr in rects)
            if strict and hidden:
                continue
            key = (hidden, sum(_overlap(r, b) for b in boxes), rank, pref)
            if best is None or key < best[0]:
                best = (key, lg, x0, y0)
    return None if best is None else best[1:]


def _choose_legend(st: _Style, h: int, w: int, people: list[_Prepared], labels: list, show_faint: bool):
    """(legend, x0, y0) or None: the full legend in a free corner at the image's text size, else smaller text
    (down to 0.65x, never under 6 px), else the compact one-line legend in a free corner; as a last resort,
    except on a small picture, the compact legend in the corner that hides the least. The render always keeps
    the input's size (videos and side-by-side comparisons need that), so the legend goes inside, small."""
    sizes = [max(6.0, scale * st.th) for scale in (1.0, 0.8, 0.65)]
    for compact in (False, True):
        for th in sizes:
            placed = _place_legend(st, h, w, people, labels, show_faint, th=th, compact=compact)
            if placed is not None:
                return placed
    if h * w < _SMALL_PICTURE:
        return None
    return _place_legend(st, h, w, people, labels, show_faint, th=sizes[-1], strict=False, compact=True)


# ----------------------------------------------------------------------------------------------- public
def render_people(bgr: np.ndarray, people: list, show_all: bool = False,
                  legend: bool = True, radius: bool = False, tags: list[str] | None = None) -> np.ndarray:
    """Draw ``people`` on a copy of the BGR uint8 image ``bgr`` and return it (the input is never modified).

    Keypoints and limbs are coloured by predicted keypoint quality (a limb by its weaker endpoint);
    occluded keypoints (visibility 1) are hollow rings with dashed limbs; not-labelled ones
    (visibility 0) are hidden, or faint grey with ``show_all``; ``visibility=None`` means all visible.
    Each box is drawn thin with a "Q 0.72" pose-quality label, dashed for a tracked person whose
    ``id_confidence`` is under UNSURE_IDENTITY (the track may have passed to someone else). ``legend`` adds
    the colour scale and symbol keys in a corner (see the module docstring); the output always has the input's
    shape. ``tags`` (one string per person, e.g. a track id "#3") prefix the pose-quality labels. ``radius`` draws each drawn
    keypoint's conformal radius (``keypoint_radius``, where the model is calibrated) as a thin circle in the
    keypoint's colour: the true keypoint lies inside with probability 0.9.
    """
    img = np.asarray(bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
        raise PosecalInputError(f"render_people needs an HxWx3 uint8 BGR image, got {img.dtype} {img.shape}")
    out = np.ascontiguousarray(img).copy()
    h, w = out.shape[:2]
    st = _style(h, w)
    prepared = [_prepare(p, show_all, st) for p in people]
    if show_all:
        _draw_faint(out, prepared)
    for p in prepared:
        _draw_box(out, p)
    if radius:
        _draw_radii(out, people, prepared)
    _draw_skeletons(out, prepared)
    if tags is not None and len(tags) != len(people):
        raise PosecalInputError(f"render_people: {len(tags)} tags for {len(people)} people")
    labels = _place_labels(prepared, st, h, w, tags)
    for lab in labels:
        _draw_label(out, lab)
    if not legend or not prepared:   # nobody drawn: nothing for a legend to explain
        return out
    show_faint = show_all and any((p.vis == 0).any() for p in prepared)
    placed = _choose_legend(st, h, w, prepared, labels, show_faint)
    if placed is not None:
        lg, x0, y0 = placed
        lg.paint(out, x0, y0, panel=True)
    return out
