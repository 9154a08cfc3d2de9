"""A second look for small people: the detector again on square tiles of a wide frame.

Why: the shipped SSD squeezes the whole frame into 300 x 300, so a 768 x 432 frame loses 2.6x of its width and a
far or narrow person is a few pixels across. A tile as tall as the frame, square, is scaled alike in x and y.
On the tracking benchmark's held-out scenes (`python bench/second_look.py`, every 3rd frame) the share of people
a detection matches (IoU >= 0.5) rose from 0.763 to 0.921, at three detector runs a frame instead of one.
"""
from __future__ import annotations

import numpy as np

from posecal.detect.runtime import AnotherLook, clip_and_suppress
from posecal.metrics.boxes import inside_shares

WIDE = 1.3   # frames at least this much wider than tall get tiles; nearer square ones lose little to the squeeze
CUT_MARGIN = 0.01   # a tile's box this close (share of the tile's side) to an edge the frame goes on past is cut


def cut_by_tile(boxes: np.ndarray, tile: tuple[int, int, int], w: int, h: int) -> np.ndarray:
    """(N,) True for boxes (x, y, w, h, in the tile's own pixels) that touch an edge of the tile inside the frame:
    a person the tile cuts in two. Such a box is part of a person that the whole frame may see whole: it must not
    win the merge against the whole person's box, which a higher score of the part would otherwise let it remove."""
    x, y, side = tile
    m = CUT_MARGIN * side
    b = np.asarray(boxes, float).reshape(-1, 4)
    cut = np.zeros(len(b), bool)
    if x > 0:
        cut |= b[:, 0] <= m
    if x + side < w:
        cut |= b[:, 0] + b[:, 2] >= side - m
    if y > 0:
        cut |= b[:, 1] <= m
    if y + side < h:
        cut |= b[:, 1] + b[:, 3] >= side - m
    return cut


def square_tiles(w: int, h: int) -> list[tuple[int, int, int]]:
    """(x, y, side) of the tiles of a W x H frame: side = the shorter side, at both ends of the longer one, and one
    in the middle where two leave a gap; none for a frame less than WIDE times longer than it is wide."""
    long, short = max(w, h), min(w, h)
    if long < WIDE * short:
        return []
    starts = sorted({0, long - short} | ({(long - short) // 2} if long > 2 * short else set()))
    return [(s, 0, short) if w >= h else (0, s, short) for s in starts]


class SecondLook(AnotherLook):
    """A person detector (called like one: BGR frame -> boxes x, y, w, h and scores) that runs `detector` on the
    whole frame and on its square tiles and merges the boxes by the detector's own NMS. A tile's boxes of people the
    tile cuts in two (cut_by_tile) come last: kept only where they lie mostly outside every box kept before them."""

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = bgr.shape[:2]
        full_boxes, full_scores = self.detector(bgr)
        boxes, scores = [np.asarray(full_boxes, float).reshape(-1, 4)], [np.asarray(full_scores, float).reshape(-1)]
        cut_boxes, cut_scores = [np.zeros((0, 4))], [np.zeros(0)]
        for x, y, side in square_tiles(w, h):
            b, s = self.detector(np.ascontiguousarray(bgr[y:y + side, x:x + side]))
            b, s = np.asarray(b, float).reshape(-1, 4), np.asarray(s, float).reshape(-1)
            cut = cut_by_tile(b, (x, y, side), w, h)
            boxes.append(b[~cut] + [x, y, 0, 0])
            scores.append(s[~cut])
            cut_boxes.append(b[cut] + [x, y, 0, 0])
            cut_scores.append(s[cut])
        if len(boxes) == 1:
            return boxes[0], scores[0]
        # the tiles' scores passed the detector's threshold already (scaled for grey pictures): 0 keeps them all
        kept, kept_scores = clip_and_suppress(np.concatenate(boxes), np.concatenate(scores), w, h, 0.0,
                                              self.nms_threshold)
        parts, part_scores = clip_and_suppress(np.concatenate(cut_boxes), np.concatenate(cut_scores), w, h, 0.0,
                                               self.nms_threshold)
        alone = np.array([not len(kept) or inside_shares(p, kept).max() < 0.5 for p in parts], bool)
        out, out_scores = np.concatenate([kept, parts[alone]]), np.concatenate([kept_scores, part_scores[alone]])
        order = np.argsort(-out_scores, kind="stable")
        return out[order], out_scores[order]

