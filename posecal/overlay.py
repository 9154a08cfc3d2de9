"""Draw poses so that a viewer sees how far to trust each one.

Colour = calibrated quality on a single red -> amber -> green scale (keypoints: predicted OPKS; the
"Q" label: predicted OKS of the pose). Shape = visibility: filled dot and solid limb for a visible
keypoint, hollow ring and dashed limb for an occluded one, nothing for a not-labelled one (faint
grey with ``show_all=True``). Every size derives from the image size, so the same call suits a
150 px crop and a 4K photo.

Legend placement: a translucent dark panel in an image corner (bottom-right preferred), at most half
the image wide and a third of it tall, and only where it hides no keypoint, limb or Q label. When no
corner qualifies (small images, or people reaching every corner) the legend's text is made smaller
(down to 0.65x), and as a last resort it goes in the corner that hides the fewest drawn points (up to
the full width and half the height; left out on images too small even for that). The returned image
always has the input's shape, and has no legend when nobody is drawn.

People are read by their fields alone (a `posecal.inference.predictor.PersonPose` or anything with its box,
keypoints, keypoint_quality, visibility, pose_quality and keypoint_radius), so this module sits in a low layer
and the result types above it draw themselves without an upward import.
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
    """Pixel sizes, all proportional to the image size (sqrt of its area)."""

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


def _style(h: int, w: int) -> _Style:
    u = math.sqrt(h * w) / 100.0
    lw = max(1, round(0.5 * u))
    r = max(2.5, 0.9 * u)
    o = max(1, round(0.2 * u))
    ring_t = max(lw, round(0.4 * r))
    # a slightly larger ring than the dot, with a hole of >= 2 px even on tiny images, so "hollow" stays readable
    ring_r = max(1.2 * r, ring_t / 2 + 2.0)
    return _Style(lw=lw, r=r, o=o, ring_r=ring_r, ring_t=ring_t, faint_t=max(1, lw // 2), faint_r=max(1.5, 0.55 * r),
                  box_t=max(1, round(0.25 * u)), dash=2.5 * lw + 2, gap=2.0 * lw + 3, th=max(9.0, 2.0 * u))


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


def _prepare(p, show_all: bool) -> _Prepared:
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
    return _Prepared(xy, q, vis, limbs, np.asarray(p.box, float).reshape(4), float(p.pose_quality))


def _draw_radii(img, people: list, prepared: list[_Prepared], st: _Style) -> None:
    """Thin circles of the keypoints' conformal radii (people without radii are skipped)."""
    for person, p in zip(people, prepared):
        radii = getattr(person, "keypoint_radius", None)
        if radii is None:
            continue
        for i, r in enumerate(np.asarray(radii, float).reshape(-1)[: len(p.xy)]):
            if p.vis[i] > 0 and np.isfinite(r) and r > 0:
                _circle(img, p.xy[i], float(r), quality_color(p.q[i]), st.faint_t)


def _end_trim(vis: int, st: _Style) -> float:
    """How far a limb stops short of its keypoint: at the outer edge of a ring, at the centre of a dot."""
    return st.ring_r + st.ring_t / 2.0 + st.o if vis == 1 else 0.0


def _draw_faint(img, people: list[_Prepared], st: _Style) -> None:
    mask = np.zeros(img.shape[:2], np.uint8)
    for p in people:
        for i, j, kind, _ in p.limbs:
            if kind == "faint":
                _line(mask, p.xy[i], p.xy[j], 255, st.faint_t)
        for c in p.xy[p.vis == 0]:
            _circle(mask, c, st.faint_r, 255, -1)
    _blend_mask(img, mask, _FAINT, _FAINT_ALPHA)


def _limb_pieces(p: _Prepared, i: int, j: int, kind: str, st: _Style):
    seg = _trim(p.xy[i], p.xy[j], _end_trim(p.vis[i], st), _end_trim(p.vis[j], st))
    if seg is None:
        return []
    return _dashes(*seg, st.dash, st.gap) if kind == "dashed" else [seg]


