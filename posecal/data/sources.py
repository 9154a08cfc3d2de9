"""What `posecal predict` reads: image files, folders (recursive) and videos, as a stream of frames.

A file that cannot be read becomes a `Problem` in the stream (one line naming the file), so one bad
file never stops the others.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from posecal.data.coco import read_image
from posecal.errors import PosecalInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
# FFmpeg's log level for the videos posecal opens: quiet (AV_LOG_QUIET). OpenCV reads it from this variable when its
# FFmpeg backend first starts in the process, so it is set around each open (open_video)
FFMPEG_LOG_LEVEL = ("OPENCV_FFMPEG_LOGLEVEL", "-8")
# settings by which the user asks FFmpeg to speak, kept as they set them
FFMPEG_USER_SETTINGS = ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG")
_OPEN_LOCK = threading.Lock()   # the level travels in the environment and OpenCV's log level is global


@dataclass
class Frame:
    name: str          # file name relative to its folder argument; videos: "<video>#<frame index>"
    path: Path         # the file it came from
    bgr: np.ndarray
    frame_index: int | None = None   # videos only
    capture_time: float | None = None   # wall clock (seconds since the epoch) when read: a live source's capture
                                        # time (data/live.py), a file's decoding; what latency_ms counts from


@dataclass
class Problem:
    message: str       # one line, naming the file


def collect(inputs: list[str]) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """Expand INPUT arguments to (file, display name) in a stable order; names are relative to the folder
    given, so that `images/a/b.jpg` under `images/` is `a/b.jpg`, as COCO file names are."""
    files, problems = [], []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found, unreadable = _folder_files(path)
            problems += unreadable
            if not found and not unreadable:
                problems.append(Problem(f"{path}: folder has no images or videos "
                                        f"({', '.join(sorted(IMAGE_SUFFIXES))}, ...)"))
            for p in found:
                problem = unreadable_video(p) if is_video(p) else None
                if problem is None:
                    files.append((p, p.relative_to(path).as_posix()))
                else:
                    problems.append(problem)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                problems.append(Problem(f"{path}: not an image or video file type (suffix '{path.suffix}')"))
            elif is_video(path) and (problem := unreadable_video(path)) is not None:
                problems.append(problem)
            else:
                files.append((path, path.name))
        else:
            problems.append(Problem(f"{path}: no such file or folder"))
    return files, problems


def distinct_names(files: list[tuple], log) -> list[tuple]:
    """`files` ((source, name) each, in input order) with inputs that share a name but are different files (two
    folders' clip.mp4) named by as many of their folders as tell them apart (a/clip.mp4, b/clip.mp4), said in one
    line per name: their records, and the overlays named after them, would otherwise be one another's. The same
    file given twice, and a source that is not a file (a live stream), keep their names. Boxes and annotation
    files still find a renamed input by its base name (lookup)."""
    paths: dict[str, list[str]] = {}
    for source, name in files:
        if isinstance(source, Path) and os.path.abspath(source) not in paths.setdefault(name, []):
            paths[name].append(os.path.abspath(source))
    renamed: dict[tuple[str, str], str] = {}
    for name, shared in paths.items():
        if len(shared) < 2:
            continue
        apart = _told_apart(name, shared, set(paths) - {name})
        renamed |= {(name, path): new for path, new in zip(shared, apart)}
        log(f"{len(shared)} inputs are named {name}: told apart by their folders as {', '.join(apart)}")
    return [(source, renamed.get((name, os.path.abspath(source)), name) if isinstance(source, Path) else name)
            for source, name in files]


def _told_apart(name: str, paths: list[str], taken: set[str]) -> list[str]:
    """The names of the different files `paths` that share `name`: `name` with the fewest of their folders in front
    that makes them differ from one another and from the other inputs' names (`taken`)."""
    depth = len(Path(name).parts)
    tails = [Path(p).relative_to(Path(p).anchor).parts for p in paths]
    for more in range(1, max(len(t) for t in tails) - depth + 1):
        names = ["/".join(t[-(depth + more):]) for t in tails]
        if len(set(names)) == len(names) and not set(names) & taken:
            return names
    return ["/".join(t) for t in tails]


def _folder_files(folder: Path) -> tuple[list[Path], list[Problem]]:
    """Image and video files under `folder` (recursive, sorted), and one Problem per folder that cannot be
    listed: "permission denied", not a silent "no images" (Path.rglob skips such folders without a word)."""
    found, problems = [], []

    def unreadable(e: OSError) -> None:
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
        problems.append(Problem(f"{e.filename}: {why} (cannot read the folder)"))

    for root, _, names in os.walk(folder, onerror=unreadable):
        found += [Path(root) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
                  and (Path(root) / n).is_file()]
    return sorted(found), problems


def lookup(mapping: dict, name: str):
    """mapping[name], else mapping[base name]: how boxes files and annotation files name an input."""
    return mapping.get(name, mapping.get(Path(name).name))


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def open_video(source, *args) -> cv2.VideoCapture:
    """cv2.VideoCapture(source, *args) without FFmpeg's and OpenCV's own log lines: posecal says what is wrong with
    a video in one line of its own (unreadable_video, _video_frames, a live source's), and FFmpeg's `moov atom not
    found` came out before it. FFmpeg keeps the quiet level for the rest of the process (OpenCV sets it once, at its
    FFmpeg backend's first open: a process that opened a video before posecal did keeps its own level)."""
    with _OPEN_LOCK, _quiet_video_log():
        return cv2.VideoCapture(source, *args)


@contextlib.contextmanager
def _quiet_video_log():
    """For the time of an open: FFmpeg's level quiet (FFMPEG_LOG_LEVEL) unless the user set one
    (FFMPEG_USER_SETTINGS), and OpenCV's own log at errors at most (its `VIDEOIO(FFMPEG): backend ... can't be
    used` warnings) unless the user set OPENCV_LOG_LEVEL."""
    name, quiet = FFMPEG_LOG_LEVEL
    ffmpeg = not any(setting in os.environ for setting in FFMPEG_USER_SETTINGS)
    opencv = "OPENCV_LOG_LEVEL" not in os.environ
    get_level, set_level = _opencv_log_level()
    before = get_level()
    if ffmpeg:
        os.environ[name] = quiet
    if opencv:
        set_level(min(before, OPENCV_LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        if ffmpeg:
            os.environ.pop(name, None)
        if opencv:
            set_level(before)


OPENCV_LOG_LEVEL_ERROR = 2   # OpenCV's cv::utils::logging::LOG_LEVEL_ERROR in every version


def _opencv_log_level():
    """(get, set) of OpenCV's own log level: cv2.utils.logging in OpenCV 4.10 and newer, cv2.getLogLevel /
    cv2.setLogLevel before (4.9, the lowest posecal supports)."""
    logging = getattr(cv2.utils, "logging", None)
    if logging is not None:
        return logging.getLogLevel, logging.setLogLevel
    return cv2.getLogLevel, cv2.setLogLevel


def unreadable_video(path: Path) -> Problem | None:
    """Why a video file cannot be read (OpenCV cannot open it, or it has no first frame: a text file named .mp4,
    a 0-byte file), or None. Checked when the inputs are listed, so that a run whose only video is bad stops
    before it writes anything, in `predict` and `track` alike."""
    cap = open_video(str(path))
    try:
        if not cap.isOpened():
            return Problem(f"{path}: cannot open video (unsupported codec or not a video)")
        if not cap.grab():
            return Problem(f"{path}: video has no readable frames")
        return None
    finally:
        cap.release()


def video_fps(path: Path, default: float = 25.0) -> float:
    """A video file's frame rate as its container states it; `default` where it states none (or nonsense)."""
    cap = open_video(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else default


def frames_to_read(files: list[tuple[Path, str]], every: int = 1, limit: int | None = None) -> int | None:
    """How many frames iter_frames(files, every) gives (an image one, a video every `every`-th of the frames its
    container states), at most `limit`: a progress bar's total. None where a video states no frame count."""
    total = 0
    for path, _ in files:
        if not is_video(path):
            total += 1
            continue
        cap = open_video(str(path))
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else 0
        cap.release()
        if not n or not np.isfinite(n) or n <= 0:
            return limit
        total += -(-int(n) // every)
    return total if limit is None else min(total, limit)


def iter_frames(files: list[tuple[Path, str]], every: int = 1) -> Iterator[Frame | Problem]:
    """Frames of every file in order: one per image, every `every`-th frame of each video."""
    if every < 1:
        raise PosecalInputError(f"--every must be >= 1, got {every}")
    for path, name in files:
        if is_video(path):
            yield from _video_frames(path, name, every)
            continue
        try:
            yield Frame(name, path, read_image(path, apply_exif=True), capture_time=time.time())
        except PosecalInputError as e:
            yield Problem(str(e))


def _video_frames(path: Path, name: str, every: int) -> Iterator[Frame | Problem]:
    cap = open_video(str(path))
    try:
        if not cap.isOpened():
            yield Problem(f"{path}: cannot open video (unsupported codec or not a video)")
            return
        index, produced = 0, 0
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    produced += 1
                    yield Frame(f"{name}#{index}", path, bgr, frame_index=index, capture_time=time.time())
            index += 1
        if produced == 0:
            yield Problem(f"{path}: video has no readable frames")
    finally:
        cap.release()
