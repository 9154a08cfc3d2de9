"""The one frame loop from frames to Pictures: each frame's boxes found as it is read, the people of several frames
estimated in one batch of crops, the Pictures handed on in input order.

`Predictor.predict` (the API), `posecal predict` (posecal/predict/job.py) and the Ray actors of `posecal predict
--engine ray` (posecal/predict/batches.py) all iterate it, so how frames are batched, which frames are estimated at
all, and the lines said about a frame (the detector found nobody; boxes none kept as a person) are one
implementation: a frame gives the same people wherever it is read.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from posecal.data.sources import Problem
from posecal.inference.picture import Picture
from posecal.inference.pipeline import DETECTED, PosePipeline

# (frame) -> (boxes (N, 4), scores (N,), where they came from, lines to say about the frame)
BoxesOf = Callable[[Any], tuple[np.ndarray, np.ndarray, str, list[str]]]


def quiet(tag, line: str) -> None:
    """The default `log_frame`: the API returns its findings as Pictures and prints nothing per frame."""


def pipeline_boxes(pipeline: PosePipeline) -> BoxesOf:
    """A frame's boxes from the pipeline itself: the detector's (a line when it found nobody, so that an empty
    result is not taken for a pose failure), or the whole frame without a detector."""

    def boxes_of(frame):
        boxes, scores, origin = pipeline.boxes(frame.bgr)
        said = [f"{frame.name}: the detector found nobody"] if origin == DETECTED and len(boxes) == 0 else []
        return boxes, scores, origin, said

    return boxes_of


def none_kept(boxes: int, min_pose_quality: float, unseen_quality: float | None = None) -> str:
    """What to say of a picture where the detector found boxes and the person rule kept none (a weak model's poses
    are often all below it): not "the detector found nobody", which would send the user to the detector."""
    return (f"{boxes} box(es) from the detector, none kept as a person (each pose had a pose quality under "
            f"{min_pose_quality:g}, no keypoint called visible"
            + ("" if unseen_quality is None else f" at a pose quality under {unseen_quality:g}")
            + ", or was an unsure box the pose did not confirm)")


@dataclass
class _Boxed:
    """A frame read, with its boxes, waiting for its batch."""
    tag: Any
    frame: Any
    boxes: np.ndarray
    scores: np.ndarray
    origin: str
    detect_ms: float = 0.0


def frame_pictures(pipeline: PosePipeline, items: Iterable[tuple[Any, Any]], batch_size: int,
                   boxes_of: BoxesOf | None = None, mode: str | None = None,
                   log_frame: Callable[[Any, str], None] = quiet,
                   on_problem: Callable[[Any, Problem], None] | None = None,
                   problems_as_pictures: bool = False) -> Iterator[tuple[Any, Picture]]:
    """(tag, Frame or Problem) items -> (tag, Picture) per frame, in input order; a tag is the caller's (a key, a
    record) and comes back with its frame's Picture.

    A frame's boxes are found when it is read (`boxes_of`, default pipeline_boxes) and its lines said then
    (`log_frame(tag, line)`); frames wait until `batch_size` crops, or `batch_size` frames (so that a long stretch of
    empty frames is not held in memory), are pending, and their people are then estimated in one batch (what makes
    folders of one-person photos fast). A frame without boxes is not estimated: it has nobody. A Problem (a file
    that could not be read) goes to `on_problem(tag, problem)` when it is read and is not yielded, unless
    `problems_as_pictures`: then it is yielded in its place, as a Picture with its `error` (the frames read before
    it are estimated first, so that the order holds)."""
    boxes_of = boxes_of or pipeline_boxes(pipeline)
    pending: list[_Boxed] = []
    for tag, item in items:
        if isinstance(item, Problem):
            if on_problem is not None:
                on_problem(tag, item)
            if problems_as_pictures:
                yield from _batch_pictures(pipeline, pending, mode, log_frame)
                pending = []
                yield tag, problem_picture(item)
            continue
        t0 = time.perf_counter()
        boxes, scores, origin, said = boxes_of(item)
        detect_ms = (time.perf_counter() - t0) * 1e3
        for line in said:
            log_frame(tag, line)
        pending.append(_Boxed(tag, item, boxes, scores, origin, detect_ms))
        if sum(len(p.boxes) for p in pending) >= batch_size or len(pending) >= batch_size:
            yield from _batch_pictures(pipeline, pending, mode, log_frame)
            pending = []
    yield from _batch_pictures(pipeline, pending, mode, log_frame)


def _batch_pictures(pipeline: PosePipeline, pending: list[_Boxed], mode: str | None,
                    log_frame: Callable[[Any, str], None]) -> list[tuple[Any, Picture]]:
    """The pending frames' people, estimated in one batch of crops (frames without boxes left out), as (tag,
    Picture); a frame whose detector boxes the person rule all dropped is said in one line (none_kept)."""
    boxed = [p for p in pending if len(p.boxes)]
    t0 = time.perf_counter()
    people = pipeline.people([(p.frame.bgr, p.boxes, p.scores, p.origin) for p in boxed], mode) if boxed else []
    pose_ms = (time.perf_counter() - t0) * 1e3
    crops = sum(len(p.boxes) for p in boxed)
    found = {id(p): persons for p, persons in zip(boxed, people)}
    for p in boxed:
        if p.origin == DETECTED and not found[id(p)]:   # boxes, but none the person rule took for somebody
            said = none_kept(len(p.boxes), pipeline.policy.min_pose_quality, pipeline.policy.unseen_quality)
            log_frame(p.tag, f"{p.frame.name}: {said}")
    return [(p.tag, _picture(p.frame, found.get(id(p), []),
                             {"detect": p.detect_ms, "pose": pose_ms * len(p.boxes) / max(crops, 1)}))
            for p in pending]


def problem_picture(problem: Problem) -> Picture:
    """An input that could not be read, as its Picture: no people, an empty image, the problem's line as `error`."""
    where = problem.message.split(": ", 1)[0]       # a problem's line starts with the file it names
    return Picture(os.path.basename(where), where, [], np.zeros((0, 0, 3), np.uint8), error=problem.message)


def _picture(frame, people: list, speed: dict | None = None) -> Picture:
    """A frame read (data.sources.Frame, or an API array as one) with its people and the milliseconds its stages
    took, as the API's result type."""
    return Picture(frame.name, "" if frame.path is None else str(frame.path), people, frame.bgr, frame.frame_index,
                   speed=speed or {})
