"""Python API: `Predictor()(image)` and `Predictor().predict(source)` -> Pictures (inference/picture.py), each
person with calibrated trust fields as numpy arrays."""
from __future__ import annotations

import os
import time
from dataclasses import replace
import warnings
from typing import Iterator

import numpy as np

from posecal.calibration.quality import calibration_from_meta
from posecal.calibration.reported import ReportedQuality
from posecal.data.sources import Problem, collect, iter_frames
from posecal.data.box_files import boxes_from_arraylike, check_boxes, scores_from_arraylike
from posecal.devices import choose_precision, default_batch_size
from posecal.errors import PosecalInputError
from posecal.inference.estimator import Estimator, PersonPose
from posecal.inference.frame_loop import frame_pictures, quiet
from posecal.inference.image_input import describe, is_path, is_pil, picture_bgr
from posecal.inference.opener import BACKENDS, is_onnx_file, open_model, precision_line
from posecal.inference.orientation import check_orientations
from posecal.inference.picture import Picture
from posecal.inference.person_policy import STILL, PersonPolicy
from posecal.inference.pipeline import GIVEN, PosePipeline, detection_setup
from posecal.parallel import default_threads
from posecal.validation import POSITIVE, PROBABILITY, THREADS, check_number, describe as describe_value

__all__ = ["BACKENDS", "PersonPose", "Picture", "Predictor", "is_onnx_file"]   # PersonPose lives with the estimator
# The Predictor's numbers: (kind, rule, None allowed), held to the CLI's own rules so both refuse alike
# (`orientations`, 1, 4 or "auto", is checked by posecal/inference/orientation.py, as the CLI's is).
API_NUMBERS = {"batch_size": (int, POSITIVE, True), "threads": (int, THREADS, True),
               "detector_threshold": (float, PROBABILITY, True), "min_pose_quality": (float, PROBABILITY, True)}


def check_api_numbers(**values) -> None:
    """Each numeric argument by name, before any model is loaded: `threads=-1` is one PosecalInputError line
    ('threads: must be in [1, 1024], got -1'), not torch's RuntimeError."""
    for name, value in values.items():
        kind, rule, optional = API_NUMBERS[name]
        check_number(name, value, kind, rule, optional)


