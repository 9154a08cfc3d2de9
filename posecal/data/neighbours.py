"""The other labelled people of a crop's photograph, mapped into the crop.

Crop data sets (shared/data/coco-val2017-crops, its README) label one person a crop, but every crop carries
`orig_image_id` and `crop_transform` (the 2x3 affine map from the photograph's pixels to the crop's, the one the
crop was warped with): a neighbour's keypoints go from its own crop back to the photograph through the inverse of
its matrix, then into the target's crop through the target's. Keypoint pixel-centre convention throughout, as the
README says the matrices use. Boxes of neighbours (clipped to the crop) are bench/detector_recall.others_in_crop.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from posecal.data.coco import area_scale, read_json
from posecal.data.transforms import apply_affine, invert_affine


def crop_matrix(ann: dict) -> np.ndarray:
    """(2, 3) photograph -> crop matrix of a crop annotation."""
    return np.asarray(ann["crop_transform"], np.float64).reshape(2, 3)


def by_photo(annotations: list[dict]) -> dict[int, list[dict]]:
    """orig_image_id -> the annotations (crops) of that photograph."""
    out = defaultdict(list)
    for a in annotations:
        out[a["orig_image_id"]].append(a)
    return dict(out)


def keypoints_in_crop(ann: dict, other: dict) -> tuple[np.ndarray, float]:
    """`other`'s keypoints (K, 3; v kept, unlabelled ones left at 0, 0, 0) and OKS area, in `ann`'s crop pixels."""
    kp = np.asarray(other["keypoints"], np.float64).reshape(-1, 3).copy()
    to_target = crop_matrix(ann)
    from_other = invert_affine(crop_matrix(other))
    labelled = kp[:, 2] > 0
    kp[labelled, :2] = apply_affine(apply_affine(kp[labelled, :2], from_other), to_target)
    area = float(other["area"]) * area_scale(to_target) / area_scale(crop_matrix(other))
    return kp, area


def neighbours_in_crop(ann: dict, same_photo: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The other labelled persons of `ann`'s photograph (`same_photo`, which may hold `ann` itself: it is left out
    by id) in `ann`'s crop: keypoints (N, K, 3) and OKS areas (N,). Keypoints may fall outside the crop."""
    pts, areas = [], []
    for o in same_photo:
        if o["id"] == ann["id"]:
            continue
        kp, area = keypoints_in_crop(ann, o)
        pts.append(kp)
        areas.append(area)
    k = len(ann["keypoints"]) // 3
    return np.array(pts, np.float64).reshape(-1, k, 3), np.array(areas, np.float64)


def neighbours_by_image(annotation_file, image_dir) -> dict[str, np.ndarray]:
    """Image path (as posecal.data.coco.load_coco_persons gives it) -> (N, K, 3) the other labelled persons of that
    crop's photograph in the crop's pixels, for every crop annotation of `annotation_file` that has neighbours.
    A file without orig_image_id / crop_transform (not a crop set) gives {}."""
    data = read_json(annotation_file)
    anns = [a for a in data.get("annotations", []) if "orig_image_id" in a and "crop_transform" in a]
    files = {im["id"]: im["file_name"] for im in data.get("images", [])}
    photos = by_photo(anns)
    out = {}
    for a in anns:
        pts, _ = neighbours_in_crop(a, photos[a["orig_image_id"]])
        if len(pts) and a["image_id"] in files:
            out[os.path.join(image_dir, files[a["image_id"]])] = pts
    return out


def with_neighbours(data: dict) -> dict:
    """`data` (a crop set's COCO dict) with, for each crop, its photograph's other labelled people added as
    annotations of the crop (after the crop's own, each marked `neighbour_of` it): boxes from their photograph's box,
    keypoints outside the crop kept, so that a scorer sees every person a crop shows (`posecal eval --detector` on
    crops, bench/reported_poses.py)."""
    photos = by_photo(data["annotations"])
    extra, next_id = [], max(a["id"] for a in data["annotations"]) + 1
    for ann in data["annotations"]:
        (s, _, tx), (_, _, ty) = crop_matrix(ann)
        for other in photos[ann["orig_image_id"]]:
            if other["id"] == ann["id"]:
                continue
            kp, area = keypoints_in_crop(ann, other)
            x, y, w, h = other["orig_bbox"]
            extra.append({"id": next_id, "image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
                          "iscrowd": 0, "keypoints": [round(float(v), 3) for v in kp.ravel()],
                          "num_keypoints": int((kp[:, 2] > 0).sum()), "area": area,
                          "bbox": [float(s * x + tx), float(s * y + ty), float(s * w), float(s * h)],
                          "neighbour_of": ann["id"]})
            next_id += 1
    return {**data, "annotations": data["annotations"] + extra}
