"""posecal's poses and `posecal audit`'s findings as FiftyOne labels and samples, so that users who curate their
data in FiftyOne see posecal's trust numbers there and sort labels by its findings as by FiftyOne's `mistakenness`.

Everything here builds FiftyOne objects in memory or files; nothing opens FiftyOne's database. The user adds the
samples to a dataset (`dataset.add_samples(samples)`), or loads the folder `write_fiftyone_dir` wrote:
`fo.Dataset.from_dir(DIR, dataset_type=fo.types.LegacyFiftyOneDataset)`.

FiftyOne's COCO conventions: points in [0, 1]; an absent keypoint is a NaN point (not drawn); `visible` a
per-point list of COCO's v (0 absent, 1 occluded, 2 visible); `coco_id` the annotation's id.

Fields a sample gets (names in the constants below):
- `posecal_keypoints`: fo.Keypoints, one per person, per-point `confidence` = keypoint quality, `index` = track
  id; attributes `pose_quality`, `person_probability`, `visible`, `visibility_probs`, `keypoint_radius`,
  `in_frame`, `pose_source`, `id_confidence`, where the Picture has them.
- `posecal_boxes`: fo.Detections of the person boxes, `confidence` = the pose quality.
- `ground_truth`: fo.Keypoints of COCO annotations; with audit findings each has `posecal_mistakenness` (its
  findings' highest score), `posecal_<kind>` per kind, `posecal_point_mistakenness` and `posecal_findings` (ids,
  for `posecal audit apply --accept`); the sample has the highest `posecal_mistakenness` of its annotations.
A finding's score is a probability, except a person finding's: the labels' OKS shortfall against the pose quality.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from posecal.errors import PosecalInputError, require
from posecal.io import check_output_dir, write_atomic, write_json_atomic
from posecal.skeleton import COCO_KEYPOINTS, COCO_LIMBS, NUM_KEYPOINTS

KEYPOINTS_FIELD = "posecal_keypoints"
BOXES_FIELD = "posecal_boxes"
GROUND_TRUTH_FIELD = "ground_truth"
ERROR_FIELD = "posecal_error"
MISTAKENNESS = "posecal_mistakenness"
POINT_MISTAKENNESS = "posecal_point_mistakenness"
FINDING_IDS = "posecal_findings"
# posecal/audit/findings.py's kinds (that layer sits above this one; tests/integrations/test_fiftyone.py checks
# that the two lists agree)
KINDS = ("position", "swap", "visibility", "missing", "person")
LABEL = "person"
ABSENT = 0                              # visibility: 0 absent, 1 occluded, 2 visible (COCO's v)
SAMPLES_FILE, METADATA_FILE = "samples.json", "metadata.json"
PICTURE_FIELDS = ("keypoints", "keypoint_quality", "pose_quality", "boxes", "image", "path", "name", "error")


class FiftyOnePoses(NamedTuple):
    """One picture's people for FiftyOne: `keypoints` (fo.Keypoints) and `detections` (fo.Detections), item i of
    each being the Picture's person i."""

    keypoints: Any
    detections: Any


def kind_field(kind: str) -> str:
    """The label field holding the highest score of an annotation's findings of one kind (posecal_swap, ...)."""
    return f"posecal_{kind}"


def import_fiftyone(option: str = ""):
    """fiftyone, or one MissingPackage line with the install that brings it (`option`: what asked for it)."""
    return require("fiftyone", "fiftyone", option=option)


# --- posecal's poses ----------------------------------------------------------------------------------------

def picture_to_fiftyone(picture) -> FiftyOnePoses:
    """The picture's people as (fo.Keypoints, fo.Detections) in FiftyOne's normalised coordinates, with every
    trust number on the labels (the module's docstring lists them). A picture that could not be read or has
    nobody gives empty ones."""
    _check_picture(picture, "picture_to_fiftyone()")
    fo = import_fiftyone("picture_to_fiftyone()")
    if picture.error is not None or len(picture.pose_quality) == 0:
        return FiftyOnePoses(fo.Keypoints(), fo.Detections())
    width, height = _size(picture)
    people = _people(picture)
    return FiftyOnePoses(fo.Keypoints(keypoints=[_keypoint(fo, p, width, height) for p in people]),
                         fo.Detections(detections=[_detection(fo, p, width, height) for p in people]))


