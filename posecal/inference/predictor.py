"""Python API: `Predictor()(image, boxes)` -> typed per-person results with numpy arrays."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from posecal.calibration.quality import calibration_from_meta
from posecal.data.coco import read_image
from posecal.data.images import apply_orientation, pil_orientation, to_bgr8
from posecal.data.sources import Problem, collect, iter_frames
from posecal.detect.boxes import boxes_from_arraylike, check_boxes, scores_from_arraylike
from posecal.detect.detector import MIN_POSE_QUALITY
from posecal.errors import PosecalInputError
from posecal.inference.estimator import Estimator, PersonPose
from posecal.inference.opener import BACKENDS, is_onnx_file, open_model
from posecal.inference.orientation import check_orientations
from posecal.inference.pipeline import GIVEN, PersonRule, PosePipeline, detection_setup
from posecal.parallel import default_threads
from posecal.validation import POSITIVE, PROBABILITY, THREADS, check_number

__all__ = ["BACKENDS", "PersonPose", "Picture", "Predictor", "is_onnx_file"]   # PersonPose lives with the estimator
# The Predictor's numbers: (kind, rule, None allowed), held to the CLI's own rules so both refuse alike
# (`orientations`, 1, 4 or "auto", is checked by posecal/inference/orientation.py, as the CLI's is).
API_NUMBERS = {"batch_size": (int, POSITIVE, False), "threads": (int, THREADS, True),
               "detector_threshold": (float, PROBABILITY, True), "min_pose_quality": (float, PROBABILITY, False)}


def check_api_numbers(**values) -> None:
    """Each numeric argument by name, before any model is loaded: `threads=-1` is one PosecalInputError line
    ('threads: must be in [1, 1024], got -1'), not torch's RuntimeError."""
    for name, value in values.items():
        kind, rule, optional = API_NUMBERS[name]
        check_number(name, value, kind, rule, optional)


@dataclass
class Picture:
    """One image, or one frame of a video, with its people, as Predictor.predict yields them."""

    name: str                       # file name; a video's frames: "<video>#<frame index>"
    path: str
    people: list[PersonPose]
    image: np.ndarray               # the BGR picture the poses refer to (EXIF-turned)
    frame_index: int | None = None

    def to_dict(self) -> dict:
        return {"file_name": self.name, "frame_index": self.frame_index,
                "people": [p.to_dict() for p in self.people]}

    def plot(self, show_all: bool = False, radius: bool = False) -> np.ndarray:
        """The picture with its people drawn (BGR, as `posecal predict --render` draws them)."""
        from posecal.overlay import render_people

        return render_people(self.image, self.people, show_all=show_all, radius=radius)


