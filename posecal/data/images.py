"""The one image-file reader of posecal (predict, eval, train, the Python API).

Every way a file can be bad becomes a `PosecalInputError` with one line naming the file, so callers that
go through many files can report it and carry on. The file's bytes are read by Python and decoded by
`cv2.imdecode`, never `cv2.imread` on the path: OpenCV can crash on names that are not valid UTF-8.
"""
from __future__ import annotations

import io
import os
import warnings

import cv2
import numpy as np
from PIL import Image

from posecal.errors import PosecalInputError

# Largest image read, in pixels: Pillow's decompression-bomb error threshold (2 x Image.MAX_IMAGE_PIXELS at
# its default, about 13,400 x 13,400; ~0.5 GB as 8-bit BGR). Above it we refuse rather than risk running out
# of memory: a tiny PNG can claim 100000 x 100000 pixels. OpenCV's own limit (2**30 pixels) is looser.
MAX_PIXELS = 178_956_970

EXIF_ORIENTATION = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(path, apply_exif: bool = False) -> np.ndarray:
    """Read an image file as 8-bit BGR (H, W, 3); gray, alpha and 16-bit inputs are converted.

    apply_exif=False keeps the stored pixel grid, which is what COCO-style annotations refer to (eval,
    train). apply_exif=True turns the picture the way a photo viewer shows it (EXIF orientation tag), which
    is what a user means by "this photo" (`posecal predict`, `Predictor`).

    `path` may be str, bytes or os.PathLike, including names that are not valid UTF-8.
    Raises PosecalInputError (one line, naming the file) for: missing, unreadable (permissions), a folder,
    empty, truncated JPEG/PNG, larger than MAX_PIXELS, or bytes that do not decode as an image.
    """
    name = display_name(path)
    data, orientation = _checked_bytes(path, name, apply_exif)
    img = _decode(data, name)
    if apply_exif:
        img = apply_orientation(img, orientation)
    return to_bgr8(img)


def check_image_file(path) -> None:
    """Every check of `read_image` short of decoding the pixels (missing, permissions, empty, truncated, too
    large, by its header). Cheap enough to run over a whole training set before the first step, so that one bad
    file is reported and left out at the start instead of stopping a run hours in.
    Raises PosecalInputError like `read_image`."""
    _checked_bytes(path, display_name(path), orientation=False)


def unreadable_images(paths) -> dict:
    """{path: one-line reason} for the distinct `paths` that `check_image_file` refuses. The files of a folder
    that does not exist (a COCO file's `train2017/...` names under an image root without that folder) share one
    reason, which names that folder, not the image root above it nor each file in it."""
    bad, missing = {}, {}
    for path in dict.fromkeys(paths):
        try:
            check_image_file(path)
        except PosecalInputError as e:
            parent = os.path.dirname(os.fspath(path))
            folder = missing[parent] if parent in missing else missing.setdefault(parent, missing_folder(path))
            bad[path] = f"{display_name(folder)}: image folder not found" if folder is not None else str(e)
    return bad


def missing_folder(path):
    """The first folder on a file's path that does not exist (the one to create, or to fix in the paths), or
    None when the file's own folder is there."""
    folder = os.path.dirname(os.fspath(path))
    if not folder or os.path.isdir(folder):
        return None
    while True:
        up = os.path.dirname(folder)
        if not up or up == folder or os.path.isdir(up):
            return folder
        folder = up


def check_image_folder(folder, images_of) -> None:
    """A folder that images are read from: missing, a file, or not readable is ONE line naming it, before any
    image is tried (else every image in it would be a line of its own, or the run would say "no images")."""
    name = display_name(folder)
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except FileNotFoundError:
        raise PosecalInputError(f"{name}: image folder not found (images of {images_of})") from None
    except NotADirectoryError:
        raise PosecalInputError(f"{name}: is a file, not a folder of images (images of {images_of})") from None
    except PermissionError:
        raise PosecalInputError(f"{name}: permission denied (cannot read the folder)") from None
    except OSError as e:
        raise PosecalInputError(f"{name}: cannot read the folder ({e.strerror or e})") from None


def _checked_bytes(path, name: str, orientation: bool) -> tuple[bytes, int]:
    """The file's bytes and EXIF orientation, after the checks that need no decoding."""
    data = _read_bytes(path, name)
    _check_complete(data, name)
    size, orient = _probe_header(data, name, orientation)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise PosecalInputError(f"{name}: image too large ({size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; "
                                f"posecal reads at most {MAX_PIXELS:,})")
    return data, orient


