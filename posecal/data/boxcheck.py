"""Is a person box one the model can crop? One rule for every box a user gives (predict --boxes, eval --boxes,
the Python API): boxes that cannot hold a person are skipped, boxes partly outside their image clipped to it,
and each call says so in ONE line naming the boxes, never silently and never one line per box.

It sits in `data/` (below `detect/`) because reading a COCO detections file for eval (`data/coco.py`) needs it
as much as `data/box_files.py` does.
"""
from __future__ import annotations

import numpy as np

# A box under a pixel wide or high holds no person: its crop is one pixel blown up to the model's input, and the
# pose on it is confident garbage. Detectors drop slivers under 2 px (detect/runtime.py); user boxes get 1 px.
MIN_BOX_SIDE = 1.0
SHOWN = 5   # entries named per kind in a summary line; the rest are counted


def box_verdict(box, width: float | None, height: float | None) -> tuple[np.ndarray | None, str | None]:
    """(the box to use, why it changed) for one x, y, w, h box: (None, reason) when skipped (non-finite,
    zero/negative size, under MIN_BOX_SIDE, outside the image or only a sliver inside), (clipped box,
    "clipped") when it reached more than half a pixel beyond the image, else (box, None). width/height None:
    image size unknown, only the size checks apply."""
    box = np.asarray(box, float)
    x, y, w, h = box
    if not np.all(np.isfinite(box)):
        return None, "has non-finite values"
    if w <= 0 or h <= 0:
        return None, "has zero or negative size"
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        return None, f"is under {MIN_BOX_SIDE:g} px ({w:.3g} x {h:.3g})"
    if width is None or height is None:
        return box, None
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None, f"lies outside the {width}x{height} image"
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return None, f"has under {MIN_BOX_SIDE:g} px inside the {width}x{height} image"
    clipped = np.array([x0, y0, x1 - x0, y1 - y0])
    return (clipped, "clipped") if np.abs(clipped - box).max() > 0.5 else (box, None)


def summary_line(where: str, total: int, skipped: list[str], clipped: list[str], image: str = "the image",
                 noun: str = "box(es)") -> str | None:
    """'WHERE: skipped 2 of 5 box(es): A, B; clipped 1 to the image: C' (None when nothing happened); each list
    shows its first SHOWN items and counts the rest."""
    def listed(items: list[str]) -> str:
        more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
        return ", ".join(items[:SHOWN]) + more

    parts = []
    if skipped:
        parts.append(f"skipped {len(skipped)} of {total} {noun}: {listed(skipped)}")
    if clipped:
        parts.append(f"clipped {len(clipped)} to {image}: {listed(clipped)}")
    return f"{where}: {'; '.join(parts)}" if parts else None


def check_boxes(boxes: np.ndarray, scores: np.ndarray, width: int, height: int, where: str,
                labels: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The boxes of one image, by box_verdict: (kept boxes (M, 4), their scores, messages). The messages are one
    summary line naming each skipped or clipped box (by `labels`, e.g. a boxes file's entry numbers; default
    '#i'), and one when the boxes look normalised to [0, 1] (a common mix-up that would silently give one-pixel
    crops). The CLI prints them, the Python API warns with them: one rule for both."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    labels = labels or [f"#{i}" for i in range(len(boxes))]
    messages = normalised_message(boxes, width, height, where)
    kept, kept_scores, skipped, clipped = [], [], [], []
    for i, box in enumerate(boxes):
        shown = np.round(box, 1).tolist()
        new, why = box_verdict(box, width, height)
        if new is None:
            skipped.append(f"{labels[i]} {shown} {why}")
            continue
        if why == "clipped":
            clipped.append(f"{labels[i]} {shown} -> {np.round(new, 1).tolist()}")
        kept.append(new)
        kept_scores.append(scores[i])
    line = summary_line(where, len(boxes), skipped, clipped, f"the {width}x{height} image")
    messages += [line] if line else []
    return np.array(kept, float).reshape(-1, 4), np.asarray(kept_scores, float).reshape(-1), messages


def normalised_message(boxes: np.ndarray, width: int, height: int, where: str) -> list[str]:
    """A message when every coordinate is within [0, 1] of an image larger than that: such boxes are almost
    surely normalised, while posecal wants pixels (they are then also under a pixel, and skipped)."""
    finite = np.asarray(boxes, float)[np.all(np.isfinite(boxes), axis=1)] if len(boxes) else np.zeros((0, 4))
    if len(finite) == 0 or max(width, height) <= 2 or np.abs(finite).max() > 1:
        return []
    return [f"{where}: all boxes have coordinates <= 1, as if normalised to [0, 1]; posecal wants pixels "
            f"(x, y, w, h) in the {width}x{height} image"]