class Predictor:
    """Top-down pose estimation with calibrated quality: `predictor(image)` -> a Picture, `predictor.predict(
    source)` -> a list of Pictures (stream=True: yielded one by one). Images are file paths or arrays: BGR by
    default, as OpenCV gives them (rgb=True for RGB arrays; a PIL image is RGB by itself), uint8, 16-bit or float
    (inference/image_input.py); files are turned by their EXIF orientation, and boxes and results refer to that.

    model_path: a shipped model's name (`posecal models`; default accurate), a posecal model file or an .onnx from
    `posecal export` (flip=None follows its flip setting). backend=None: onnxruntime (a model file is exported once
    into the user's cache, posecal/export/cache.py), on the CPU or device="cuda" (the `gpu` extra; the CPU with one
    warning where CUDA cannot run); backend="torch" runs a .pt in PyTorch; an .onnx always runs in onnxruntime.
    threads (default: the machine's cores) apply to this Predictor's sessions. flip=None means flip test on.
    calibrated=False returns the quality heads' raw outputs instead of the stored calibration's.

    Images without boxes go through a person detector: "default" the shipped SSD, a path a YOLOX-style ONNX file,
    None or "none" the whole image as one person, always reported (as given boxes are). detector_threshold=None runs
    the SSD permissively and posecal decides which unsure boxes are people; a threshold given keeps the boxes the
    detector scores above it. verifier="default" is the shipped person verifier (p(person) of every box not the
    caller's; None: the policy judges by the pose alone). Detector, estimator and person rule are one PosePipeline
    (`self.pipeline`), the same one `posecal predict` and `posecal track` use.

    orientations=4 poses every person in crops turned by 0/90/180/270 degrees and keeps the most trusted pose
    (inference/orientation.py), at 4x the network time; "auto" turns only persons below orientation.AUTO_BELOW or
    leaning past AUTO_TILT. With either, the detector also looks at the picture upside down (detect/turned.py).
    policy: who is a person (default STILL); min_pose_quality, where given, replaces the policy's own.
    second_look=True also runs the detector on square tiles of a wide picture (detect/tiles.py).
    precision: a shipped model's CPU graphs, "auto" (devices.choose_precision), "int8" or "float";
    `self.precision` says which run and `self.precision_line` why (None for a model that is no shipped graph).
    """

    def __init__(self, model_path=None, device: str = "cpu", flip: bool | None = None, batch_size: int | None = None,
                 backend: str | None = None, threads: int | None = None, calibrated: bool = True, detector="default",
                 detector_threshold: float | None = None, min_pose_quality: float | None = None,
                 orientations: int | str = 1, policy: PersonPolicy | None = None, second_look: bool = False,
                 verifier="default", precision: str = "auto"):
        check_api_numbers(batch_size=batch_size, threads=threads, detector_threshold=detector_threshold,
                          min_pose_quality=min_pose_quality)
        check_switches(flip=flip, calibrated=calibrated, second_look=second_look)
        orientations = check_orientations(orientations)
        self.threads = threads = threads or default_threads()
        precision, why = choose_precision(precision, device)   # once: the graphs opened and the line say it
        opened = open_model(model_path, backend, flip, threads, device, precision=precision)
        self.config, self.meta, self.backend, self.device = opened.config, opened.meta, opened.backend, opened.device
        self.precision = opened.precision
        self.model_name = str(model_path) if model_path is not None else "accurate"
        self.precision_line = precision_line(model_path, why, self.backend, self.device, opened.precision)
        calibration = calibration_from_meta(self.meta, str(model_path or "default model")) if calibrated else None
        batch_size = batch_size or default_batch_size(self.device)   # where it runs: the CPU after a CUDA fallback
        self.estimator = Estimator(opened.runner, self.config.input_wh, calibration, opened.flip, batch_size,
                                   orientations, self.device, threads if self.backend == "torch" else None)
        self.batch_size = batch_size
        self.detector = None
        policy = policy or STILL
        if min_pose_quality is not None:
            policy = replace(policy, min_pose_quality=min_pose_quality)
        self.verifier = None
        if detector is not None and str(detector).lower() != "none":
            from posecal.detect.verifier import open_verifier

            self.verifier = open_verifier(verifier, threads)
            if self.verifier is not None:   # the policy's p(person) thresholds on this verifier's scale, once
                policy = policy.on_scale(*self.verifier.scale_map)
        if detector is not None:
            from posecal.detect.detector import load_detector

            threshold, policy = detection_setup(detector, detector_threshold,
                                                self.verifier is not None or bool(self.config.quality_heads), policy)
            self.detector = load_detector(str(detector), threshold, threads=threads, device=device)
            if second_look and self.detector is not None:
                from posecal.detect.tiles import SecondLook

                self.detector = SecondLook(self.detector)
            if orientations != 1 and self.detector is not None:   # people upside down: a box to turn
                from posecal.detect.turned import TurnedLook

                self.detector = TurnedLook(self.detector)
        # the reported-pose map the model carries, where this run meets what it was fitted on (reported.FITTED)
        self.reported, self.unrated = ReportedQuality.of_model(self.meta, self.model_name, self.conditions(
            detector, verifier, orientations, second_look, policy)) if calibrated else (None, "calibrated=False")
        # a staged estimator poses looks and refines the people the policy keeps (one pose pass per candidate)
        staged = self.estimator.staged
        self.pipeline = PosePipeline(self.estimator.look if staged else self.estimate, self.detector, policy,
                                     self.verifier, self.reported, self.estimator.refine if staged else None,
                                     self.estimator.second_person if staged else None)

    def __repr__(self) -> str:
        """One line: the model, where and how it runs, and who finds the people (the default repr printed an
        address)."""
        detector = "none" if self.detector is None else type(self.detector).__name__
        return (f"Predictor(model={self.model_name!r}, {self.precision} on {self.device}, "
                f"flip={self.estimator.flip}, detector={detector}, verifier={'on' if self.verifier else 'off'}, "
                f"threads={self.threads})")

    def conditions(self, detector, verifier, orientations, second_look: bool, policy: PersonPolicy) -> dict:
        """This run as the reported-pose map's conditions (calibration/reported.py FITTED): the pictures its policy
        is for, the flip test, which detector and verifier (the shipped ones by name), the orientations searched
        and the second look."""
        from posecal.detect.ssd import SHIPPED_DETECTOR
        from posecal.detect.verifier import SHIPPED_VERIFIER

        def named(spec, name: str, shipped) -> str:   # the shipped one by its name, however it was given
            text = str(spec)
            same = os.path.isfile(text) and os.path.samefile(text, shipped) if os.path.isfile(shipped) else False
            return name if text.lower() in ("default", name) or same else text

        return {"pictures": policy.pictures, "flip": bool(self.estimator.flip),
                "detector": "none" if self.detector is None else named(detector, "ssd", SHIPPED_DETECTOR),
                "verifier": "none" if self.verifier is None else named(verifier, "default", SHIPPED_VERIFIER),
                "orientations": orientations, "second_look": bool(second_look)}

    def __call__(self, image, boxes=None, box_scores=None, rgb: bool | None = None, bgr: bool | None = None):
        """The people in one picture -> its Picture (a list of pictures -> a list of Pictures, as predict()).
        boxes: [[x, y, w, h], ...] to skip the detector (box_scores beside them, or a 5th column). Bad input (image,
        boxes, scores) raises one PosecalInputError line naming the argument; boxes outside the image are skipped,
        and normalised-looking boxes flagged, with a warning, as `posecal predict` does. bgr= is the former
        keyword (bgr=True: BGR, the default now; bgr=False: RGB)."""
        rgb = colour_order(rgb, bgr)
        if is_batch(image):
            if boxes is not None or box_scores is not None:
                raise PosecalInputError("boxes: given with a list of images; give one image with its boxes, or "
                                        "(image, boxes, box_scores) items to predict_many")
            return self.predict(image, rgb=rgb)
        t0 = time.perf_counter()
        prepared = self._prepare(image, boxes, box_scores, rgb, "image", "")
        t1 = time.perf_counter()
        people = self.pipeline.people([prepared])[0]
        speed = {"detect": (t1 - t0) * 1e3, "pose": (time.perf_counter() - t1) * 1e3}
        name = os.path.basename(os.fspath(image)) if is_path(image) else "image"
        return Picture(name, os.fspath(image) if is_path(image) else "", people, prepared[0], speed=speed)

    def predict_many(self, items, rgb: bool | None = None, bgr: bool | None = None) -> list[list[PersonPose]]:
        """[(image, boxes or None, box_scores or None), ...] -> the people (PersonPose lists) per image: the
        low-level batched call a tracker makes; crops of all images are batched together. Images as in __call__
        (BGR arrays by default, rgb=True for RGB). Every item is checked as in __call__, messages start
        `images[n]: `."""
        rgb = colour_order(rgb, bgr)
        prepared = []
        for n, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise PosecalInputError(f"images[{n}]: expected an (image, boxes, box_scores) tuple, got "
                                        f"{type(item).__name__}")
            prepared.append(self._prepare(*item, rgb, f"images[{n}]", f"images[{n}]: "))
        return self.pipeline.people(prepared)

    def predict(self, source, stream: bool = False, every: int = 1, rgb: bool | None = None,
                bgr: bool | None = None) -> list[Picture] | Iterator[Picture]:
        """Pictures with their people for a source: a path (an image, a video: every `every`-th frame, or a folder
        of them, recursive, in a stable order), an image array (BGR; rgb=True for RGB), or a list of any of
        these, in the order given. Returns a list; stream=True yields each Picture as it is made (a long video
        never held in memory). A file that cannot be read gives a Picture in its place with its `error` (no
        people) and a warning naming it, so a list of image files gives one Picture per file, in order; the people
        are found as __call__ finds them. Bad input is one PosecalInputError line, raised here, before any picture
        is made; so is a source of which nothing can be read."""
        rgb = colour_order(rgb, bgr)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise PosecalInputError(f"every: must be an integer >= 1, got {describe(every)}")
        items = list(source) if is_batch(source) else [source]
        if not items:
            raise PosecalInputError("source: an empty list; give a path, an image array, or a list of them")
        single = len(items) == 1 and not is_batch(source)
        parts, readable = [], 0
        for n, item in enumerate(items):
            name = "image" if single else f"images[{n}]"
            if is_path(item):
                files, problems = collect([os.fspath(item)])
                parts += [files] + problems          # each problem warned as its Picture is made (_stream)
                readable += len(files)
            else:
                parts.append(_Array(name, picture_bgr(item, rgb, name)))
                readable += 1
        if not readable:
            for problem in (part for part in parts if isinstance(part, Problem)):
                warnings.warn(problem.message, stacklevel=2)
            raise PosecalInputError("nothing to predict: no readable image or video among "
                                    + ", ".join(os.fspath(i) if is_path(i) else describe(i) for i in items))
        pictures = self._stream(parts, every)
        return pictures if stream else list(pictures)

    def _stream(self, parts: list, every: int) -> Iterator[Picture]:
        """The Pictures of checked sources (file lists, arrays and the problems met finding files), in order,
        through the one frame loop; a file that cannot be read is a Picture with its error and a warning naming
        it."""
        items = ((None, frame) for part in parts
                 for frame in ([part] if isinstance(part, (_Array, Problem)) else iter_frames(part, every)))
        warn = lambda _, problem: warnings.warn(problem.message, stacklevel=4)   # noqa: E731
        for _, picture in frame_pictures(self.pipeline, items, self.batch_size, on_problem=warn,
                                         problems_as_pictures=True):
            yield picture

    def pictures(self, items, boxes_of=None, mode: str | None = None, log_frame=quiet, on_problem=None,
                 problems_as_pictures: bool = False):
        """The frame loop (inference/frame_loop.py) over this Predictor's pipeline at its batch size: (tag, Frame or
        Problem) items -> (tag, Picture) in input order. predict() and `posecal predict` both iterate it; the CLI
        passes its boxes file (`boxes_of`), its score mode, where its lines go, and has its unreadable files
        yielded in their place (`problems_as_pictures`)."""
        return frame_pictures(self.pipeline, items, self.batch_size, boxes_of, mode, log_frame, on_problem,
                              problems_as_pictures)

    def _prepare(self, image, boxes, box_scores, rgb: bool, name: str, prefix: str):
        """Checked (BGR image, (N, 4) boxes, (N,) scores, where the boxes came from) for one item, before any
        work is spent on it; no boxes: the detector's, or the whole image."""
        image = picture_bgr(image, rgb, name)
        if boxes is None and box_scores is None:
            return image, *self.pipeline.boxes(image)
        return image, *checked_boxes(boxes, box_scores, image.shape[1], image.shape[0], prefix), GIVEN

    def estimate(self, prepared) -> list[list[PersonPose]]:
        """The estimator alone (posecal/inference/estimator.py): [(BGR image, (N, 4) boxes, (N,) scores), ...]
        -> a PersonPose per box, per image, with no person rule (the pipeline's step after the boxes)."""
        return self.estimator.estimate(prepared)

    # what the estimator runs, readable (and the model settable) on the Predictor
    model = property(lambda self: self.estimator.model, lambda self, v: setattr(self.estimator, "model", v))
    flip = property(lambda self: self.estimator.flip)
    calibration = property(lambda self: self.estimator.calibration)
    orientations = property(lambda self: self.estimator.orientations,
                            lambda self, v: setattr(self.estimator, "orientations", check_orientations(v)))


