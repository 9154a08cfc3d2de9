"""posecal's results as supervision's (Roboflow's library) `KeyPoints` and `Detections`, so that users draw,
filter and track posecal's poses with supervision's own annotators and trackers.

`picture_to_supervision(picture)` (or `Picture.to_supervision()`) reads a Picture through its stacked arrays
only. Keypoints keep their true positions in `xy`; an absent keypoint (visibility 0, where the model has a
visibility head) is marked not `visible`, which supervision's keypoint annotators skip, so it is not drawn and
its position is not lost. Every trust number rides along in `data`, under the Picture's own array names
(`key_points.data["keypoint_radius"]` is `picture.keypoint_radius`), with the exact values (float64 where the
Picture's are). supervision is imported only when called (the `posecal[supervision]` extra).
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np

from posecal.errors import MissingPackage, PosecalInputError, require
from posecal.skeleton import COCO_LIMBS

# posecal's limbs (those picture.plot() draws) in supervision's 1-based edge convention:
# sv.EdgeAnnotator(edges=SKELETON_EDGES) draws the same skeleton (its default for 17 points differs a little)
SKELETON_EDGES = tuple((a + 1, b + 1) for a, b in COCO_LIMBS)
CLASS_NAME = "person"
# Picture arrays (N, ...) carried in KeyPoints.data where the picture has them (None: the model gives no such
# output, and the key is left out)
KEYPOINT_DATA = ("visibility", "visibility_probs", "keypoint_radius", "in_frame", "person_probability",
                 "pose_quality", "track_ids", "id_confidence")
DETECTION_DATA = ("person_probability", "pose_quality", "track_ids", "id_confidence")
# what picture_to_supervision reads: a Picture, or anything with these (duck typing keeps this module below
# posecal.inference)
PICTURE_FIELDS = ("keypoints", "keypoint_quality", "pose_quality", "boxes", "error")


class SupervisionPoses(NamedTuple):
    """One picture's people for supervision: `key_points` (sv.KeyPoints) and `detections` (sv.Detections), row i
    of each being the Picture's person i. A tuple: `key_points, detections = picture.to_supervision()`."""

    key_points: Any
    detections: Any


def picture_to_supervision(picture) -> SupervisionPoses:
    """The picture's people as (sv.KeyPoints, sv.Detections): keypoints with their quality as
    `keypoint_confidence` and absent ones not `visible` (so not drawn), boxes as xyxy with the pose quality as
    `confidence`, track ids as `tracker_id` for a tracked picture, and posecal's other fields in `data`. A
    picture that could not be read (`error`) or has nobody gives supervision's empty KeyPoints and Detections,
    which its annotators draw as nothing."""
    _check_picture(picture)
    sv = _import_supervision()
    if picture.error is not None or len(picture.pose_quality) == 0:
        return SupervisionPoses(sv.KeyPoints.empty(), sv.Detections.empty())
    return SupervisionPoses(_key_points(sv, picture), _detections(sv, picture))


def _check_picture(picture) -> None:
    """A user's mistake (a list of Pictures, a PersonPose, an image) is one clear line, not an AttributeError
    deep in here."""
    if isinstance(picture, (list, tuple)):
        raise PosecalInputError(f"to_supervision() takes one Picture, not a {type(picture).__name__} of "
                                f"{len(picture)}; convert each: [p.to_supervision() for p in pictures]")
    missing = [name for name in PICTURE_FIELDS if not hasattr(picture, name)]
    if missing:
        raise PosecalInputError(f"to_supervision() takes a posecal Picture (what Predictor returns), not a "
                                f"{type(picture).__name__} (it has no {', '.join(missing)})")


def _import_supervision():
    """supervision, or one MissingPackage line: not installed, or older than KeyPoints' `visible` and
    `keypoint_confidence` (supervision 0.29), which the conversion needs to hide absent keypoints."""
    sv = require("supervision", "supervision", option="to_supervision()")
    fields = inspect.signature(sv.KeyPoints).parameters
    if "visible" not in fields or "keypoint_confidence" not in fields:
        version = getattr(sv, "__version__", "an older version")
        raise MissingPackage(f"supervision 0.29 or later (this is {version})",
                             "pip install -U 'posecal[supervision]'", "to_supervision()")
    return sv


def _key_points(sv, picture):
    """sv.KeyPoints: xy the true positions, `visible` False for absent keypoints (None without a visibility
    head: all drawn), the pose quality as `detection_confidence` (what KeyPoints.as_detections and with_nms
    read)."""
    n = len(picture.pose_quality)
    visibility = picture.visibility
    return sv.KeyPoints(
        xy=np.asarray(picture.keypoints, np.float32),
        class_id=np.zeros(n, int),
        keypoint_confidence=np.asarray(picture.keypoint_quality, np.float32),
        detection_confidence=np.asarray(picture.pose_quality, np.float32),
        visible=None if visibility is None else np.asarray(visibility) != 0,
        data=_data(picture, KEYPOINT_DATA),
    )


def _detections(sv, picture):
    """sv.Detections: xyxy from posecal's x, y, w, h boxes, the pose quality as `confidence`, the track ids as
    `tracker_id` where the picture was tracked (-1 for a person without one), so supervision's trackers and
    trace annotators follow posecal's tracks."""
    n = len(picture.pose_quality)
    boxes = np.asarray(picture.boxes, float).reshape(n, 4)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    track_ids = picture.track_ids if getattr(picture, "tracked", False) else None
    return sv.Detections(
        xyxy=xyxy.astype(np.float32),
        confidence=np.asarray(picture.pose_quality, np.float32),
        class_id=np.zeros(n, int),
        tracker_id=None if track_ids is None else np.asarray(track_ids, int),
        data=_data(picture, DETECTION_DATA),
    )


def _data(picture, names: tuple) -> dict:
    """supervision's per-row `data`: "class_name" (what its LabelAnnotator writes by default) and each named
    Picture array the picture has, as a copy of the Picture's values."""
    n = len(picture.pose_quality)
    data = {"class_name": np.array([CLASS_NAME] * n)}
    for name in names:
        value = getattr(picture, name, None)
        if value is not None:
            data[name] = np.array(value)
    return data
