"""COCO-format keypoint data: persons with boxes (GT or detections), validated with clear errors."""
from __future__ import annotations

import functools
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from posecal.data.boxcheck import box_verdict, summary_line
from posecal.data.images import check_image_folder, stored_size
from posecal.data.images import read_image  # noqa: F401 - re-exported: the one image reader
from posecal.data.schema import Field, checked_entries, current_skips, left_out
from posecal.errors import PosecalInputError
from posecal.skeleton import COCO_KEYPOINTS, LSP_TO_COCO, NUM_KEYPOINTS
from posecal.validation import NON_NEGATIVE, POSITIVE, PROBABILITY, Rule


@dataclass
class PersonRecord:
    """One person to estimate: the image, the box that locates it and (when known) its GT keypoints."""

    image_path: str
    image_id: int
    bbox: np.ndarray                 # [x, y, w, h] in image pixels
    keypoints: np.ndarray            # (K, 3): x, y, v; zeros when unknown
    area: float                      # GT area (s^2 in OKS); box area when unknown
    ann_id: int = -1
    score: float = 1.0               # detector score (1 for GT boxes)
    file_name: str = ""
    # False where the labels do not tell visible from occluded from absent (LSPET: v = 2 may be hidden,
    # v = 0 is "position unknown"): the visibility loss then ignores them unless augmentation sets them.
    visibility_known: bool = True


def read_json(path) -> object:
    path = Path(path)
    if not path.is_file():
        raise PosecalInputError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PosecalInputError(f"{path}: not valid JSON ({e})") from None


def _positive_size(box: np.ndarray) -> str | None:
    return None if box[2] > 0 and box[3] > 0 else f"width and height must be > 0, got {[float(f'{v:g}') for v in box]}"


def _visibility_flags(kpts: np.ndarray) -> str | None:
    flags = kpts.reshape(-1, 3)[:, 2]
    bad = flags[~np.isin(flags, (0, 1, 2))]
    return f"visibility flags (every third number) must be 0, 1 or 2, got {bad[0]:g}" if len(bad) else None


BBOX = Field("numbers", shape=(4,), expect="4 numbers [x, y, w, h]", check=_positive_size)
IMAGE = {"id": Field("int", required=True), "file_name": Field("text", required=True),
         "width": Field("int", rule=POSITIVE), "height": Field("int", rule=POSITIVE)}
CATEGORY = {"id": Field("int", required=True)}
# A detection result (COCO detection results format): where a person is, not what pose.
DETECTION = {"image_id": Field("int"), "bbox": Field("numbers", required=True, shape=(4,),
                                                      expect="4 numbers [x, y, w, h]"),
             "score": Field("number", rule=PROBABILITY), "category_id": Field("int"), "file_name": Field("text")}
PERSON_CATEGORY = 1


def annotation_spec(num_keypoints: int | None = NUM_KEYPOINTS, need_keypoints: bool = True) -> dict[str, Field]:
    """The fields of a COCO keypoint annotation; num_keypoints None: any number of (x, y, v) triples."""
    return {"id": Field("int", required=True), "image_id": Field("int", required=True),
            "category_id": Field("int"), "iscrowd": Field("int", rule=Rule(choices=(0, 1))),
            "num_keypoints": Field("int", rule=NON_NEGATIVE), "area": Field("number", rule=NON_NEGATIVE),
            "bbox": replace(BBOX, required=True),
            "keypoints": Field("numbers", required=need_keypoints, shape=(num_keypoints, 3), flat=True,
                               check=_visibility_flags, missing="missing (not a keypoint file?)")}


def read_coco(path, num_keypoints: int | None = NUM_KEYPOINTS, need_keypoints: bool = True) -> dict:
    """A COCO keypoint file with every field of its images, categories and annotations checked: the file's
    dict holding only the usable entries (each bad one is a warning line naming the file, the entry and the
    field), annotations with the defaults pycocotools needs filled in (area: the box's, iscrowd: 0,
    num_keypoints: the labelled ones), categories a person one when the file has none. Everything that reads
    a COCO file (training, eval, pycocotools' ground truth, calibration) reads it through here."""
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise PosecalInputError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations')")
    images = unique_ids(path, checked_entries(path, data["images"], IMAGE, "images[{i}]", "id", what="images"),
                        "images[{i}]")
    image_ids = {img["id"] for _, img in images}
    refs = {"image_id": (image_ids, "no image with id {} in its images")}
    anns = unique_ids(path, checked_entries(path, data["annotations"], annotation_spec(num_keypoints, need_keypoints),
                                            "annotations[{i}]", "id", refs, what="annotations"), "annotations[{i}]")
    # posecal knows one category, people: pycocotools needs the list, a usable one or else the person one
    categories = checked_entries(path, data.get("categories") or [], CATEGORY, "categories[{i}]", "id",
                                 what="categories", refuse_empty=False)
    return data | {"images": [img for _, img in images],
                   "categories": [c for _, c in categories] or [{"id": PERSON_CATEGORY, "name": "person"}],
                   "annotations": [_with_defaults(a) for _, a in anns]}


