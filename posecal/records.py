"""Poses as they are made: one JSON record per frame, streamed as JSON Lines (`--out -`: stdout; `--out X.jsonl`:
a file), shared by `posecal track` and `posecal predict`.

Why not the atomic writers of posecal/io.py: a stream is read while it is written (a live camera's poses by the
next program in a pipe), so each line is written and flushed when its frame is done; whole-file replacement
cannot apply. A `.jsonl` file is started afresh when the run starts and holds every complete line written until
the run stopped, however it stopped; the run holds a lock on it meanwhile (lock_file), so a second run
writing the same file is refused at its start in one line rather than writing between the first one's lines. The
record's fields: docs/schemas/frame_record.schema.json.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Callable

from posecal.errors import PosecalInputError

STDOUT = "-"
_stdout = None   # the real stdout while stdout_reserved() holds it for records


RESULT_SUFFIXES = (".json", ".jsonl")   # what a results --out may name: COCO results, or JSON Lines records


def is_stream(out) -> bool:
    """Does this --out stream records (stdout or a .jsonl file) rather than write one JSON file at the end?"""
    return str(out) == STDOUT or str(out).lower().endswith(".jsonl")


def check_results_out(out, option: str = "--out") -> None:
    """A results --out names its format: X.json (one COCO results file, written at the end), X.jsonl (a record
    per frame, as made) or - (records on stdout); anything else (out.csv, a name without suffix) is one
    PosecalInputError line, rather than JSON silently written under another name."""
    if str(out) == STDOUT or Path(str(out)).is_dir():   # a folder: outputs.check_output_file says so
        return
    suffix = Path(str(out)).suffix
    if suffix.lower() not in RESULT_SUFFIXES:
        raise PosecalInputError(f"{option} {out}: posecal writes results as .json (COCO keypoint results) or .jsonl "
                                f"(one JSON record per frame), or - for stdout; not "
                                f"{repr(suffix) if suffix else 'a name without suffix'}")


@contextlib.contextmanager
def stdout_reserved(out):
    """With `--out -`, stdout carries records and nothing else: while this holds, what else Python prints to
    sys.stdout (a summary line, a library's chatter) goes to stderr. Any other --out: nothing changes."""
    global _stdout
    if str(out) != STDOUT:
        yield
        return
    _stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout, _stdout = _stdout, None


def result_entries(frame, persons: list, image_id: int, mode: str) -> list[dict]:
    """COCO keypoint results (pycocotools loadRes reads them) plus posecal's trust fields (PersonPose.to_dict) of
    one frame (posecal.inference.picture.Frame: its name and, in a video, its index), for predict and track."""
    out = []
    for p in persons:
        entry = {"image_id": image_id, "file_name": frame.name, "category_id": 1} | p.to_dict(mode)
        if frame.frame_index is not None:
            entry["frame_index"] = frame.frame_index
        out.append(entry)
    return out


def frame_record(frame: int, file_name: str, capture_time: float | None, people: list[dict]) -> dict:
    """One frame's record; latency_ms is from its capture (or read) time to now, the moment it is written."""
    now = time.time()
    capture_time = now if capture_time is None else float(capture_time)
    return {"frame": int(frame), "file_name": file_name, "capture_time": round(capture_time, 6),
            "latency_ms": round(max(0.0, now - capture_time) * 1000, 2), "people": people}


class RecordStream:
    """Writes records as JSON lines, each flushed at once. A reader that went away (`| head`, a closed socket)
    sets `reader_gone` (the run then stops, as at the end of a stream) instead of ending in a traceback."""

    def __init__(self, out):
        self.out = str(out)
        self.records = 0
        self.reader_gone = False
        if self.out == STDOUT:
            self._file, self._owned = _stdout or sys.stdout, False
        else:
            self._file, self._owned = _locked_afresh(self.out), True

    def write(self, record: dict) -> bool:
        """Write one record; False once the reader has gone."""
        if self.reader_gone:
            return False
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except BrokenPipeError:
            self.reader_gone = True
            self._silence_stdout()
            return False
        except OSError as e:
            raise PosecalInputError(f"{self.out}: cannot write ({e.strerror or e})") from None
        self.records += 1
        return True

    def _silence_stdout(self) -> None:
        """stdout's reader is gone: point its descriptor at /dev/null, so that Python's flush at exit does not
        print 'Exception ignored ... BrokenPipeError'."""
        if self._owned:
            return
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._file.fileno())
            os.close(devnull)

    def close(self) -> None:
        if self._owned and not self._file.closed:
            self._file.close()
        elif not self._owned and not self.reader_gone:
            with contextlib.suppress(OSError, ValueError):
                self._file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# the errno of a lock another process holds (lock_file)
LOCK_HELD = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


def lock_file(fd: int) -> None:
    """An exclusive lock on the open file `fd`, now or OSError (errno in LOCK_HELD: another process, or another
    open of the file in this one, holds it; another errno: its file system cannot lock). The system lets it go
    when the file is closed or the process ends, killed or not, so a lock left by a killed run blocks nobody: the
    one way posecal keeps two runs from writing one output at once (a .jsonl stream here, a run's parts:
    posecal/parallel/parts.py)."""
    if os.name == "nt":
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _locked_afresh(out: str):
    """The file `out`, locked for this run (lock_file) and then emptied: opened without truncating, so that a run
    refused because another holds the lock leaves that run's lines as they are. A file system that cannot lock
    files is written unguarded."""
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as e:
        raise PosecalInputError(f"{out}: cannot write ({e.strerror or e})") from None
    try:
        lock_file(fd)
    except OSError as e:
        if e.errno in LOCK_HELD:
            os.close(fd)
            raise PosecalInputError(f"{out}: another posecal run is writing it now; wait for it or give another "
                                    f"--out") from None
    if stat.S_ISREG(os.fstat(fd).st_mode):   # a named pipe is written as it is
        os.ftruncate(fd, 0)
    return os.fdopen(fd, "w", encoding="utf-8")


class ImageIds:
    """The image id of each frame, given as frames come in input order: an annotation file's id for the frame's
    name (lookup), else the next id above all of the file's ids (1, 2, ... without one). The one numbering of
    `posecal predict`'s results, records and Ray merge alike."""

    def __init__(self, image_ids: dict[str, int], lookup: Callable[[dict, str], int | None]):
        self.image_ids, self.lookup = image_ids, lookup
        self.next_id = max(image_ids.values(), default=0) + 1

    def __call__(self, name: str) -> int:
        image_id = self.lookup(self.image_ids, name)
        if image_id is None:
            image_id, self.next_id = self.next_id, self.next_id + 1
        return image_id


class ImageRecords:
    """`posecal predict`'s records: each frame's entries with the image id its .json output would give them
    (ImageIds, as frames come in input order). The record's `frame` counts from 0 as `posecal track`'s does: a
    video frame's index in its video (so predict's and track's records of one video join on it), an image's
    place among the records written (0, 1, ...). `frame`: anything with .name, .frame_index and .capture_time."""

    def __init__(self, out, image_ids: dict[str, int], lookup: Callable[[dict, str], int | None]):
        self.stream, self.image_id = RecordStream(out), ImageIds(image_ids, lookup)
        self.written = 0

    def __call__(self, frame, entries: list[dict]) -> None:
        image_id = self.image_id(frame.name)
        index = getattr(frame, "frame_index", None)
        self.stream.write(frame_record(self.written if index is None else index, frame.name, frame.capture_time,
                                       [e | {"image_id": image_id} for e in entries]))
        self.written += 1

    def close(self) -> None:
        self.stream.close()
