"""`Picture`: one image or video frame with its people, the one result type of the Python API.

`Predictor(...)(image)`, `Predictor.predict(source)` and `PoseTracker` (its `__call__` and `track`) all return
Pictures, so a result is drawn, saved, shown and serialised the same way wherever it came from. Beside the people
(`PersonPose`, one per person, with every trust field) a Picture stacks their fields into arrays (N people:
`keypoints` (N, 17, 2), `keypoint_quality` (N, 17), `visibility_probs` (N, 17, 3), `person_probability` (N,), ...;
None for a field the model does not give) for code that computes on all of them at once. A Picture
is also the sequence of its people (`len`, iteration, indexing), so code written for a list of people reads it
alike.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posecal.errors import MissingPackage, PosecalInputError
from posecal.inference.estimator import PersonPose
from posecal.io import write_bytes_atomic
from posecal.skeleton import COCO_KEYPOINTS

K = len(COCO_KEYPOINTS)
# What save() encodes, by suffix (OpenCV's encoders that every build has)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(eq=False)
class Picture:
    """One image, or one frame of a video, with its people.

    name: the file name (a video's frames: "<video>#<frame index>"; an array: "image" or "images[n]"); path: the
    file it came from ("" for an array); people: a PersonPose per person; image: the BGR picture the poses refer
    to (a file EXIF-turned); frame_index: a video's frame (0-based), None for a still picture; tracked: the people
    carry track ids (PoseTracker); error: why the input could not be read (then no people and an empty image),
    so that a list of inputs gives one answer per input, in order, and `zip(paths, pictures)` pairs them right;
    speed: milliseconds per stage for this picture, as ultralytics' `Results.speed`: "detect", finding its
    boxes (the detector, or the boxes given checked; a single API call on a path also reads the file; a
    tracked frame: the wait for its detection, started a frame ahead); "pose", the verifier, crops, network and
    person policy (a batch's time shared by its pictures' crops; a tracked frame: the tracking step, optical
    flow and tracker included); empty for an input that could not be read."""

    name: str
    path: str
    people: list[PersonPose]
    image: np.ndarray
    frame_index: int | None = None
    tracked: bool = False
    error: str | None = None
    speed: dict[str, float] = field(default_factory=dict)

    # --- the people as a sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.people)

    def __iter__(self):
        return iter(self.people)

    def __getitem__(self, i):
        return self.people[i]

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Picture({self.name!r}, error={self.error!r})"
        h, w = self.image.shape[:2]
        frame = "" if self.frame_index is None else f" frame={self.frame_index}"
        ids = f" track_ids={self.track_ids.tolist()}" if self.tracked else ""
        return f"Picture({self.name!r}{frame} {w}x{h}, {len(self.people)} person(s){ids})"

    # --- stacked arrays, N = number of people ---------------------------------------------------------------
    @property
    def keypoints(self) -> np.ndarray:
        """(N, 17, 2) x, y in image pixels, COCO order (posecal.KEYPOINT_NAMES)."""
        return self._stack(lambda p: p.keypoints, (K, 2))

    @property
    def keypoint_quality(self) -> np.ndarray:
        """(N, 17) expected OPKS of each keypoint."""
        return self._stack(lambda p: p.keypoint_quality, (K,))

    @property
    def heatmap_scores(self) -> np.ndarray:
        """(N, 17) heatmap peak values (the classic, uncalibrated "confidence")."""
        return self._stack(lambda p: p.heatmap_scores, (K,))

    @property
    def visibility(self) -> np.ndarray | None:
        """(N, 17) 0 absent, 1 occluded, 2 visible; None where the model has no visibility head."""
        return self._stack_optional("visibility", (K,), int)

    @property
    def visibility_probs(self) -> np.ndarray | None:
        """(N, 17, 3) probabilities of [absent, occluded, visible]; None where the model has no visibility head."""
        return self._stack_optional("visibility_probs", (K, 3))

    @property
    def keypoint_radius(self) -> np.ndarray | None:
        """(N, 17) pixels around each keypoint holding the true one with probability 0.9; None for a model with
        no stored calibration."""
        return self._stack_optional("keypoint_radius", (K,))

    @property
    def in_frame(self) -> np.ndarray | None:
        """(N, 17) probability that each keypoint lies inside the picture; None where the model's calibration has
        no in-frame map."""
        return self._stack_optional("in_frame", (K,))

    @property
    def pose_quality(self) -> np.ndarray:
        """(N,) expected OKS of each pose."""
        return self._stack(lambda p: p.pose_quality, ())

    @property
    def person_probability(self) -> np.ndarray | None:
        """(N,) p(the box frames a person) by the person verifier; NaN for a box no verifier judged (the caller's
        boxes, the whole picture) beside judged ones, None where no box was judged."""
        return self._stack_optional("person_probability", ())

    @property
    def pose_source(self) -> np.ndarray:
        """(N,) how each pose was obtained: "detected", "carried" or "held" (video; PersonPose.pose_source)."""
        return np.array([p.pose_source for p in self.people], dtype=str).reshape(len(self.people))

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) x, y, w, h of each person box."""
        return self._stack(lambda p: p.box, (4,))

    @property
    def track_ids(self) -> np.ndarray | None:
        """(N,) each person's track id (PoseTracker); None for a picture that was not tracked."""
        if not self.tracked:
            return None
        return self._stack(lambda p: -1 if p.track_id is None else p.track_id, (), int)

    @property
    def id_confidence(self) -> np.ndarray | None:
        """(N,) each tracked person's identity trust: the calibrated probability that they are the same person as
        their track's previous pose, NaN where there is none (a pose that starts its track, so every pose of a
        first frame; every pose where the fitted map is not there: posecal/tracking/identity.py), as a tracked
        record's `id_confidence` is null; None for a picture that was not tracked."""
        if not self.tracked:
            return None
        return self._stack(lambda p: np.nan if p.id_confidence is None else p.id_confidence, ())

    def _stack(self, field, shape: tuple, dtype=float) -> np.ndarray:
        if not self.people:
            return np.zeros((0, *shape), dtype)
        return np.stack([np.asarray(field(p), dtype).reshape(shape) for p in self.people])

    def _stack_optional(self, name: str, shape: tuple, dtype=float) -> np.ndarray | None:
        """A PersonPose field that a model may not give, stacked: None when no person has it (the model has no
        such output), else (N, *shape) with a person who lacks it filled with NaN (-1 for an int field: a box
        the verifier did not judge beside boxes it did). No people: an empty array."""
        values = [getattr(p, name) for p in self.people]
        if values and all(v is None for v in values):
            return None
        missing = np.full(shape, -1 if dtype is int else np.nan)
        return self._stack(lambda p: missing if getattr(p, name) is None else getattr(p, name), shape, dtype)

    # --- output ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON types: the file name, frame index and each person's fields (PersonPose.to_dict, the fields
        of `posecal predict`'s results)."""
        out = {"file_name": self.name, "frame_index": self.frame_index,
               "people": [p.to_dict() for p in self.people]}
        return out if self.error is None else out | {"error": self.error}

    def to_json(self, **json_args) -> str:
        """to_dict() as a JSON string (json.dumps arguments pass through: indent=2, ...)."""
        return json.dumps(self.to_dict(), **json_args)

    def to_df(self):
        """The people as a pandas DataFrame, one row per person (`pd.concat([p.to_df() for p in pictures])` for
        many): file name, frame index, person index, track id, pose quality, p(person), pose source, box x, y,
        w, h, then per keypoint NAME_x, NAME_y, NAME_quality (expected OPKS), and NAME_visibility (0 absent, 1
        occluded, 2 visible) where the model gives visibility. pandas is not a posecal dependency: without it,
        one MissingPackage line."""
        pd = self._pandas()
        n = len(self.people)
        columns = {"file_name": [self.name] * n, "frame_index": [self.frame_index] * n, "person": list(range(n)),
                   "track_id": list(self.track_ids) if self.tracked else [None] * n,
                   "id_confidence": [p.id_confidence for p in self.people],
                   "pose_quality": self.pose_quality,
                   "person_probability": [p.person_probability for p in self.people],
                   "pose_source": list(self.pose_source)}
        columns |= dict(zip(("box_x", "box_y", "box_w", "box_h"), self.boxes.T))
        visibility = self.visibility
        for k, name in enumerate(COCO_KEYPOINTS):
            columns |= {f"{name}_x": self.keypoints[:, k, 0], f"{name}_y": self.keypoints[:, k, 1],
                        f"{name}_quality": self.keypoint_quality[:, k]}
            if visibility is not None:
                columns[f"{name}_visibility"] = visibility[:, k]
        return pd.DataFrame(columns)

    @staticmethod
    def _pandas():
        try:
            import pandas
        except ImportError:
            raise MissingPackage("pandas", "pip install pandas", "to_df()") from None
        return pandas

    def to_supervision(self):
        """The people as supervision's (sv.KeyPoints, sv.Detections), so that supervision's own annotators and
        trackers draw and follow posecal's poses: absent keypoints are not drawn, the trust numbers ride in
        `data` (posecal/integrations/supervision.py; the `posecal[supervision]` extra)."""
        from posecal.integrations.supervision import picture_to_supervision

        return picture_to_supervision(self)

    def to_fiftyone(self):
        """The people as FiftyOne's (fo.Keypoints, fo.Detections): points normalised, absent keypoints hidden as
        FiftyOne hides them (NaN), keypoint quality as each point's confidence, the trust numbers as attributes
        (posecal/integrations/fiftyone.py, which also makes samples; the `posecal[fiftyone]` extra)."""
        from posecal.integrations.fiftyone import picture_to_fiftyone

        return picture_to_fiftyone(self)

    def plot(self, show_all: bool = False, radius: bool = False) -> np.ndarray:
        """The picture with its people drawn (BGR, as `posecal predict --render` draws them; tracked people
        tagged with their id, as `posecal track --render`)."""
        from posecal.overlay import render_people

        if self.error is not None:
            raise PosecalInputError(f"{self.name}: nothing to draw: {self.error}")
        tags = [f"#{p.track_id}" for p in self.people] if self.tracked else None
        return render_people(self.image, self.people, show_all=show_all, radius=radius, tags=tags)

    def save(self, path, show_all: bool = False, radius: bool = False) -> Path:
        """Write plot() to an image file (its suffix picks the format: .png, .jpg, ...), atomically; returns the
        path. A suffix that is not an image's is one PosecalInputError line (to_json() is the data)."""
        import cv2

        path = Path(os.fspath(path))
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise PosecalInputError(f"{path}: save() writes the overlay as an image ({', '.join(IMAGE_SUFFIXES)}), "
                                    f"not '{path.suffix}'; for the poses write to_json()")
        if path.is_dir():
            raise PosecalInputError(f"{path}: is a folder; save() needs a file name")
        ok, data = cv2.imencode(suffix, self.plot(show_all, radius))
        if not ok:
            raise PosecalInputError(f"{path}: OpenCV could not encode a {suffix} image")
        try:
            write_bytes_atomic(path, data.tobytes())
        except OSError as e:
            raise PosecalInputError(f"{path}: cannot write ({e.strerror or e})") from None
        return path

    def show(self, title: str | None = None, wait: int = 0) -> None:
        """plot() in a window until a key is pressed (wait ms; 0: forever). Where no window can open (no display,
        or opencv-python-headless, which posecal installs) one PosecalInputError line says so."""
        import cv2

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise PosecalInputError("show(): no display (DISPLAY is not set); use save(path) instead")
        title = title or self.name
        try:
            cv2.imshow(title, self.plot())
            cv2.waitKey(int(wait))
            cv2.destroyWindow(title)
        except cv2.error:
            raise PosecalInputError("show(): this OpenCV has no GUI (opencv-python-headless); pip install "
                                    "opencv-python, or use save(path)") from None
