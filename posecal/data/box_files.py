"""Person boxes for `posecal predict`: from a file (COCO detection results or a per-image JSON), checked
against the image they belong to."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from posecal.data.boxcheck import check_boxes, normalised_message  # noqa: F401 - the one box rule, re-exported
from posecal.data.coco import DETECTION, PERSON_CATEGORY, unknown_ids_message
from posecal.data.schema import Field, Problems, checked_entries, entry_label, field_problem
from posecal.data.sources import lookup
from posecal.errors import PosecalInputError
from posecal.validation import describe


def _row_problem(row: np.ndarray) -> str | None:
    """4 numbers, or 5 whose 5th is a detector score in [0, 1] (as COCO results and the API's box_scores)."""
    if len(row) not in (4, 5):
        return f"expected [x, y, w, h] or [x, y, w, h, score], got {len(row)} numbers"
    return None if len(row) == 4 or 0 <= row[4] <= 1 else f"score (5th number) must be in [0, 1], got {row[4]:g}"


BOX_ROW = Field("numbers", shape=(None,), expect="[x, y, w, h] or [x, y, w, h, score]", check=_row_problem)


class BoxFile:
    """Boxes by image name. Accepted formats:

    - COCO detection results: [{"image_id", "bbox": [x, y, w, h], "score", "category_id"}, ...]; entries may
      carry "file_name", otherwise `image_names` (image_id -> file name, from a COCO annotation file) maps them;
      non-person categories are ignored;
    - per image: {"name.jpg": [[x, y, w, h], [x, y, w, h, score], ...], ...}.
    Names match an input's name relative to its folder argument, or else its base name.
    `annotations` (the COCO file `image_names` came from) is named when a detection's image_id is not in it.
    An empty list or object, or detections without a single person, says "nobody in any image" (a detector that
    found nobody, the normal case for some pictures): `nobody` is then True and every image gets no person
    (the job says so in one line). A file of no bytes is refused: that is a write that failed, not an answer.
    """

    def __init__(self, path, image_names: dict[int, str] | None = None, annotations=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise PosecalInputError(f"{self.path}: boxes file not found")
        text = self.path.read_bytes()
        if not text.strip():
            raise PosecalInputError(f"{self.path}: empty boxes file; give person boxes in it, or leave out --boxes "
                                    f"to use the person detector")
        try:
            data = json.loads(text.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PosecalInputError(f"{self.path}: not valid JSON ({e})") from None
        self.by_name: dict[str, list[list[float]]] = {}
        self.labels: dict[str, list[str]] = {}    # each box's place in the file, for messages ("entry 3")
        if isinstance(data, list):
            self._read_coco(data, image_names or {}, annotations)
        elif isinstance(data, dict):
            self._read_per_image(data)
        else:
            raise PosecalInputError(f"{self.path}: expected a list (COCO detections) or an object (per image)")
        # [], {}, or detections of other categories only: nobody anywhere (as {"a.jpg": []} says for one image)
        self.nobody = not data or (isinstance(data, list) and not self.by_name)
        self.nobody_reason = "" if not self.nobody else "no person detections (category_id 1)" if data else \
            f"an empty {'list' if isinstance(data, list) else 'object'}"

    def _read_coco(self, data: list, image_names: dict[int, str], annotations=None) -> None:
        """Detections of people, by image name; a bad entry is skipped with a line (posecal.data.schema).
        Detections of images that `annotations` does not list: refused when none is usable, else one line."""
        problems, unknown, usable = Problems(self.path, "detections"), [], 0
        for i, det in checked_entries(self.path, data, DETECTION, id_field="image_id", what="detections"):
            name = det.get("file_name") or image_names.get(det.get("image_id"))
            if name is None and annotations is not None:
                unknown.append((i, det.get("image_id")))
                continue
            if name is None:
                problems.add(entry_label(i, det, "entry {i}", "image_id"),
                             "file_name: missing, and no image of that id known; pass --annotations COCO.json to "
                             "map image ids to files")
                continue
            usable += 1
            if det.get("category_id", PERSON_CATEGORY) == PERSON_CATEGORY:
                self.by_name.setdefault(str(name), []).append([float(v) for v in det["bbox"]]
                                                              + [float(det.get("score", 1.0))])
                self.labels.setdefault(str(name), []).append(f"entry {i}")
        if unknown and not usable:
            raise PosecalInputError(unknown_ids_message(self.path, unknown, annotations))
        if unknown:
            warnings.warn(unknown_ids_message(self.path, unknown, annotations) + "; skipped", stacklevel=3)
        problems.settle(usable, usable + len(problems.lines))

    def _read_per_image(self, data: dict) -> None:
        """{name: [[x, y, w, h(, score)], ...]}: each row checked (BOX_ROW); a bad one is skipped with a line."""
        problems, total = Problems(self.path, "boxes"), 0
        for name, rows in data.items():
            if rows is None:
                rows = []
            if not isinstance(rows, list):
                problems.add(f"entry '{name}'", f"expected a list of boxes [[x, y, w, h(, score)], ...], got "
                                                f"{describe(rows)}")
                total += 1
                continue
            self.by_name[str(name)], self.labels[str(name)] = [], []
            for j, row in enumerate(rows):
                total += 1
                problem = field_problem(row, BOX_ROW)
                if problem:
                    problems.add(f"entry '{name}'", f"box {j}: {problem}")
                else:
                    self.by_name[str(name)].append([float(v) for v in row] + [1.0] * (5 - len(row)))
                    self.labels[str(name)].append(f"box {j}")
        problems.settle(total - len(problems.lines), total)

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(boxes (M, 4), scores (M,)) for an image name, or None when the file does not mention it."""
        boxes = lookup(self.by_name, name)
        if boxes is None:
            return None
        arr = np.array(boxes, float).reshape(-1, 5)
        return arr[:, :4], arr[:, 4]

    def labels_of(self, name: str) -> list[str]:
        """Where each of `get(name)`'s boxes is in the file ('entry 3' or 'box 0'), for messages."""
        return lookup(self.labels, name) or []

    def given_to(self, name: str, video: bool = False) -> str:
        """Everything the file gives input `name` (its boxes, where they are in the file, and whether the file
        names nobody at all), as JSON text: what its poses depend on besides the picture, so a resumed run poses
        again an input whose boxes changed (the file edited, or its detections found through other annotation
        ids) and keeps the others. A video's frames are named `NAME#INDEX`: every such entry counts."""
        if video:
            frames = (f"{name}#", f"{Path(name).name}#")
            given = {k: [v, self.labels.get(k)] for k, v in self.by_name.items() if k.startswith(frames)}
        else:
            given = [lookup(self.by_name, name), self.labels_of(name)]
        return json.dumps([given, self.nobody], sort_keys=True)


def boxes_from_arraylike(value, where: str = "boxes") -> tuple[np.ndarray, np.ndarray | None] | None:
    """Python API boxes -> ((N, 4) float boxes, (N,) scores from a 5th column or None); None stays None
    (whole image). Only N x 4 / N x 5 tables or one [x, y, w, h(, score)] row are taken: a flat list of more
    numbers is refused rather than regrouped, since guessing the grouping would silently pose wrong people."""
    if value is None:
        return None
    arr = _numeric_table(value, where)
    if arr.size == 0:
        return np.zeros((0, 4)), None
    if arr.ndim == 1 and len(arr) in (4, 5):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise PosecalInputError(f"{where}: expected N x 4 or N x 5 rows of (x, y, w, h[, score]), got shape "
                                f"{arr.shape}; a flat list is not regrouped, give one row per box")
    for i, row in enumerate(arr):
        _check_row(row, f"{where}[{i}]")
    return arr[:, :4].copy(), (arr[:, 4].copy() if arr.shape[1] == 5 else None)


def _numeric_table(value, where: str) -> np.ndarray:
    """A float array of the value, or one line saying why not (ragged rows, text, objects)."""
    if isinstance(value, (str, bytes, dict)):
        raise PosecalInputError(f"{where}: expected N x 4 or N x 5 numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except ValueError:
        raise PosecalInputError(f"{where}: rows of different lengths; every box needs 4 or 5 numbers") from None
    if arr.dtype == object and arr.ndim == 1 and any(isinstance(r, (list, tuple, np.ndarray)) for r in arr):
        raise PosecalInputError(f"{where}: rows of different lengths; every box needs 4 or 5 numbers")
    if arr.size and arr.dtype.kind not in "iuf":
        culprit = _first_non_number(np.asarray(value, dtype=object))  # as given, before numpy made it text
        raise PosecalInputError(f"{where}: expected numbers, got {culprit!r}")
    return arr.astype(float)


def _first_non_number(arr: np.ndarray):
    """The first element that is not a real number, so the message shows the culprit."""
    for v in arr.ravel():
        v = v.item() if isinstance(v, np.generic) else v  # 'a', not np.str_('a')
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
    return arr.dtype


def _check_row(row: np.ndarray, where: str) -> None:
    """Finite numbers, positive size, a score in [0, 1]: a box the model can crop."""
    if not np.all(np.isfinite(row)):
        raise PosecalInputError(f"{where}: values must be finite, got {row.tolist()}")
    for name, v in (("width", row[2]), ("height", row[3])):
        if v <= 0:
            raise PosecalInputError(f"{where}: {name} must be > 0, got {v:g}")
    if len(row) == 5:
        check_score(row[4], f"{where}: score")


def check_score(v: float, where: str) -> None:
    """Box scores are detector confidences: finite and in [0, 1], as COCO results carry them."""
    if not (np.isfinite(v) and 0 <= v <= 1):
        raise PosecalInputError(f"{where} must be in [0, 1], got {v:g}")


def scores_from_arraylike(value, n_boxes: int, where: str = "box_scores") -> np.ndarray:
    """(N,) scores matching the boxes one to one; a count mismatch is refused rather than zipped short."""
    arr = _numeric_table(value, where)
    if arr.ndim > 1:
        raise PosecalInputError(f"{where}: expected one score per box, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if len(arr) != n_boxes:
        raise PosecalInputError(f"{where}: {len(arr)} scores for {n_boxes} boxes")
    for i, v in enumerate(arr):
        check_score(v, f"{where}[{i}]")
    return arr
