"""The one check of a picture handed to the Python API (`Predictor` and `PoseTracker` alike).

A picture is a file path (Predictor only: a tracker's frames are arrays), a numpy array, or anything
numpy.asarray makes a picture of (a PIL image, nested lists). Arrays are OpenCV's BGR by default, as cv2.imread
and cv2.VideoCapture give them and as every other pose library takes them; `rgb=True` reads them as RGB (a PIL
image is RGB by its nature and always read so). uint8, 16-bit and float pixels are accepted: floats whose values
all lie in [0, 1] are read as 0..1 (x 255), other floats as 0..255. Every mistake is one PosecalInputError line
naming the argument, which describes an array by its shape and dtype and never prints its values.
"""
from __future__ import annotations

import os

import numpy as np

from posecal.data.coco import read_image
from posecal.data.images import apply_orientation, pil_orientation, to_bgr8
from posecal.errors import PosecalInputError

EXPECTED = "a numpy array (H x W[ x C]), a PIL image, nested lists of pixels or a file path"


def describe(value) -> str:
    """A value as an error line may show it: an array by its shape and dtype, a long text cut, never the values."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} {text[:40]}..."


def is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def is_pil(value) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert")


def picture_bgr(image, rgb: bool = False, name: str = "image", paths: bool = True) -> np.ndarray:
    """Any picture the API takes -> BGR uint8 (H, W, 3), checked first. A path is read (EXIF-turned, as a photo
    viewer shows it) where `paths`, else refused with a pointer to what reads files."""
    if is_path(image):
        if not paths:
            raise PosecalInputError(f"{name}: expected an image array (H x W x 3, BGR), got the path "
                                    f"{describe(os.fspath(image))}; PoseTracker.track(path) reads a video file")
        return read_image(image, apply_exif=True)
    if is_pil(image):
        rgb = True   # Pillow's colour order, whatever the caller's arrays use
    if not isinstance(image, np.ndarray):
        image = array_like_image(image, name)
    return bgr_from_array(image, name, rgb=rgb)


def array_like_image(image, name: str = "image") -> np.ndarray:
    """What numpy.asarray makes of a picture given as a PIL image (palette, CMYK and other modes turned to RGB
    first, as their arrays are not colours), nested lists or anything with __array__; one line where that is
    not a picture of numbers (check_image_array then judges its shape)."""
    if isinstance(image, (bytes, bytearray, dict, set)) or image is None or np.isscalar(image):
        raise PosecalInputError(f"{name}: expected {EXPECTED}, got {type(image).__name__}")
    orientation = pil_orientation(image)   # a photo opened with Pillow: turned as its path would be (EXIF)
    mode = getattr(image, "mode", None)
    if isinstance(mode, str) and hasattr(image, "convert") and mode not in ("RGB", "RGBA", "L", "I;16"):
        image = image.convert("RGB")
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError):   # ragged nested lists and the like
        raise PosecalInputError(f"{name}: expected {EXPECTED}, got {type(image).__name__} that numpy cannot make "
                                f"one array of (rows of unequal length?)") from None
    if arr.dtype.kind not in "uif" or arr.ndim == 0:
        raise PosecalInputError(f"{name}: expected {EXPECTED}, got {type(image).__name__} whose values are not "
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
    if arr.dtype.kind in "if" and (arr.min() < 0 or (arr.dtype.kind == "f" and arr.max() > 255)):
        raise PosecalInputError(f"{name}: pixel values must lie in [0, 1] or [0, 255], got {arr.min():g} to "
                                f"{arr.max():g} ({describe(arr)})")


def bgr_from_array(image, name: str = "image", rgb: bool = True) -> np.ndarray:
    """A grey, BGR(A) or (rgb=True) RGB(A) numpy image (H x W, H x W x 1, x 3 or x 4; uint8, 16-bit, or float
    in [0, 1] or 0..255) -> BGR uint8 (checked first), through the file reader's converter (data.images.to_bgr8),
    so that an array and a file of the same photo give the same pixels."""
    arr = np.asarray(image)
    check_image_array(arr, name)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if rgb and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][:arr.shape[2]]]   # RGB(A) -> BGR(A)
    return np.ascontiguousarray(to_bgr8(arr))