class Predictor:
    """Top-down pose estimation with calibrated quality. Images are file paths, RGB numpy arrays, or, with
    bgr=True, OpenCV's BGR arrays as cv2.imread and cv2.VideoCapture give them; files are turned by their EXIF
    orientation, as a photo viewer shows them (boxes and results refer to that).

    model_path: a shipped model's name (accurate, the default; published; fast: `posecal models`), a posecal
    model file or an .onnx file written by `posecal export` (which carries its flip setting: flip=None follows
    it). backend=None is the CLI's: onnxruntime on the CPU (a model file is exported once and kept in the
    user's cache folder, posecal/export/cache.py), PyTorch on device="cuda"; an .onnx file runs in onnxruntime
    whatever `backend` says. threads (default: the machine's cores) apply to this Predictor's own sessions, not
    to the process. flip=None means flip test on. calibrated=False returns the quality heads' raw outputs
    instead of those mapped by the calibration stored with the model (when it has one).

    Images given without boxes go through a person detector: detector="default" is the shipped SSD
    (posecal/detect/ssd.py), a path a YOLOX-style ONNX file, None (or "none") no detector: the whole image is
    then one box, and its pose is dropped when its pose quality is below min_pose_quality (nobody there). The
    shipped SSD with detector_threshold=None is trust-guided: it runs at a permissive threshold and posecal's
    trust decides who among its unsure boxes is a person (pipeline.PersonRule); a detector_threshold given keeps
    the detector's boxes above it, as the detector scores them.
    Boxes from the detector are followed by OKS-NMS on the poses. Detector, estimator and that person rule are
    one PosePipeline (posecal/inference/pipeline.py, `self.pipeline`), the same one `posecal predict` and
    `posecal track` use.

    orientations=4 estimates every person in crops turned by 0/90/180/270 degrees and keeps the pose the quality
    head trusts most (posecal/inference/orientation.py): for people lying or upside down, at 4x the network time.
    orientations="auto" turns only the persons whose upright pose quality is below orientation.AUTO_BELOW (or whose
    torso leans past orientation.AUTO_TILT), so
    people the head trusts upright cost one pass (a model without quality heads: upright only).
    rule: the person rule after the estimator (pipeline.PersonRule: pose NMS settings, min_pose_quality).
    second_look=True also runs the detector on square tiles of a wide picture (posecal/detect/tiles.py).
    """

    def __init__(self, model_path=None, device: str = "cpu", flip: bool | None = None, batch_size: int = 16,
                 backend: str | None = None, threads: int | None = None, calibrated: bool = True, detector="default",
                 detector_threshold: float | None = None, min_pose_quality: float = MIN_POSE_QUALITY,
                 orientations: int | str = 1, rule: PersonRule | None = None, second_look: bool = False):
        check_api_numbers(batch_size=batch_size, threads=threads, detector_threshold=detector_threshold,
                          min_pose_quality=min_pose_quality)
        orientations = check_orientations(orientations)
        self.threads = threads = threads or default_threads()
        opened = open_model(model_path, backend, flip, threads, device)
        self.config, self.meta, self.backend, self.device = opened.config, opened.meta, opened.backend, opened.device
        calibration = calibration_from_meta(self.meta, str(model_path or "default model")) if calibrated else None
        self.estimator = Estimator(opened.runner, self.config.input_wh, calibration, opened.flip, batch_size,
                                   orientations, self.device, threads if self.backend == "torch" else None)
        self.batch_size = batch_size
        self.detector = None
        rule = rule or PersonRule(min_pose_quality=min_pose_quality)
        if detector is not None:
            from posecal.detect.detector import load_detector

            threshold, rule = detection_setup(detector, detector_threshold, bool(self.config.quality_heads), rule)
            self.detector = load_detector(str(detector), threshold, threads=threads)
            if second_look and self.detector is not None:
                from posecal.detect.tiles import SecondLook

                self.detector = SecondLook(self.detector)
        self.pipeline = PosePipeline(self.estimate, self.detector, rule)

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", **kwargs) -> "Predictor":
        return cls(path, device=device, **kwargs)

    def __call__(self, image, boxes=None, box_scores=None, bgr: bool = False) -> list[PersonPose]:
        """People in one image (bgr=True: an OpenCV BGR uint8 array). Bad input (image, boxes, scores) raises
        one PosecalInputError line naming the argument; boxes outside the image are skipped, and
        normalised-looking boxes flagged, with a warning, as `posecal predict` does."""
        return self.pipeline.people([self._prepare(image, boxes, box_scores, bgr, "image", "")])[0]

    def predict_many(self, items, bgr: bool = False) -> list[list[PersonPose]]:
        """[(image, boxes or None, box_scores or None), ...] -> people per image; crops of all images are
        batched together, which is what makes folders of one-person photos fast. bgr=True: arrays are
        OpenCV's BGR uint8 already. Every item is checked as in __call__, messages start `images[n]: `."""
        prepared = []
        for n, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise PosecalInputError(f"images[{n}]: expected an (image, boxes, box_scores) tuple, got "
                                        f"{type(item).__name__}")
            prepared.append(self._prepare(*item, bgr, f"images[{n}]", f"images[{n}]: "))
        return self.pipeline.people(prepared)

    def predict(self, source, every: int = 1) -> Iterator[Picture]:
        """Pictures with their people for a path: an image, a video (every `every`-th frame) or a folder of
        them (recursive, in a stable order), or a list of such paths. A file that cannot be read is skipped with
        a warning naming it, as `posecal predict` does; the people are found as __call__ finds them. Images
        are batched together through the network."""
        inputs = [str(s) for s in source] if isinstance(source, (list, tuple)) else [str(source)]
        files, problems = collect(inputs)
        for problem in problems:
            warnings.warn(problem.message, stacklevel=2)
        if not files:
            raise PosecalInputError("nothing to predict: no readable image or video among " + ", ".join(inputs))
        pending = []
        for frame in iter_frames(files, every):
            if isinstance(frame, Problem):
                warnings.warn(frame.message, stacklevel=2)
                continue
            pending.append(frame)
            if len(pending) >= self.batch_size:
                yield from self._pictures(pending)
                pending = []
        yield from self._pictures(pending)

    def _pictures(self, frames: list) -> list[Picture]:
        people = self.pipeline.people([(f.bgr, *self.pipeline.boxes(f.bgr)) for f in frames]) if frames else []
        return [Picture(f.name, str(f.path), ps, f.bgr, f.frame_index) for f, ps in zip(frames, people)]

    def _prepare(self, image, boxes, box_scores, bgr: bool, name: str, prefix: str):
        """Checked (BGR image, (N, 4) boxes, (N,) scores, where the boxes came from) for one item, before any
        work is spent on it; no boxes: the detector's, or the whole image."""
        image = bgr_image(image, bgr, name)
        if boxes is None and box_scores is None:
            return image, *self.pipeline.boxes(image)
        return image, *checked_boxes(boxes, box_scores, image.shape[1], image.shape[0], prefix), GIVEN

    def estimate(self, prepared) -> list[list[PersonPose]]:
        """The estimator alone (posecal/inference/estimator.py): [(BGR image, (N, 4) boxes, (N,) scores), ...]
        -> a PersonPose per box, per image, with no person rule (the pipeline's step after the boxes)."""
        return self.estimator.estimate(prepared)

    # what the estimator runs, readable and settable here as before
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


