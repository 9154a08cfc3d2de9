"""Tracked video as a rerun recording (.rrd): frames, each person's keypoints with their 90% radii and the COCO
skeleton, boxes, and each track's pose quality over time, for `rerun OUT.rrd` to scrub through.

`RerunRecording(path, fps=...)` takes one Picture a frame (`log`) and puts the file in place on `close()`;
`write_rerun(pictures, path)` does both for an iterable. A Picture is read through its stacked arrays alone.

Paths: the skeleton (AnnotationContext) at `video`; the frame at `video/image`; person P's keypoints and box at
`video/people/P/keypoints` and `.../box` (P: the track id, or `person_<i>`); pose quality at `pose_quality/track_P`
and identity trust at `id_confidence/track_P`. A person who leaves is cleared. Timelines: `frame` and, given fps,
`time`. Written to a temp file renamed on close, so a failed run leaves no half recording; rerun is imported on
opening (the `posecal[rerun]` extra); no viewer is started, nothing is sent.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from posecal.errors import MissingPackage, PosecalInputError
from posecal.io import check_output_file, publish
from posecal.skeleton import COCO_KEYPOINTS, COCO_LIMBS

SUFFIX = ".rrd"
VIDEO = "video"                      # the 2D space: the frame, and the people drawn over it
IMAGE = f"{VIDEO}/image"
PEOPLE = f"{VIDEO}/people"
POSE_QUALITY = "pose_quality"
ID_CONFIDENCE = "id_confidence"
FRAME_TIMELINE, TIME_TIMELINE = "frame", "time"
PERSON_CLASS = 0                     # the skeleton's class id in the annotation context
JPEG_QUALITY = 90
NO_RADIUS = -3.0                     # a keypoint with no calibrated radius: 3 UI points (rerun: negative = UI)
ABSENT = 0                           # Picture.visibility: 0 absent, 1 occluded, 2 visible
# one colour per track id (id modulo its length): matplotlib's tab10, RGBA with the discs half see-through
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
ALPHA = 128


def import_rerun(option: str = ""):
    """The rerun SDK, or one MissingPackage line with the install that brings it (`option`: the CLI option that
    asked for it)."""
    try:
        import rerun
    except ImportError:
        raise MissingPackage("the optional package 'rerun-sdk'", "pip install 'posecal[rerun]'", option) from None
    return rerun


def check_recording_path(path, option: str = "rerun recording") -> Path:
    """A .rrd file name in a writable folder that exists (posecal.io.check_output_file), else one line: the
    rerun viewer opens a recording by its suffix."""
    path = Path(os.fspath(path))
    if path.suffix.lower() != SUFFIX:
        raise PosecalInputError(f"{option} {path}: a rerun recording is a {SUFFIX} file (e.g. OUT{SUFFIX})")
    return check_output_file(path, option)


def track_colour(track_id: int) -> tuple[int, int, int, int]:
    """The RGBA colour of a track (of a person's place in an untracked picture): the same id, the same colour."""
    return (*PALETTE[int(track_id) % len(PALETTE)], ALPHA)


def skeleton_context(rr):
    """The COCO person as rerun's annotation context: keypoint ids 0..16 named as COCO_KEYPOINTS, joined by
    COCO_LIMBS, so the viewer draws the skeleton between a Points2D's keypoint ids."""
    return rr.AnnotationContext([rr.ClassDescription(
        info=rr.AnnotationInfo(id=PERSON_CLASS, label="person"),
        keypoint_annotations=[rr.AnnotationInfo(id=i, label=name) for i, name in enumerate(COCO_KEYPOINTS)],
        keypoint_connections=list(COCO_LIMBS))])


def person_keys(picture) -> list[str]:
    """Each person's name in the entity paths: the track id of a tracked picture; `person_<i>` otherwise (and for
    a tracked person without an id)."""
    ids = picture.track_ids
    n = len(picture.pose_quality)
    return [str(int(ids[i])) if ids is not None and ids[i] >= 0 else f"person_{i}" for i in range(n)]


def quality_path(key: str, measure: str = POSE_QUALITY) -> str:
    """A person's series of `measure` (POSE_QUALITY, ID_CONFIDENCE): e.g. pose_quality/track_<id>, or
    pose_quality/person_<i>."""
    return f"{measure}/{key if key.startswith('person_') else f'track_{key}'}"


def shown_keypoints(keypoints: np.ndarray, visibility: np.ndarray | None,
                    radius: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One person's keypoints to draw: (ids, positions, radii) without the absent ones (visibility 0) and those
    with no position; a keypoint with no calibrated radius gets NO_RADIUS."""
    keep = np.isfinite(keypoints).all(1)
    if visibility is not None:
        keep &= np.asarray(visibility) != ABSENT
    radii = np.full(len(keypoints), NO_RADIUS) if radius is None else np.asarray(radius, float).copy()
    radii[~np.isfinite(radii)] = NO_RADIUS
    ids = np.flatnonzero(keep)
    return ids, keypoints[ids], radii[ids]


class RerunRecording:
    """A rerun recording written one Picture at a time: `log(picture)` per frame, `close()` at the end (or `with
    RerunRecording(...) as rec:`, which keeps the file only when the block ends without an exception).

    path: the .rrd file; fps: the video's frame rate (None: no `time` timeline, the frame index alone); images:
    log the frames (JPEG, jpeg_quality; False: the poses alone, a much smaller file); option: the name the error
    lines give the path (the CLI's --rerun)."""

    def __init__(self, path, application_id: str = "posecal", fps: float | None = None, images: bool = True,
                 jpeg_quality: int = JPEG_QUALITY, option: str = "rerun recording"):
        rr = import_rerun(option if option.startswith("-") else "")
        self.path = check_recording_path(path, option)
        if fps is not None and not fps > 0:
            raise PosecalInputError(f"{option} {self.path}: fps must be > 0, got {fps}")
        self.rr, self.fps, self.images, self.jpeg_quality = rr, fps, images, int(jpeg_quality)
        self.logged, self.shown, self.series = 0, set(), set()
        self.kept: bool | None = None   # set by close(): the file was put in place (True) or removed (False)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}", suffix=".tmp")
        os.close(fd)
        try:
            self.stream = rr.RecordingStream(application_id)
            self.stream.set_log_time_enabled(False)   # the frame's own timelines, not when it was logged
            self.stream.save(self.tmp)
            self.stream.log(VIDEO, skeleton_context(rr), static=True)
        except BaseException:
            self._remove_tmp()
            raise

    def __enter__(self) -> "RerunRecording":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(keep=kind is None)

    def log(self, picture) -> None:
        """One frame: its image, its people and their pose quality, at its frame index (a still picture: the
        count of pictures logged before it). A picture that could not be read is a warning line in the
        recording's log."""
        index = self.logged if picture.frame_index is None else int(picture.frame_index)
        self.logged += 1
        self._set_time(index)
        if picture.error is not None:
            self.stream.log("log", self.rr.TextLog(f"{picture.name}: {picture.error}", level="WARN"))
            return
        if self.images:
            self._log_image(picture.image)
        keys = person_keys(picture)
        for i, key in enumerate(keys):
            self._log_person(picture, i, key)
        for gone in sorted(self.shown - set(keys)):
            self.stream.log(f"{PEOPLE}/{gone}", self.rr.Clear(recursive=True))
        self.shown = set(keys)

    def close(self, keep: bool = True) -> Path | None:
        """Finish the file and put it in place (keep), or remove it; returns the path kept. Closing again
        changes nothing (a `with` block's end after an explicit close)."""
        if self.kept is not None:
            return self.path if self.kept else None
        self.kept = False
        with contextlib.suppress(Exception):
            self.stream.flush()
        self.stream.disconnect()   # closes the file: the footer is written
        if not keep:
            self._remove_tmp()
            return None
        try:
            publish(self.tmp, self.path)
        except OSError as e:
            self._remove_tmp()
            raise PosecalInputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self.kept = True
        return self.path

    # --- one frame's parts ------------------------------------------------------------------------------------
    def _set_time(self, index: int) -> None:
        self.stream.set_time(FRAME_TIMELINE, sequence=index)
        if self.fps is not None:
            self.stream.set_time(TIME_TIMELINE, duration=index / self.fps)

    def _log_image(self, bgr: np.ndarray) -> None:
        """The frame as a JPEG (OpenCV encodes the BGR frame as it is: no colour conversion, no Pillow)."""
        import cv2

        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if ok:
            self.stream.log(IMAGE, self.rr.EncodedImage(contents=data.tobytes(), media_type="image/jpeg"))

    def _log_person(self, picture, i: int, key: str) -> None:
        """Person i: keypoints (skeleton by keypoint id, discs of the 90% radius), box labelled with the id and
        pose quality, and the pose quality series."""
        rr, colour = self.rr, track_colour(int(key) if key.isdigit() else i)
        visibility, radius = picture.visibility, picture.keypoint_radius
        ids, xy, radii = shown_keypoints(picture.keypoints[i], None if visibility is None else visibility[i],
                                         None if radius is None else radius[i])
        quality = float(picture.pose_quality[i])
        trust = getattr(picture, "id_confidence", None)
        trust = None if trust is None or not np.isfinite(trust[i]) else float(trust[i])
        self.stream.log(f"{PEOPLE}/{key}/keypoints", rr.Points2D(xy, radii=radii, keypoint_ids=ids,
                                                                 class_ids=PERSON_CLASS, colors=colour))
        x, y, w, h = (float(v) for v in picture.boxes[i])
        label = f"#{key}" if key.isdigit() else key
        self.stream.log(f"{PEOPLE}/{key}/box", rr.Boxes2D(mins=[x, y], sizes=[w, h], colors=colour[:3],
                                                          labels=f"{label} q={quality:.2f}"
                                                          + ("" if trust is None else f" id={trust:.2f}")))
        for measure, value in ((POSE_QUALITY, quality), (ID_CONFIDENCE, trust)):
            if value is None:
                continue
            series = quality_path(key, measure)
            if series not in self.series:   # the series' name and colour, once
                self.series.add(series)
                self.stream.log(series, rr.SeriesLines(colors=colour[:3], names=label), static=True)
            self.stream.log(series, rr.Scalars(value))

    def _remove_tmp(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.tmp)


def write_rerun(pictures: Iterable, path, fps: float | None = None, images: bool = True,
                application_id: str = "posecal") -> Path:
    """Every Picture of `pictures` (a tracked video: PoseTracker.track, Predictor.predict) into one .rrd
    recording at `path`, put in place once the last is logged (an exception on the way leaves no file);
    returns the path. fps, images: as RerunRecording's."""
    with RerunRecording(path, application_id=application_id, fps=fps, images=images) as recording:
        for picture in pictures:
            recording.log(picture)
    return recording.path
