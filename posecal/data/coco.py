"""COCO-format keypoint data: persons with boxes (GT or detections), validated with clear errors."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecal.data.boxcheck import box_verdict, summary_line
from posecal.data.images import check_image_folder
from posecal.data.images import read_image  # noqa: F401 - re-exported: the one image reader
from posecal.errors import PosecalInputError
from posecal.skeleton import LSP_TO_COCO, NUM_KEYPOINTS


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


def _box_numbers(path, what: str, bbox) -> np.ndarray:
    try:
        return np.asarray(bbox, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise PosecalInputError(f"{path}: {what}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}") from None


def _check_box(path, what: str, bbox) -> np.ndarray:
    box = _box_numbers(path, what, bbox)
    if not np.all(np.isfinite(box)):
        raise PosecalInputError(f"{path}: {what}: bbox has non-finite values {box.tolist()}")
    if box[2] <= 0 or box[3] <= 0:
        raise PosecalInputError(f"{path}: {what}: bbox has zero or negative size {box.tolist()}")
    return box


def _check_keypoints(path, what: str, kpts, num_keypoints: int) -> np.ndarray:
    try:
        k = np.asarray(kpts, dtype=np.float64).reshape(num_keypoints, 3)
    except (TypeError, ValueError):
        raise PosecalInputError(f"{path}: {what}: keypoints must be {num_keypoints}x3 numbers") from None
    if not np.all(np.isfinite(k)):
        raise PosecalInputError(f"{path}: {what}: keypoints contain NaN or infinite values")
    return k


def unknown_ids_message(path, unknown: list[tuple[int, object]], annotations) -> str:
    """One line for detections whose image_id the annotations file does not list: most likely detections made
    for another annotation file (e.g. val vs train), so the fix is to name the right one."""
    ids = sorted({str(image_id) for _, image_id in unknown})
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return (f"{path}: {len(unknown)} detection(s) (first: entry {unknown[0][0]}) have image_id(s) "
            f"{', '.join(ids[:5])}{more} that {annotations} does not list; give the annotations file these "
            f"detections were made on")



def load_coco_persons(annotation_file, image_dir, boxes_file=None, min_box_score: float = 0.0,
                      num_keypoints: int = NUM_KEYPOINTS, keypoint_map=None) -> list[PersonRecord]:
    """Persons of a COCO keypoint file: GT boxes by default, or the person boxes of a detection-results JSON.

    GT persons need num_keypoints > 0 and iscrowd = 0 (the COCO evaluation rule). `keypoint_map` maps a
    dataset's joint order onto COCO-17 (e.g. LSP-14); unmapped COCO joints get v = 0.
    """
    data = read_json(annotation_file)
    check_image_folder(image_dir, annotation_file)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise PosecalInputError(f"{annotation_file}: not a COCO annotation file (needs 'images' and 'annotations')")
    images = {}
    for img in data["images"]:
        if "id" not in img or "file_name" not in img:
            raise PosecalInputError(f"{annotation_file}: image entry without 'id'/'file_name': {str(img)[:80]}")
        images[img["id"]] = img
    src_k = len(keypoint_map) if keypoint_map is not None else num_keypoints
    records = []
    if boxes_file is None:
        for ann in data["annotations"]:
            what = f"annotation {ann.get('id', '?')}"
            if "keypoints" not in ann:
                raise PosecalInputError(f"{annotation_file}: {what} has no 'keypoints' (not a keypoint file)")
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 1) <= 0:
                continue
            if ann.get("image_id") not in images:
                raise PosecalInputError(f"{annotation_file}: {what} refers to unknown image_id {ann.get('image_id')}")
            kpts = _check_keypoints(annotation_file, what, ann["keypoints"], src_k)
            if keypoint_map is not None:
                mapped = np.zeros((num_keypoints, 3))
                for src, dst in enumerate(keypoint_map):
                    if dst is not None:
                        mapped[dst] = kpts[src]
                kpts = mapped
            if not np.any(kpts[:, 2] > 0):
                continue
            box = _check_box(annotation_file, what, ann.get("bbox"))
            img = images[ann["image_id"]]
            area = float(ann.get("area", box[2] * box[3]))
            records.append(PersonRecord(os.path.join(image_dir, img["file_name"]), int(img["id"]), box, kpts,
                                        area, ann_id=int(ann.get("id", -1)), file_name=img["file_name"]))
    else:
        records = _detection_persons(boxes_file, annotation_file, images, image_dir, min_box_score, num_keypoints)
    return records


def _detection_persons(boxes_file, annotation_file, images: dict, image_dir, min_box_score: float,
                       num_keypoints: int) -> list[PersonRecord]:
    """Persons of a COCO detection-results file. Person boxes that cannot hold a person (non-finite, under a
    pixel, outside their image) are skipped and boxes partly outside clipped (data/boxcheck.py), all said in one
    warning line naming the file and entries; detections of images the annotation file lacks, or a file without
    a single person detection, are refused in one line that names the file to fix."""
    dets = read_json(boxes_file)
    if not isinstance(dets, list):
        raise PosecalInputError(f"{boxes_file}: detection results must be a JSON list of "
                                "{image_id, bbox, score}")
    records, unknown, skipped, clipped, persons = [], [], [], [], 0
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or "bbox" not in det or "image_id" not in det:
            raise PosecalInputError(f"{boxes_file}: entry {i} lacks 'image_id' or 'bbox'")
        if det.get("category_id", 1) != 1 or det.get("score", 1.0) < min_box_score:
            continue
        if det["image_id"] not in images:
            unknown.append((i, det["image_id"]))
            continue
        persons += 1
        img = images[det["image_id"]]
        label = f"entry {i} (image_id {det['image_id']})"
        box, why = box_verdict(_box_numbers(boxes_file, f"entry {i}", det["bbox"]), img.get("width"),
                               img.get("height"))
        if box is None:
            skipped.append(f"{label} {why}")
            continue
        if why == "clipped":
            clipped.append(label)
        records.append(PersonRecord(os.path.join(image_dir, img["file_name"]), int(img["id"]), box,
                                    np.zeros((num_keypoints, 3)), float(box[2] * box[3]),
                                    score=float(det.get("score", 1.0)), file_name=img["file_name"]))
    if unknown:
        raise PosecalInputError(unknown_ids_message(boxes_file, unknown, annotation_file))
    if not persons:
        what = "no person detections (category_id 1" + (f", score >= {min_box_score:g})" if min_box_score else ")")
        raise PosecalInputError(f"{boxes_file}: {'empty detections file' if not dets else what}; give the "
                                f"detector's person boxes, or leave out --boxes to evaluate on the GT boxes")
    line = summary_line(str(boxes_file), persons, skipped, clipped, "their image", "person boxes")
    if line:
        warnings.warn(line, stacklevel=3)
    return records


def load_lspet(annotation_file, image_dir) -> list[PersonRecord]:
    """LSPET persons with their 14 joints mapped onto COCO-17 (12 limb joints; the face keypoints stay v = 0,
    so they carry zero heatmap weight). Their visibility is marked unknown (see PersonRecord)."""
    records = load_coco_persons(annotation_file, image_dir, keypoint_map=LSP_TO_COCO)
    for r in records:
        r.visibility_known = False
    return records


def area_scale(matrix: np.ndarray) -> float:
    """Squared linear scale of a similarity transform (how an area changes under it)."""
    return float(abs(np.linalg.det(matrix[:, :2])))