def bgr_image(image, bgr: bool, name: str) -> np.ndarray:
    """A file path (read, EXIF-turned), a numpy array or an array-like (a PIL image, nested lists, anything
    numpy.asarray makes a picture of) -> BGR uint8; anything else is refused by name."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, apply_exif=True)  # as a photo viewer shows it
    if not isinstance(image, np.ndarray):
        image = array_like_image(image, name)
    if bgr:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PosecalInputError(f"{name}: bgr=True needs H x W x 3 uint8, got {image.shape} {image.dtype}")
        return image
    return bgr_from_array(image, name)


def array_like_image(image, name: str = "image") -> np.ndarray:
    """What numpy.asarray makes of a picture given as a PIL image (palette, CMYK and other modes turned to RGB
    first, as their arrays are not colours), nested lists or anything with __array__; one line where that is
    not a picture of numbers (check_image_array then judges its shape)."""
    expected = "a numpy array (H x W[ x C]), a PIL image, nested lists of pixels or a file path"
    if isinstance(image, (bytes, bytearray, dict, set)) or image is None or np.isscalar(image):
        raise PosecalInputError(f"{name}: expected {expected}, got {type(image).__name__}")
    orientation = pil_orientation(image)   # a photo opened with Pillow: turned as its path would be (EXIF)
    mode = getattr(image, "mode", None)
    if isinstance(mode, str) and hasattr(image, "convert") and mode not in ("RGB", "RGBA", "L", "I;16"):
        image = image.convert("RGB")
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError):   # ragged nested lists and the like
        raise PosecalInputError(f"{name}: expected {expected}, got {type(image).__name__} that numpy cannot make "
                                f"one array of (rows of unequal length?)") from None
    if arr.dtype.kind not in "uif" or arr.ndim == 0:
        raise PosecalInputError(f"{name}: expected {expected}, got {type(image).__name__} whose values are not "
                                f"pixel numbers (numpy makes dtype {arr.dtype} of it)")
    return apply_orientation(arr, orientation) if orientation != 1 else arr


def check_image_array(arr: np.ndarray, name: str = "image") -> None:
    """Shapes, dtypes and pixel values the converter can turn into a picture; NaN or inf would otherwise
    become arbitrary bytes and a confident pose of nothing."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
        raise PosecalInputError(f"{name}: array must be HxW, HxWx1, HxWx3 or HxWx4 and non-empty, got shape "
                                f"{arr.shape}")
    if arr.dtype.kind not in "uif":
        raise PosecalInputError(f"{name}: pixels must be numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise PosecalInputError(f"{name}: {bad} non-finite pixels")


def bgr_from_array(image, name: str = "image") -> np.ndarray:
    """RGB(A) or grey numpy image (H x W, H x W x 1, x 3 or x 4; uint8, 16-bit, or float in [0, 1]) -> BGR
    uint8 (checked first), through the file reader's converter (data.images.to_bgr8), so that an array and a
    file of the same photo give the same pixels."""
    arr = np.asarray(image)
    check_image_array(arr, name)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][:arr.shape[2]]]   # RGB(A) -> BGR(A)
    return np.ascontiguousarray(to_bgr8(arr))