def unique_ids(path, entries: list[tuple[int, dict]], label: str) -> list[tuple[int, dict]]:
    """The entries whose id no earlier entry has. Which of two images or annotations with one id an id means is
    anybody's guess (pycocotools keeps the last, the persons list would hold both), so scores would silently
    depend on the order of the file: a strict job (eval) refuses the file with its other bad entries; elsewhere,
    and with --skip-invalid, the first is kept and each later one is a bad entry, skipped with its line."""
    seen, kept, lines = {}, [], []
    for i, entry in entries:
        first = seen.setdefault(entry["id"], i)
        if first == i:
            kept.append((i, entry))
        else:
            lines.append(f"{path}: {label.format(i=i)} (id {entry['id']}): id: the same id as "
                         f"{label.format(i=first)}; ids must be unique (renumber one of them)")
    for line in lines:
        left_out(line)
    return kept


def _with_defaults(ann: dict) -> dict:
    out = {"iscrowd": 0, "category_id": PERSON_CATEGORY} | ann
    out.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    if "keypoints" in ann:
        out.setdefault("num_keypoints", int(np.count_nonzero(np.asarray(ann["keypoints"])[2::3] > 0)))
    return out


def coco_image_ids(path) -> dict[str, int]:
    """{name: image id} of a COCO file's images (only they are read: `predict --annotations`), by each name an
    input of the image may have: its file_name, and its base name where no other image has that base name (a
    file_name "val/1.jpg" whose image is posed as 1.jpg, as image_file finds it). The file_names come last, so
    that the inverse {image id: name} names each image by its file_name."""
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise PosecalInputError(f"{path}: not a COCO annotation file with an 'images' list")
    by_file = {img["file_name"]: img["id"] for _, img in checked_entries(path, data["images"], IMAGE, "images[{i}]",
                                                                         "id", what="images")}
    base_names = Counter(Path(name).name for name in by_file)
    by_base = {Path(name).name: image_id for name, image_id in by_file.items()
               if base_names[Path(name).name] == 1 and Path(name).name not in by_file}
    return by_base | by_file


def image_file(folder, file_name: str) -> str:
    """Where a COCO file's image lies in its images folder: at the path its file_name gives, relative to the
    folder, else under its base name in the folder (a file_name "val/1.jpg" whose images lie flat). The one rule
    of every job that reads a COCO file's images, so that eval on labelled boxes and on a detector's find the same
    files; where neither exists, the path file_name gives, which the reader then names as not found."""
    given = os.path.join(folder, file_name)
    if os.path.isfile(given):
        return given
    flat = os.path.join(folder, os.path.basename(file_name))
    return flat if os.path.isfile(flat) else given


def unknown_ids_message(path, unknown: list[tuple[int, object]], annotations) -> str:
    """One line for detections whose image_id the annotations file does not list: most likely detections made
    for another annotation file (e.g. val vs train), so the fix is to name the right one. It starts like the
    field checks' lines (`FILE: entry I (image_id X)`), so that all of a file's skipped entries read alike."""
    (first, first_id), ids = unknown[0], sorted({str(image_id) for _, image_id in unknown})
    others = f" and {len(unknown) - 1} more detection(s)" if len(unknown) > 1 else ""
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return (f"{path}: entry {first} (image_id {first_id}){others}: image_id(s) {', '.join(ids[:5])}{more} not in "
            f"{annotations}; give the annotations file these detections were made on")


def pseudo_label_ids(annotation_file) -> set[int]:
    """Ids of the annotations marked `"pseudo": true`: people no label covered whose keypoints a model gave
    (lab/tools/pseudo_labels.py), so that training can take or leave them (`data.pseudo_labels`)."""
    data = read_json(annotation_file)
    anns = data.get("annotations", []) if isinstance(data, dict) else []
    return {a["id"] for a in anns if isinstance(a, dict) and a.get("pseudo") is True and "id" in a}


