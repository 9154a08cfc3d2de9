"""Other estimators' outputs as posecal's results entries: what `posecal calibrate fit|apply`, `eval --results`
and `audit --results` read.

An entry is a COCO keypoint result (`image_id`, `category_id` 1, `keypoints` as 17 x, y, c triples in pixels,
`score`, `bbox`) plus `file_name`, by which `calibrate --images` finds its picture; c is the estimator's own score,
which the calibrator learns to read. Sources: ultralytics `Results` (`keypoints.data`, `boxes.xyxy`,
`boxes.conf`, `path`); rtmlib's (N, K, 2) keypoints and (N, K) scores (COCO's 17 first); mediapipe pose
landmarks (tasks or legacy API; the 17 COCO keypoints of BlazePose's 33, c their `visibility`).

Each reads the library's objects by attribute, so none is imported here. The image id is given, found in
`image_ids` ({file name: id}), or read from a COCO file name's digits ("000000397133.jpg" -> 397133).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from posecal.errors import PosecalInputError
from posecal.io import write_json_atomic
from posecal.skeleton import NUM_KEYPOINTS

# BlazePose's 33 landmarks -> COCO's 17 keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
# ankles): the landmark index of each COCO keypoint, in COCO order
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
RTMLIB_KEYPOINTS = (17, 26, 133)   # COCO body, Halpe26 (body with feet), COCO-WholeBody: the body's 17 first


def entry(keypoints, scores, file_name: str, image_id: int, box=None, score: float | None = None) -> dict:
    """One results entry from (17, 2) image-pixel keypoints and (17,) scores; box x, y, w, h (default the box
    around the keypoints), score (default the mean keypoint score)."""
    kp = np.asarray(keypoints, np.float64).reshape(NUM_KEYPOINTS, 2)
    c = np.asarray(scores, np.float64).reshape(NUM_KEYPOINTS)
    if box is None:
        lo, hi = kp.min(0), kp.max(0)
        box = (*lo, *(hi - lo))
    triples = np.concatenate([kp, c[:, None]], 1).reshape(-1)
    return {"image_id": int(image_id), "file_name": file_name, "category_id": 1,
            "keypoints": np.round(triples, 3).tolist(), "score": round(float(c.mean() if score is None else score), 4),
            "bbox": np.round(np.asarray(box, np.float64).reshape(4), 2).tolist()}


def image_id_of(file_name: str, image_id: int | None = None, image_ids: dict | None = None) -> int:
    """The entry's image id: given, in `image_ids` by file name (then by base name), or a COCO file name's
    digits; otherwise one PosecalInputError line saying how to give it."""
    if image_id is not None:
        return int(image_id)
    name = os.path.basename(str(file_name))
    for key in (str(file_name), name):
        if image_ids and key in image_ids:
            return int(image_ids[key])
    digits = re.fullmatch(r"0*(\d+)", Path(name).stem)
    if digits:
        return int(digits.group(1))
    raise PosecalInputError(f"{file_name}: no image id (give image_id=, or image_ids={{file name: id}} from the "
                            f"COCO file's images)")


def _array(x) -> np.ndarray:
    """A torch tensor (on any device) or array-like as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float64)


def from_ultralytics(results, image_ids: dict | None = None) -> list[dict]:
    """ultralytics pose `Results` (one, or the list `model(...)` returns) -> entries, one per person, with the
    detector's box and confidence as `bbox` and `score`. A result without keypoints (a detection model's) is one
    PosecalInputError line."""
    results = results if isinstance(results, (list, tuple)) else [results]
    out = []
    for r in results:
        if getattr(r, "keypoints", None) is None:
            raise PosecalInputError(f"{getattr(r, 'path', 'result')}: an ultralytics result without keypoints "
                                    f"(use a pose model, e.g. yolo11n-pose.pt)")
        data = _array(r.keypoints.data)
        if data.size == 0:
            continue
        if data.shape[1:] != (NUM_KEYPOINTS, 3):
            raise PosecalInputError(f"{r.path}: keypoints of shape {data.shape[1:]}; COCO's 17 x (x, y, conf) "
                                    f"are needed (a pose model trained on COCO keypoints)")
        xyxy, conf = _array(r.boxes.xyxy).reshape(-1, 4), _array(r.boxes.conf).reshape(-1)
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        image_id = image_id_of(r.path, image_ids=image_ids)
        out += [entry(data[i, :, :2], data[i, :, 2], os.path.basename(r.path), image_id, boxes[i], conf[i])
                for i in range(len(data))]
    return out


def from_rtmlib(keypoints, scores, file_name: str, image_id: int | None = None, boxes=None,
                image_ids: dict | None = None) -> list[dict]:
    """rtmlib's (N, K, 2) keypoints and (N, K) scores of one picture -> entries; boxes (N, 4) x1, y1, x2, y2 as
    its detector gives them (default: each pose's keypoint box)."""
    kp, sc = np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)
    if kp.ndim == 2:   # one person
        kp, sc = kp[None], sc[None]
    if kp.ndim != 3 or kp.shape[-1] != 2 or kp.shape[1] not in RTMLIB_KEYPOINTS or sc.shape != kp.shape[:2]:
        raise PosecalInputError(f"{file_name}: rtmlib keypoints {kp.shape} and scores {sc.shape}; expected (N, K, 2) "
                                f"and (N, K) with K in {RTMLIB_KEYPOINTS}")
    xywh = None
    if boxes is not None:
        xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    image_id = image_id_of(file_name, image_id, image_ids)
    name = os.path.basename(str(file_name))
    return [entry(kp[i, :NUM_KEYPOINTS], sc[i, :NUM_KEYPOINTS], name, image_id, None if xywh is None else xywh[i])
            for i in range(len(kp))]


def from_mediapipe(pose_landmarks, image_size, file_name: str, image_id: int | None = None,
                   image_ids: dict | None = None) -> list[dict]:
    """mediapipe pose landmarks of one picture -> entries. pose_landmarks: the tasks API's list (per person) of
    33 NormalizedLandmark, one person's list, or the legacy solution's `pose_landmarks` (with `.landmark`);
    image_size (width, height) in pixels, since mediapipe's are normalised to the picture."""
    people = _mediapipe_people(pose_landmarks)
    w, h = (float(v) for v in image_size)
    image_id = image_id_of(file_name, image_id, image_ids)
    name = os.path.basename(str(file_name))
    out = []
    for person in people:
        if len(person) != 33:
            raise PosecalInputError(f"{file_name}: {len(person)} mediapipe landmarks; BlazePose's 33 are needed")
        picked = [person[i] for i in MEDIAPIPE_TO_COCO]
        xy = np.array([[p.x * w, p.y * h] for p in picked], np.float64)
        c = np.array([getattr(p, "visibility", None) or 0.0 for p in picked], np.float64)
        out.append(entry(xy, c, name, image_id))
    return out


def _mediapipe_people(pose_landmarks) -> list[list]:
    """The landmarks as a list per person, from any of the forms mediapipe returns."""
    if hasattr(pose_landmarks, "landmark"):          # legacy: one person's NormalizedLandmarkList
        return [list(pose_landmarks.landmark)]
    items = list(pose_landmarks or [])
    if items and hasattr(items[0], "x"):             # one person's landmarks
        return [items]
    return [list(p.landmark) if hasattr(p, "landmark") else list(p) for p in items]


def write_results(entries: list[dict], path) -> Path:
    """The entries as a results JSON file, written whole or not at all; returns its path."""
    path = Path(path)
    write_json_atomic(entries, path, indent=None)
    return path