def picture_to_sample(picture, ground_truth: list[dict] | None = None, findings: list[dict] | None = None):
    """An fo.Sample of the picture's image file with its people in `posecal_keypoints` and `posecal_boxes`, and,
    given, the image's COCO annotations (dicts with `keypoints` [x, y, v] * 17) in `ground_truth` with the
    audit's `findings` (findings.json's entries) on them: ready for `dataset.add_samples([...])`."""
    _check_picture(picture, "picture_to_sample()")
    _check_file_picture(picture)
    fo = import_fiftyone("picture_to_sample()")
    poses = picture_to_fiftyone(picture)
    fields = {KEYPOINTS_FIELD: poses.keypoints, BOXES_FIELD: poses.detections}
    if picture.error is not None:
        if ground_truth is not None:
            raise PosecalInputError(f"picture_to_sample(): {picture.name}: no image to place the ground truth on "
                                    f"({picture.error})")
        return fo.Sample(filepath=os.path.abspath(picture.path), **fields, **{ERROR_FIELD: picture.error})
    width, height = _size(picture)
    return image_sample(picture.path, width, height, ground_truth, findings, **fields)


def image_sample(filepath, width: int, height: int, ground_truth: list[dict] | None = None,
                 findings: list[dict] | None = None, **fields):
    """An fo.Sample of an image file (width x height pixels, its ImageMetadata) with these label fields, and the
    COCO annotations `ground_truth` with the findings' fields (coco_to_fiftyone) where given. Findings of other
    images' annotations are ignored, so one findings.json serves every image."""
    fo = import_fiftyone("image_sample()")
    if ground_truth is not None:
        fields[GROUND_TRUTH_FIELD] = coco_to_fiftyone(ground_truth, width, height, findings)
        if findings is not None:
            fields[MISTAKENNESS] = max((getattr(k, MISTAKENNESS) for k in fields[GROUND_TRUTH_FIELD].keypoints),
                                       default=0.0)
    return fo.Sample(filepath=os.path.abspath(os.fspath(filepath)),
                     metadata=fo.ImageMetadata(width=int(width), height=int(height)), **fields)


def _check_picture(picture, call: str) -> None:
    """A user's mistake (a list of Pictures, a PersonPose, an image) is one clear line."""
    if isinstance(picture, (list, tuple)):
        raise PosecalInputError(f"{call} takes one Picture, not a {type(picture).__name__} of {len(picture)}; "
                                "convert each")
    missing = [name for name in PICTURE_FIELDS if not hasattr(picture, name)]
    if missing:
        raise PosecalInputError(f"{call} takes a posecal Picture (what Predictor returns), not a "
                                f"{type(picture).__name__} (it has no {', '.join(missing)})")


def _check_file_picture(picture) -> None:
    """A FiftyOne sample is an image file: a Picture of an array has none, and a video frame's labels belong in
    the video sample's frames."""
    if not picture.path:
        raise PosecalInputError(f"picture_to_sample(): {picture.name} came from an array, not a file; a FiftyOne "
                                "sample is an image file (write the image and predict on its path, or use "
                                "picture_to_fiftyone() for the labels alone)")
    frame = getattr(picture, "frame_index", None)
    if frame is not None:
        raise PosecalInputError(f"picture_to_sample(): {picture.name} is frame {frame} of a video; FiftyOne keeps "
                                f"a video's labels in its frames: sample.frames[{frame + 1}]['{KEYPOINTS_FIELD}'] "
                                "= picture_to_fiftyone(picture).keypoints")


def _size(picture) -> tuple[int, int]:
    """(width, height) of the picture the poses refer to: FiftyOne's points are fractions of it."""
    height, width = np.asarray(picture.image).shape[:2]
    if not width or not height:
        raise PosecalInputError(f"{picture.name}: the picture has no image, so its poses cannot be placed in it")
    return int(width), int(height)


def _people(picture) -> list[dict]:
    """Person i's numbers from the Picture's stacked arrays (an optional array the model does not give: left
    out; a person who lacks it beside others who have it, NaN or -1 filled: left out for that person)."""
    arrays = {name: getattr(picture, name, None) for name in
              ("keypoints", "keypoint_quality", "pose_quality", "boxes", "visibility", "visibility_probs",
               "keypoint_radius", "in_frame", "person_probability", "track_ids", "id_confidence", "pose_source")}
    people = []
    for i in range(len(arrays["pose_quality"])):
        person = {name: np.asarray(a)[i] for name, a in arrays.items() if a is not None}
        people.append({name: v for name, v in person.items() if not _filler(v)})
    return people


def _filler(value) -> bool:
    """A stacked array's stand-in for a value the person lacks: all NaN (float) or all -1 (int ids, classes)."""
    value = np.asarray(value)
    if value.dtype.kind == "f":
        return bool(np.isnan(value).all())
    return value.dtype.kind in "iu" and bool((value == -1).all())