def checked_boxes(boxes, box_scores, width: int, height: int, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """API boxes and scores, validated, then put through the CLI's own check_boxes (one rule for both):
    its messages become warnings and boxes outside the image are skipped. No boxes = the whole image."""
    parsed = boxes_from_arraylike(boxes, f"{prefix}boxes")
    if parsed is None:
        if box_scores is not None:
            raise PosecalInputError(f"{prefix}box_scores given without boxes")
        return np.array([[0, 0, width, height]], float), np.ones(1)
    boxes, column = parsed
    if column is not None and box_scores is not None:
        raise PosecalInputError(f"{prefix}box_scores given twice: as a 5th box column and as box_scores")
    if column is not None:
        scores = column
    elif box_scores is None:
        scores = np.ones(len(boxes))
    else:
        scores = scores_from_arraylike(box_scores, len(boxes), f"{prefix}box_scores")
    boxes, scores, messages = check_boxes(boxes, scores, width, height, f"{prefix}boxes")
    for m in messages:
        warnings.warn(m, stacklevel=4)
    return boxes, scores


class _Array:
    """An image array among predict()'s sources, checked and made BGR: a frame of its own (as data.sources.Frame)."""

    def __init__(self, name: str, bgr: np.ndarray):
        self.name, self.path, self.bgr, self.frame_index = name, None, bgr, None


def is_batch(value) -> bool:
    """Is this a list of pictures (paths, arrays, PIL images) rather than one picture given as nested lists?"""
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(is_path(v) or isinstance(v, np.ndarray) or is_pil(v) for v in value)) or \
        (isinstance(value, (list, tuple)) and len(value) == 0)


def check_switches(**values) -> None:
    """Each on/off argument by name (None allowed: the default): True or False, numpy's bools too. Anything else
    is one PosecalInputError line ('flip: must be True or False (a bool), got the string 'yes''): a string, a
    number or a list would otherwise be taken by its truth, and flip="no" would switch the flip test on."""
    for name, value in values.items():
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise PosecalInputError(f"{name}: must be True or False (a bool), got {describe_value(value)}")


def colour_order(rgb: bool | None, bgr: bool | None) -> bool:
    """Are arrays RGB? BGR by default (OpenCV's order); rgb=True for RGB. bgr= is the former keyword and still
    works (bgr=False: RGB); rgb and bgr that contradict each other are one PosecalInputError line."""
    check_switches(rgb=rgb, bgr=bgr)
    if bgr is None:
        return bool(rgb)
    if rgb is not None and bool(rgb) == bool(bgr):
        raise PosecalInputError(f"rgb={rgb} and bgr={bgr} contradict each other; arrays are BGR by default, give "
                                f"rgb=True for RGB arrays")
    return not bgr