def load_coco_persons(annotation_file, image_dir, boxes_file=None, min_box_score: float = 0.0,
                      num_keypoints: int = NUM_KEYPOINTS, keypoint_map=None) -> list[PersonRecord]:
    """Persons of a COCO keypoint file: GT boxes by default, or the person boxes of a detection-results JSON.

    GT persons need num_keypoints > 0 and iscrowd = 0 (the COCO evaluation rule). `keypoint_map` maps a
    dataset's joint order onto COCO-17 (e.g. LSP-14); unmapped COCO joints get v = 0. Bad entries are
    skipped with a warning line (read_coco, _detection_persons).
    """
    check_image_folder(image_dir, annotation_file)
    src_k = len(keypoint_map) if keypoint_map is not None else num_keypoints
    data = read_coco(annotation_file, src_k)
    images = {img["id"]: img for img in data["images"]}
    where = functools.cache(functools.partial(image_file, image_dir))   # each image looked for once
    records = []
    if boxes_file is None:
        outside, persons = [], 0
        for i, ann in enumerate(data["annotations"]):
            if ann["iscrowd"] or ann["num_keypoints"] <= 0:
                continue
            kpts = np.asarray(ann["keypoints"], np.float64).reshape(src_k, 3)
            if keypoint_map is not None:
                mapped = np.zeros((num_keypoints, 3))
                for src, dst in enumerate(keypoint_map):
                    if dst is not None:
                        mapped[dst] = kpts[src]
                kpts = mapped
            if not np.any(kpts[:, 2] > 0):
                continue
            box = np.asarray(ann["bbox"], np.float64)
            img = images[ann["image_id"]]
            persons += 1
            # a GT box wholly outside its image (a label error) would be posed on padding, without a word
            kept, why = box_verdict(box, img.get("width"), img.get("height"))
            if kept is None:
                outside.append(f"annotations[{i}] (id {ann['id']}) {why}")
                continue
            records.append(PersonRecord(where(img["file_name"]), int(img["id"]), box, kpts,
                                        float(ann["area"]), ann_id=int(ann["id"]), file_name=img["file_name"]))
        line = summary_line(str(annotation_file), persons, outside, [], noun="GT person boxes")
        if line:
            warnings.warn(line + " (no pose is made for them: eval counts them as missed)", stacklevel=2)
    else:
        records = _detection_persons(boxes_file, annotation_file, images, where, min_box_score, num_keypoints)
    return records