def _keypoint(fo, person: dict, width: int, height: int):
    """One person as an fo.Keypoint: points normalised, absent ones NaN (hidden), trust numbers as attributes."""
    points = np.asarray(person["keypoints"], np.float64) / [width, height]
    attributes = {"pose_quality": float(person["pose_quality"])}
    if "visibility" in person:
        visible = np.asarray(person["visibility"], int)
        points[visible == ABSENT] = np.nan
        attributes["visible"] = visible.tolist()
    for name in ("person_probability", "visibility_probs", "keypoint_radius", "in_frame", "pose_source",
                 "id_confidence"):
        if name in person:
            attributes[name] = np.asarray(person[name]).tolist()
    return fo.Keypoint(label=LABEL, points=points.tolist(),
                       confidence=np.asarray(person["keypoint_quality"], np.float64).tolist(),
                       index=_index(person), **attributes)


def _detection(fo, person: dict, width: int, height: int):
    """One person's box as an fo.Detection ([x, y, w, h] normalised), confidence = its pose quality."""
    box = np.asarray(person["boxes"], np.float64) / [width, height, width, height]
    extra = {name: float(person[name]) for name in ("person_probability", "id_confidence") if name in person}
    return fo.Detection(label=LABEL, bounding_box=box.tolist(), confidence=float(person["pose_quality"]),
                        index=_index(person), **extra)


def _index(person: dict) -> int | None:
    return int(person["track_ids"]) if "track_ids" in person else None


# --- ground truth and audit findings ------------------------------------------------------------------------

def coco_to_fiftyone(annotations: list[dict], width: int, height: int, findings: list[dict] | None = None):
    """COCO keypoint annotations of one image (width x height) as fo.Keypoints, as FiftyOne's COCO importer makes
    them (v = 0 points NaN, `visible`, `coco_id`), with the findings' fields on each (findings_to_fields)."""
    fo = import_fiftyone("coco_to_fiftyone()")
    if not isinstance(annotations, (list, tuple)):
        raise PosecalInputError(f"ground truth: a list of COCO annotations (dicts), not a {type(annotations).__name__}")
    scored = None if findings is None else findings_to_fields(findings)
    keypoints = []
    for n, ann in enumerate(annotations):
        labels = _coco_keypoints(ann, n)
        points = labels[:, :2] / [width, height]
        points[labels[:, 2] == ABSENT] = np.nan
        fields = {"visible": labels[:, 2].astype(int).tolist()}
        if ann.get("id") is not None:
            fields["coco_id"] = int(ann["id"])
        if ann.get("iscrowd") is not None:
            fields["iscrowd"] = int(ann["iscrowd"])
        if scored is not None:
            fields |= scored.get(fields.get("coco_id"), no_findings())
        keypoints.append(fo.Keypoint(label=LABEL, points=points.tolist(), **fields))
    return fo.Keypoints(keypoints=keypoints)