def display_name(path) -> str:
    """The path as printable text: bytes that are not UTF-8 are shown as \\xNN instead of failing to print."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def _read_bytes(path, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise PosecalInputError(f"{name}: image not found") from None
    except PermissionError:
        raise PosecalInputError(f"{name}: permission denied (cannot read the file)") from None
    except IsADirectoryError:
        raise PosecalInputError(f"{name}: is a folder, not an image file") from None
    except OSError as e:
        raise PosecalInputError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise PosecalInputError(f"{name}: empty file (0 bytes)")
    return data


def _check_complete(data: bytes, name: str) -> None:
    """Refuse cut-off JPEG/PNG files: OpenCV decodes them into a half-grey picture without failing, and
    poses on it are garbage. The end marker is looked for near the end, since some writers pad after it."""
    tail = data[-64:]
    if data.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        raise PosecalInputError(f"{name}: truncated JPEG (file ends before the end-of-image marker)")
    if data.startswith(PNG_SIGNATURE) and b"IEND" not in tail:
        raise PosecalInputError(f"{name}: truncated PNG (file ends before the IEND chunk)")


def _probe_header(data: bytes, name: str, orientation: bool) -> tuple[tuple[int, int] | None, int]:
    """(width, height) and (when `orientation`) the EXIF orientation from the header alone, without
    decoding the pixels (OpenCV has no header-only API; Pillow's open is lazy). (None, 1) where Pillow does not know the format: the
    decoder then has the last word, within OpenCV's own pixel limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                # EXIF is parsed only when it will be applied: training reads every image each epoch
                return im.size, int(im.getexif().get(EXIF_ORIENTATION, 1) or 1) if orientation else 1
    except Image.DecompressionBombError as e:  # over twice Pillow's limit: its message has the pixel count
        raise PosecalInputError(f"{name}: image too large ({e})") from None
    except Exception:  # noqa: BLE001 - a header Pillow cannot parse is judged by the decoder below
        return None, 1


def image_size(path) -> tuple[int, int] | None:
    """(width, height) of an image file as stored (EXIF orientation not applied), from its header alone
    (Pillow's open is lazy), or None where that cannot tell (missing, unreadable, a format Pillow does not know):
    the reader then has the last word. Why: to judge a person box against its image before any network runs,
    when the annotation file does not give the image's size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 - any failure: size unknown here, the reader says what is wrong
        return None


def stored_size(path) -> tuple[int, int] | None:
    """(width, height) of an image file as stored: from its header (`image_size`), else, for a format or a header
    Pillow cannot read but OpenCV decodes, from its pixels; None only where the file cannot be read at all (the
    reader then says why). Why: a person box is judged against its image before any network runs, whatever the
    image's format, so that a box far outside it is named, not posed on padding."""
    size = image_size(path)
    if size is not None:
        return size
    try:
        h, w = read_image(path).shape[:2]
    except PosecalInputError:
        return None
    return w, h


def _decode(data: bytes, name: str) -> np.ndarray:
    """Decode as stored (IMREAD_UNCHANGED: bit depth and alpha kept, EXIF orientation not applied)."""
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise PosecalInputError(f"{name}: cannot decode image (corrupt, unsupported format, "
                                f"or over OpenCV's {2**30:,}-pixel limit)")
    return img


def pil_orientation(image) -> int:
    """The EXIF orientation (1-8) a PIL image carries (Image.open keeps the tag, and np.asarray ignores it), 1
    for anything else or an unreadable tag: what `apply_orientation` needs so that a photo opened with Pillow
    gives the same picture as its path read by `read_image(apply_exif=True)`."""
    if not isinstance(image, Image.Image):
        return 1
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a tag Pillow cannot parse: shown as stored, as viewers do
        return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) the way viewers do; unknown values leave the image as stored. The one
    implementation, for files (read_image) and PIL images given to the API alike."""
    if orientation in (5, 6, 7, 8):
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE if orientation in (5, 6) else cv2.ROTATE_90_COUNTERCLOCKWISE)
    if orientation in (2, 5, 7):
        img = cv2.flip(img, 1)
    elif orientation == 3:
        img = cv2.rotate(img, cv2.ROTATE_180)
    elif orientation == 4:
        img = cv2.flip(img, 0)
    return img


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """A picture in any form it reaches posecal (H x W or H x W x 1 grey, BGR, BGRA; 8 or 16 bits; float) ->
    8-bit 3-channel BGR, as the detector and the models expect. The one converter, for files and arrays alike:
    a grey or 16-bit picture is the same photo as its colour or 8-bit twin, not something else to look at.
    16 bits scale by 255/65535 (rounded, so 65535 -> 255 and 257 -> 1); other depths stretch to 0..255;
    alpha is dropped."""
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float64), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = np.ascontiguousarray(img[:, :, 0])
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def is_grey(bgr: np.ndarray, tolerance: int = 2) -> bool:
    """Is a BGR picture a grey one (its three channels equal, within JPEG's rounding)? Judged on a grid of
    about 64k pixels, which is enough for a photo and keeps the cost flat for large ones."""
    step = max(1, int(np.sqrt(bgr.shape[0] * bgr.shape[1] / 65536)))
    sample = bgr[::step, ::step].astype(np.int16)
    return bool(np.abs(sample[..., 0] - sample[..., 1]).max() <= tolerance
                and np.abs(sample[..., 1] - sample[..., 2]).max() <= tolerance)