def _detection_persons(boxes_file, annotation_file, images: dict, where, min_box_score: float,
                       num_keypoints: int) -> list[PersonRecord]:
    """Persons of a COCO detection-results file. Person boxes that cannot hold a person (non-finite, under a
    pixel, outside their image) are skipped and boxes partly outside clipped (data/boxcheck.py), all said in one
    warning line naming the file and entries; detections of images the annotation file lacks, or a file without
    a single person detection, are refused in one line that names the file to fix (detections of unknown images
    beside usable ones: one warning line, skipped). Each entry's fields are checked first (data/schema.py).
    `where`: an image's file from its file_name (image_file in its images folder)."""
    dets = read_json(boxes_file)
    if isinstance(dets, list) and not dets:   # a detector that found nobody: every GT person missed, AP 0
        warnings.warn(f"{boxes_file}: no detections (an empty list): nobody to estimate, so every GT person "
                      f"counts as missed", stacklevel=3)
        return []
    spec = DETECTION | {"image_id": Field("int", required=True)}
    records, unknown, skipped, clipped, persons = [], [], [], [], 0
    strict = current_skips()   # a strict job: each box left out is one of its invalid entries
    sizes: dict[int, tuple[int, int] | None] = {}
    for i, det in checked_entries(boxes_file, dets, spec, id_field="image_id", what="detections"):
        if det.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY or det.get("score", 1.0) < min_box_score:
            continue
        if det["image_id"] not in images:
            unknown.append((i, det["image_id"]))
            continue
        persons += 1
        img = images[det["image_id"]]
        label = f"entry {i} (image_id {det['image_id']})"
        width, height = img.get("width"), img.get("height")
        if width is None or height is None:   # not in the file: the image file says (a box far outside
            width, height = sizes.setdefault(img["id"], stored_size(where(img["file_name"]))) \
                or (None, None)               # it would otherwise be posed on padding, without a word)
        box, why = box_verdict(np.asarray(det["bbox"], np.float64), width, height)
        if box is None:
            skipped.append(f"{label} {why}")
            if strict is not None:
                strict.add(f"{boxes_file}: {label}: bbox: {[round(float(v), 3) for v in det['bbox']]} {why}")
            continue
        if why == "clipped":
            clipped.append(label)
        records.append(PersonRecord(where(img["file_name"]), int(img["id"]), box,
                                    np.zeros((num_keypoints, 3)), float(box[2] * box[3]),
                                    score=float(det.get("score", 1.0)), file_name=img["file_name"]))
    if unknown:   # detections made on another annotation file: refused when none is usable, else said once
        if not persons:
            raise PosecalInputError(unknown_ids_message(boxes_file, unknown, annotation_file))
        if strict is not None:
            for i, image_id in unknown:
                strict.add(f"{boxes_file}: entry {i} (image_id {image_id}): image_id: not an image of "
                           f"{annotation_file} (detections made for another annotations file?)")
        if strict is None or strict.skip:
            warnings.warn(unknown_ids_message(boxes_file, unknown, annotation_file) + "; skipped", stacklevel=3)
    if not persons:   # a detector that found nobody (or only other categories): every GT person missed, AP 0
        what = "category_id 1" + (f", score >= {min_box_score:g}" if min_box_score else "")
        warnings.warn(f"{boxes_file}: no person detections ({what}) among its {len(dets)} entries: every GT "
                      f"person counts as missed", stacklevel=3)
        return records
    line = summary_line(str(boxes_file), persons, skipped, clipped, "their image", "person boxes")
    if line and (strict is None or strict.skip or not strict.lines):   # a strict refusal comes instead
        warnings.warn(line, stacklevel=3)
    return records


def load_lspet(annotation_file, image_dir) -> list[PersonRecord]:
    """LSPET persons with their 14 joints mapped onto COCO-17 (12 limb joints; the face keypoints stay v = 0,
    so they carry zero heatmap weight). Their visibility is marked unknown (see PersonRecord).

    A file already in COCO-17's layout is read as it is: LSPET written as COCO keypoints, so that `posecal audit`
    can judge it and `posecal audit apply` mend it (its crowd labels often give the viewer's sides), and training
    can then read the mended file."""
    data = read_json(annotation_file)
    first = next(iter(data.get("annotations") or []), None) if isinstance(data, dict) else None
    coco_layout = isinstance(first, dict) and len(first.get("keypoints") or []) == 3 * NUM_KEYPOINTS
    records = load_coco_persons(annotation_file, image_dir, keypoint_map=None if coco_layout else LSP_TO_COCO)
    for r in records:
        r.visibility_known = False
    return records


def as_coco_file(records: list[PersonRecord], sizes: dict | None = None) -> dict:
    """The persons as a COCO keypoint file, as posecal holds them (17 slots each: LSPET's joints mapped, its face
    slots unlabelled): one image entry per picture, with its width and height where `sizes` (image_id -> (w, h))
    has them, one annotation per person (ids from 1). What pycocotools, `posecal eval` and `posecal audit` read,
    and what load_lspet reads back (so a data set posecal maps can be audited, and mended, as COCO)."""
    images, anns = {}, []
    for r in records:
        kp = np.asarray(r.keypoints, np.float64)
        size = (sizes or {}).get(r.image_id)
        images.setdefault(r.image_id, {"id": r.image_id, "file_name": r.file_name or Path(r.image_path).name}
                          | ({"width": int(size[0]), "height": int(size[1])} if size else {}))
        anns.append({"id": len(anns) + 1, "image_id": r.image_id, "category_id": PERSON_CATEGORY, "iscrowd": 0,
                     "keypoints": kp.ravel().tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
                     "bbox": [float(v) for v in r.bbox], "area": float(r.area)})
    return {"images": list(images.values()), "annotations": anns,
            "categories": [{"id": PERSON_CATEGORY, "name": "person", "keypoints": list(COCO_KEYPOINTS)}]}


def area_scale(matrix: np.ndarray) -> float:
    """Squared linear scale of a similarity transform (how an area changes under it)."""
    return float(abs(np.linalg.det(matrix[:, :2])))