def _coco_keypoints(ann, n: int) -> np.ndarray:
    """An annotation's (17, 3) x, y, v, or one line naming the annotation."""
    name = f"ground truth [{n}]" + ("" if not isinstance(ann, dict) or "id" not in ann else f" (id {ann['id']})")
    try:
        labels = np.asarray(ann["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
    except (KeyError, TypeError, ValueError):
        raise PosecalInputError(f"{name}: 'keypoints' must be {NUM_KEYPOINTS} x, y, v triples") from None
    if not np.isfinite(labels).all() or not np.isin(labels[:, 2], (0, 1, 2)).all():
        raise PosecalInputError(f"{name}: 'keypoints' must be finite numbers with v in 0, 1, 2")
    return labels


def no_findings() -> dict:
    """The finding fields of an annotation that no finding names: every score 0, no ids."""
    return {MISTAKENNESS: 0.0, **{kind_field(k): 0.0 for k in KINDS},
            POINT_MISTAKENNESS: [0.0] * NUM_KEYPOINTS, FINDING_IDS: []}


def findings_to_fields(findings: list[dict]) -> dict[int, dict]:
    """findings.json's entries -> {annotation id: its label fields}: the highest score overall
    (`posecal_mistakenness`), per kind (`posecal_swap`, ...), per point (a swap counts on both points of its
    pair) and the findings' ids, so that a FiftyOne view sorts labels by them as by Brain's mistakenness."""
    if not isinstance(findings, (list, tuple)):
        raise PosecalInputError(f"findings: a list of findings (findings.json), not a {type(findings).__name__}")
    fields: dict[int, dict] = {}
    for n, f in enumerate(findings):
        aid, kind, score, points = _finding(f, n)
        d = fields.setdefault(aid, no_findings())
        d[MISTAKENNESS] = max(d[MISTAKENNESS], score)
        d[kind_field(kind)] = max(d[kind_field(kind)], score)
        for k in points:
            d[POINT_MISTAKENNESS][k] = max(d[POINT_MISTAKENNESS][k], score)
        d[FINDING_IDS].append(_finding_id(f, aid, kind))
    return fields


def _finding_id(f: dict, aid: int, kind: str) -> str:
    """The finding's id as findings.json gives it, else made as posecal/audit/findings.py makes ids."""
    if f.get("id"):
        return str(f["id"])
    k = f.get("keypoint")
    return f"{aid}:{kind}:{'-' if k is None else int(k)}"


def _finding(f, n: int) -> tuple[int, str, float, list[int]]:
    """(annotation id, kind, score, the points it names) of one finding, or one line naming what is wrong."""
    where = f"findings[{n}]"
    if not isinstance(f, dict):
        raise PosecalInputError(f"{where}: a finding is a JSON object, not {type(f).__name__}")
    aid, kind, score, k = f.get("annotation_id"), f.get("kind"), f.get("score"), f.get("keypoint")
    if not isinstance(aid, numbers.Integral) or isinstance(aid, bool):
        raise PosecalInputError(f"{where}: 'annotation_id' must be an integer, got {aid!r}")
    if kind not in KINDS:
        raise PosecalInputError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(score, numbers.Real) or isinstance(score, bool) or not math.isfinite(score):
        raise PosecalInputError(f"{where}: 'score' must be a finite number, got {score!r}")
    points = ([] if k is None else [k]) + list(f.get("pair") or [])
    if not all(isinstance(p, numbers.Integral) and 0 <= p < NUM_KEYPOINTS for p in points):
        raise PosecalInputError(f"{where}: 'keypoint' and 'pair' must be keypoints 0-{NUM_KEYPOINTS - 1}, "
                                f"got {k!r} and {f.get('pair')!r}")
    return int(aid), kind, float(score), sorted({int(p) for p in points})


# --- on disk ------------------------------------------------------------------------------------------------

def write_fiftyone_dir(samples: Iterable, out_dir, option: str = "write_fiftyone_dir()") -> Path:
    """Write fo.Samples (or Pictures, made samples by picture_to_sample) as a folder FiftyOne loads in one call:
    fo.Dataset.from_dir(out_dir, dataset_type=fo.types.LegacyFiftyOneDataset). samples.json (the samples as
    FiftyOne serialises them, images by absolute path, NaN points as JSON NaN) and metadata.json (the COCO
    skeleton, so that the App draws limbs), each written atomically. Returns the folder."""
    fo = import_fiftyone(option)
    out = check_output_dir(out_dir, option)
    dicts = [_plain(_as_sample(fo, s, n).to_dict()) for n, s in enumerate(samples)]
    write_atomic(out / SAMPLES_FILE, lambda f: json.dump({"samples": dicts}, f), mode="w")
    write_json_atomic(_metadata(fo, out), out / METADATA_FILE)
    return out


def _as_sample(fo, sample, n: int):
    if isinstance(sample, fo.Sample):
        return sample
    if all(hasattr(sample, name) for name in PICTURE_FIELDS):
        return picture_to_sample(sample)
    raise PosecalInputError(f"write_fiftyone_dir(): item {n} is a {type(sample).__name__}; it takes fo.Samples "
                            "or posecal Pictures")


def _plain(value):
    """FiftyOne's extended JSON with its NaN and infinities ({"$numberDouble": "NaN"}) as plain floats:
    FiftyOne's directory importer reads the files with the json module and decodes ObjectIds, not those."""
    if isinstance(value, dict):
        if set(value) == {"$numberDouble"}:
            return float(value["$numberDouble"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _metadata(fo, out: Path) -> dict:
    """The dataset's name, media type and the default skeleton (COCO's keypoint names and limbs), with no format
    version: that marks the folder as the format LegacyFiftyOneDatasetImporter reads."""
    skeleton = fo.KeypointSkeleton(labels=list(COCO_KEYPOINTS), edges=[list(e) for e in COCO_LIMBS])
    return {"name": out.resolve().name, "media_type": "image",
            "info": {"default_skeleton": dict(skeleton.to_dict())}}
