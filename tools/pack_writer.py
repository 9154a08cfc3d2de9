"""Packs written (posecal/data/packed.py reads them and says their layout): each person's region cut from its
picture and shrunk (`pack_person`), its COCO entries mapped into the packed image (`coco_entries`), a shard's
index (`write_index`). Used by tools/pack_training_data.py."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posecal.data.coco import PersonRecord, area_scale
from posecal.data.packed import FORMAT, INDEX
from posecal.data.transforms import apply_affine, box_to_center_scale
from posecal.errors import PosecalInputError
from posecal.io import write_json_atomic


@dataclass
class PackedPerson:
    jpeg: bytes
    width: int
    height: int
    record: PersonRecord        # keypoints, box and area in the packed image's pixels
    matrix: np.ndarray          # 2x3: source image pixels -> packed image pixels
    original: bool = False      # the source file itself (see pack_person)


def _copy_region(image: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """image[y0:y0+h, x0:x0+w] with black where the region leaves the image."""
    out = np.zeros((h, w) + image.shape[2:], image.dtype)
    ih, iw = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, iw), min(y0 + h, ih)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def pack_person(image: np.ndarray, rec: PersonRecord, aspect: float, input_h: int, margin: float,
                quality: int, source_jpeg: bytes | None = None) -> PackedPerson:
    """Cut and shrink one person's region of `image` (BGR) and map its labels into it.

    The cut is a whole-pixel copy (no resampling) and the shrink is cv2.resize with INTER_AREA (anti-aliased),
    whose pixel-centre map is x' = (x + 0.5) * f - 0.5; together x' = (x - x0 + 0.5) * f - 0.5, exactly.
    When the whole image lies inside the region and needs no shrinking, and `source_jpeg` (the image's own
    file) is no larger than the re-encoded cut, that file is kept as it is (lossless; identity map): the pack
    then differs from the source only by the black border, which warping adds anyway.
    """
    center, size = box_to_center_scale(rec.bbox, aspect)
    s = min(1.0, input_h / size[1])
    region = size * margin
    x0 = int(math.floor(center[0] - region[0] / 2 + 0.5))
    y0 = int(math.floor(center[1] - region[1] / 2 + 0.5))
    w0, h0 = max(1, int(round(region[0]))), max(1, int(round(region[1])))
    crop = _copy_region(image, x0, y0, w0, h0)
    if s < 1.0:
        w1, h1 = max(1, int(round(w0 * s))), max(1, int(round(h0 * s)))
        crop = cv2.resize(crop, (w1, h1), interpolation=cv2.INTER_AREA)
    else:
        w1, h1 = w0, h0
    fx, fy = w1 / w0, h1 / h0
    m = np.array([[fx, 0.0, (0.5 - x0) * fx - 0.5], [0.0, fy, (0.5 - y0) * fy - 0.5]])
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise PosecalInputError(f"{rec.image_path}: JPEG encoding failed")
    jpeg, original = buf.tobytes(), False
    ih, iw = image.shape[:2]
    inside = s >= 1.0 and x0 <= 0 and y0 <= 0 and x0 + w0 >= iw and y0 + h0 >= ih
    if inside and source_jpeg is not None and source_jpeg[:2] == b"\xff\xd8" and len(source_jpeg) <= len(jpeg):
        jpeg, w1, h1, m, original = source_jpeg, iw, ih, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), True
    kp = np.zeros_like(rec.keypoints, dtype=np.float64)
    labelled = rec.keypoints[:, 2] > 0
    kp[labelled, :2] = apply_affine(rec.keypoints[labelled, :2], m)
    kp[:, 2] = rec.keypoints[:, 2]
    x, y, bw, bh = (float(v) for v in rec.bbox)
    (bx0, by0), (bx1, by1) = apply_affine(np.array([[x, y], [x + bw, y + bh]]), m)
    out = PersonRecord(image_path="", image_id=rec.image_id, bbox=np.array([bx0, by0, bx1 - bx0, by1 - by0]),
                       keypoints=kp, area=float(rec.area * area_scale(m)), ann_id=rec.ann_id, score=rec.score,
                       file_name=rec.file_name, visibility_known=rec.visibility_known)
    return PackedPerson(jpeg, w1, h1, out, m, original)


def _r(v: float) -> float:
    return round(float(v), 2)


def coco_entries(p: PackedPerson, file_name: str, image_id: int, ann_id: int, source: str,
                 neighbours: np.ndarray | None = None) -> tuple[dict, dict]:
    """(images[] entry, annotations[] entry) of a packed person; coordinates rounded to 0.01 px. `neighbours`:
    (N, K, 3) the other labelled people of its photograph in its source image's pixels (posecal.data.neighbours),
    stored mapped into the packed image as `neighbours` (N flat keypoint lists), for the negatives in training."""
    rec = p.record
    kp = [_r(v) if i % 3 != 2 else int(v) for i, v in enumerate(rec.keypoints.reshape(-1))]
    img = {"id": image_id, "file_name": file_name, "width": p.width, "height": p.height}
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": kp,
           "num_keypoints": int((rec.keypoints[:, 2] > 0).sum()), "bbox": [_r(v) for v in rec.bbox],
           "area": _r(rec.area), "visibility_known": bool(rec.visibility_known), "source": source,
           "orig_file_name": rec.file_name, "orig_image_id": rec.image_id, "orig_ann_id": rec.ann_id}
    if neighbours is not None and len(neighbours):
        mapped = np.array(neighbours, np.float64)
        labelled = mapped[..., 2] > 0
        mapped[labelled, :2] = apply_affine(mapped[labelled, :2], p.matrix)
        ann["neighbours"] = [[_r(v) if i % 3 != 2 else int(v) for i, v in enumerate(nb.reshape(-1))]
                             for nb in mapped]
    return img, ann


def write_index(folder: Path, images: list, annotations: list, info: dict) -> int:
    """Write folder/index.json (compact COCO keypoint JSON); returns its size in bytes."""
    data = {"info": {"format": FORMAT, **info}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [], "skeleton": []}]}
    path = Path(folder) / INDEX
    write_json_atomic(data, path, indent=None)
    return path.stat().st_size


def folder_bytes(folder) -> tuple[int, int]:
    """(file bytes, bytes on disk in 4 KiB blocks as du counts) of the files under `folder`."""
    sizes = [p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()]
    return sum(sizes), sum(-(-s // 4096) * 4096 for s in sizes)

