"""Person boxes for `posecal predict`: from a file (COCO detection results or a per-image JSON), checked
against the image they belong to."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posecal.errors import PosecalInputError
from posecal.sources import lookup

PERSON_CATEGORY = 1


class BoxFile:
    """Boxes by image name. Accepted formats:

    - COCO detection results: [{"image_id", "bbox": [x, y, w, h], "score", "category_id"}, ...]; entries may
      carry "file_name", otherwise `image_names` (image_id -> file name, from a COCO annotation file) maps them;
      non-person categories are ignored;
    - per image: {"name.jpg": [[x, y, w, h], [x, y, w, h, score], ...], ...}.
    Names match an input's name relative to its folder argument, or else its base name.
    """

    def __init__(self, path, image_names: dict[int, str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise PosecalInputError(f"{self.path}: boxes file not found")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PosecalInputError(f"{self.path}: not valid JSON ({e})") from None
        self.by_name: dict[str, list[list[float]]] = {}
        if isinstance(data, list):
            self._read_coco(data, image_names or {})
        elif isinstance(data, dict):
            for name, boxes in data.items():
                self.by_name[str(name)] = [self._box(b, f"entry '{name}'") for b in (boxes or [])]
        else:
            raise PosecalInputError(f"{self.path}: expected a list (COCO detections) or an object (per image)")

    def _read_coco(self, data: list, image_names: dict[int, str]) -> None:
        for i, det in enumerate(data):
            if not isinstance(det, dict) or "bbox" not in det:
                raise PosecalInputError(f"{self.path}: entry {i} is not a detection with a 'bbox'")
            if det.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
                continue
            name = det.get("file_name") or image_names.get(det.get("image_id"))
            if name is None:
                raise PosecalInputError(f"{self.path}: entry {i} has image_id {det.get('image_id')!r} but no "
                                        f"file_name; pass --annotations COCO.json to map image ids to files")
            self.by_name.setdefault(str(name), []).append(
                self._box(list(det["bbox"]) + [det.get("score", 1.0)], f"entry {i}"))

    def _box(self, values, where: str) -> list[float]:
        try:
            v = [float(x) for x in values]
        except (TypeError, ValueError):
            raise PosecalInputError(f"{self.path}: {where}: box {values!r} is not a list of numbers") from None
        if len(v) not in (4, 5):
            raise PosecalInputError(f"{self.path}: {where}: box needs [x, y, w, h] or [x, y, w, h, score], got {v}")
        return v if len(v) == 5 else v + [1.0]

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(boxes (M, 4), scores (M,)) for an image name, or None when the file does not mention it."""
        boxes = lookup(self.by_name, name)
        if boxes is None:
            return None
        arr = np.array(boxes, float).reshape(-1, 5)
        return arr[:, :4], arr[:, 4]


def check_boxes(boxes: np.ndarray, scores: np.ndarray, width: int, height: int, where: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep boxes with finite, positive size that overlap the image; one message per dropped box."""
    keep, messages = np.ones(len(boxes), bool), []
    for i, (x, y, w, h) in enumerate(boxes):
        shown = np.round(boxes[i], 1).tolist()
        if not np.all(np.isfinite(boxes[i])) or w <= 0 or h <= 0:
            messages.append(f"{where}: box {shown} has zero or negative size; skipped")
        elif x >= width or y >= height or x + w <= 0 or y + h <= 0:
            messages.append(f"{where}: box {shown} lies outside the {width}x{height} image; skipped")
        else:
            continue
        keep[i] = False
    return boxes[keep].reshape(-1, 4), scores[keep], messages