def _draw_skeletons(img, people: list[_Prepared], st: _Style) -> None:
    # 1. translucent dark halo under every limb: keeps colours legible on any background
    halo = np.zeros(img.shape[:2], np.uint8)
    for p in people:
        for i, j, kind, _ in p.limbs:
            if kind != "faint":
                for a, b in _limb_pieces(p, i, j, kind, st):
                    _line(halo, a, b, 255, st.lw + 2 * st.o)
    _blend_mask(img, halo, _DARK, _HALO_ALPHA)
    # 2. limbs, coloured by the weaker endpoint (a limb is only as trustworthy as its worse end)
    for p in people:
        for i, j, kind, lq in p.limbs:
            if kind != "faint":
                for a, b in _limb_pieces(p, i, j, kind, st):
                    _line(img, a, b, quality_color(lq), st.lw)
    # 3. keypoints on top: dark rim, then the quality colour; occluded ones stay hollow
    for p in people:
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


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _place_labels(people: list[_Prepared], st: _Style, h: int, w: int, tags=None) -> list:
    """One "Q 0.72" label per person with a finite box (prefixed by its tag, e.g. a track id): above the box's
    top-left corner if it does not collide with an earlier label, else inside the top-left, below the
    bottom-left, above the top-right."""
    labels, taken = [], []
    th = 1.15 * st.th
    for n, p in enumerate(people):
        if not np.isfinite(p.box).all():
            labels.append(None)
            continue
        text = "Q n/a" if math.isnan(p.pose_q) else f"Q {p.pose_q:.2f}"
        if tags is not None:
            text = f"{tags[n]} {text}"
        tw, tht = _text_size(text, th)
        padx, pady = round(0.4 * st.th), round(0.35 * st.th)
        lw, lh = tw + 2 * padx, tht + 2 * pady
        bx, by, bw, bh = (float(v) for v in p.box)
        left, right = round(bx) - st.box_t // 2, round(bx + bw) + st.box_t // 2 + 1 - lw
        top, bottom = round(by), round(by + bh) + st.box_t // 2 + 1
        rects = []
        # the four usual spots, then (people in a group, whose boxes share corners) the box's left edge
        # stepping down one label height at a time, then the top-left spot even if it overlaps
        spots = [(left, top - lh), (left, top), (left, bottom), (right, top - lh)]
        spots += [(left, top + k * lh) for k in range(1, max(1, int(bh // max(lh, 1))))]
        for x0, y0 in spots:
            x0 = int(np.clip(x0, 0, max(0, w - lw)))
            y0 = int(np.clip(y0, 0, max(0, h - lh)))
            rects.append((x0, y0, x0 + lw, y0 + lh))
        rect = next((r for r in rects if not any(_overlap(r, t) > 0 for t in taken)), rects[0])
        taken.append(rect)
        labels.append(_Label(text, rect, padx, pady, quality_color(p.pose_q)))
    return labels


def _draw_box(img, p: _Prepared, st: _Style) -> None:
    if not np.isfinite(p.box).all():
        return
    x, y, bw, bh = p.box
    cv2.rectangle(img, _pt((x, y)), _pt((x + bw, y + bh)), quality_color(p.pose_q), st.box_t, _AA, _SHIFT)


def _draw_label(img, lab: _Label | None, st: _Style) -> None:
    if lab is None:
        return
    x0, y0, x1, y1 = lab.rect
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), lab.bg, -1)
    # dark text on the bright part of the scale, white on the dark red end
    fg = (0, 0, 0) if 0.114 * lab.bg[0] + 0.587 * lab.bg[1] + 0.299 * lab.bg[2] > 120 else (255, 255, 255)
    _text(img, lab.text, x0 + lab.padx, y1 - lab.pady, 1.15 * st.th, fg)


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


def _place_legend(st: _Style, h: int, w: int, people: list[_Prepared], labels: list, show_faint: bool,
                  th: float | None = None, strict: bool = True):
    """(legend, x0, y0) for a corner panel, or None when no corner can take it.

    Tries a wide (one-line title) and a narrow (wrapped) layout in each corner, with text height ``th``
    (default: the image's). strict: a corner that would cover a keypoint, a limb or a Q label is rejected;
    among the rest the least covered box area wins, then the wide layout, then the order bottom-right,
    bottom-left, top-right, top-left. strict=False (last resort) takes the corner that hides the fewest
    drawn points instead, and lets the panel be half the image tall.
    """
    th = st.th if th is None else th
    pad = max(3, round(0.6 * th))
    m = max(2, round(0.6 * th))
    pts, boxes = [np.zeros((0, 2))], []
    t = np.linspace(0.0, 1.0, 12)[:, None]
    for p in people:
        pts.append(p.xy[p.vis >= (0 if show_faint else 1)])
        for i, j, _, _ in p.limbs:
            pts.append(p.xy[i] + t * (p.xy[j] - p.xy[i]))
        if np.isfinite(p.box).all():
            x, y, bw, bh = p.box
            boxes.append((x, y, x + bw, y + bh))
    pts = np.concatenate(pts)
    rects = [lab.rect for lab in labels if lab is not None]
    grow = st.r + st.o + st.lw   # a dot or stroke partly under the panel counts as hidden
    best = None
    for narrow, max_w in enumerate((0.5 * w - 2 * pad, 0.36 * w - 2 * pad, w - 2 * m - 2 * pad)):
        if narrow == 2 and strict:
            break
        lg = _Legend(th, max_w, show_faint)
        if not (lg.fits and lg.w <= (0.5 if strict else 1.0) * w - (0 if strict else 2 * m)
                and lg.h <= h / (3 if strict else 2)):
            continue
        corners = [(w - m - lg.w, h - m - lg.h), (m, h - m - lg.h), (w - m - lg.w, m), (m, m)]
        for pref, (x0, y0) in enumerate(corners):
            r = (x0, y0, x0 + lg.w, y0 + lg.h)
            inside = ((pts[:, 0] > r[0] - grow) & (pts[:, 0] < r[2] + grow)
                      & (pts[:, 1] > r[1] - grow) & (pts[:, 1] < r[3] + grow))
            hidden = int(inside.sum()) + sum(_overlap(r, lr) > 0 for lr in rects)
            if strict and hidden:
                continue
            key = (hidden, sum(_overlap(r, b) for b in boxes), narrow, pref)
            if best is None or key < best[0]:
                best = (key, lg, x0, y0)
    return None if best is None else best[1:]


# ----------------------------------------------------------------------------------------------- public
def render_people(bgr: np.ndarray, people: list, show_all: bool = False,
                  legend: bool = True, radius: bool = False, tags: list[str] | None = None) -> np.ndarray:
    """Draw ``people`` on a copy of the BGR uint8 image ``bgr`` and return it (the input is never modified).

    Keypoints and limbs are coloured by predicted keypoint quality (a limb by its weaker endpoint);
    occluded keypoints (visibility 1) are hollow rings with dashed limbs; not-labelled ones
    (visibility 0) are hidden, or faint grey with ``show_all``; ``visibility=None`` means all visible.
    Each box is drawn thin with a "Q 0.72" pose-quality label. ``legend`` adds the colour scale and
    symbol keys in a corner (see the module docstring); the output always has the input's shape. ``tags``
    (one string per person, e.g. a track id "#3") prefix the pose-quality labels. ``radius`` draws each drawn
    keypoint's conformal radius (``keypoint_radius``, where the model is calibrated) as a thin circle in the
    keypoint's colour: the true keypoint lies inside with probability 0.9.
    """
    img = np.asarray(bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
        raise PosecalInputError(f"render_people needs an HxWx3 uint8 BGR image, got {img.dtype} {img.shape}")
    out = np.ascontiguousarray(img).copy()
    h, w = out.shape[:2]
    st = _style(h, w)
    prepared = [_prepare(p, show_all) for p in people]
    if show_all:
        _draw_faint(out, prepared, st)
    for p in prepared:
        _draw_box(out, p, st)
    if radius:
        _draw_radii(out, people, prepared, st)
    _draw_skeletons(out, prepared, st)
    if tags is not None and len(tags) != len(people):
        raise PosecalInputError(f"render_people: {len(tags)} tags for {len(people)} people")
    labels = _place_labels(prepared, st, h, w, tags)
    for lab in labels:
        _draw_label(out, lab, st)
    if not legend or not prepared:   # nobody drawn: nothing for a legend to explain
        return out
    show_faint = show_all and any((p.vis == 0).any() for p in prepared)
    # a free corner at the image's text size, else smaller text, else the corner that hides the least:
    # the render always keeps the input's size (videos and side-by-side comparisons need that)
    for scale in (1.0, 0.8, 0.65):
        placed = _place_legend(st, h, w, prepared, labels, show_faint, th=max(6.0, scale * st.th))
        if placed is not None:
            break
    else:
        placed = _place_legend(st, h, w, prepared, labels, show_faint, th=max(6.0, 0.65 * st.th), strict=False)
    if placed is not None:   # None: even the smallest legend is larger than the image allows
        lg, x0, y0 = placed
        lg.paint(out, x0, y0, panel=True)
    return out
