"""Persons given as records (a labelled picture and a box each), posed the way `posecal predict` poses boxes given:
the posing of `posecal eval` and `posecal audit`, in this process or through the runner (posecal/parallel/runner.py)
on any engine: Ray Data actors on this machine or a cluster, or this process keeping parts (`pose_records`). The
metrics and the audit's findings are computed once, in the driver, from the Predictions it gives, however they
were posed.

One settings form, `RecordPosing` (model, backend, flip, decode, orientations, batch size, threads, device,
precision), built once by the command; it is also the runner's job settings and the run's fingerprint. One posing
object per process: `record_predictor` opens the Predictor (inference/predictor.py: the model, its stored
calibration, the estimator, and the PosePipeline predict runs) for those settings once, and the driver, this
process's worker and each Ray actor pose through it. Each picture is read as it is stored (the pixel grid its
labels refer to, no EXIF turn) and its records' boxes go through PosePipeline.people as boxes given (origin GIVEN:
every one posed and reported, as predict reports a boxes file's), `PICTURES_PER_CALL` pictures' crops batched
together whichever engine runs them, so every engine gives the same numbers. Through the runner a unit is one
picture with its records (consecutive records of one image file), keyed by its boxes; its part holds its persons'
PersonPose fields, float arrays as base64 of their bytes (`to_json`): read back exactly, in about half the
characters of their decimal text. A picture that cannot be read is one warning line, and its persons are dropped.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from posecal.data.coco import PersonRecord
from posecal.data.images import read_image
from posecal.errors import PosecalInputError
from posecal.inference.estimator import PersonPose, predictions_of, runs_of_one_picture
from posecal.inference.pipeline import GIVEN
from posecal.inference.predictor import Predictor
from posecal.inference.run_identity import run_identity
from posecal.inference.topdown import Predictions
from posecal.io import log_line, progress_shown
from posecal.parallel.runner import (Engine, OneProcess, RowJob, absolute_paths, check_settings, fingerprint,
                                     run)

POSES = "poses"            # the output column: per row, JSON text of its picture's persons
PICTURES_PER_CALL = 4      # pictures whose crops are posed in one batch (by any engine: the same batches)


@dataclasses.dataclass(frozen=True)
class RecordPosing:
    """How records are posed: the settings of eval's and audit's posing, and of their map_batches class
    (RecordBatches). model: a shipped name or a file (made absolute here: a worker does not run in the driver's
    folder); backend: open_model's; calibrated: apply the model's stored calibration; decode: None for the model's
    own; threads: per process or actor (None: the cores Ray sees shared among the workers); precision: a shipped
    model's graphs, as the driver decided them (decide_precision)."""
    model: str | None = None
    backend: str = "onnx"
    flip: bool = True
    threads: int | None = None
    calibrated: bool = True
    decode: str | None = None
    orientations: int | str = 1
    batch_size: int = 32
    device: str = "cpu"
    precision: str = "auto"

    def __post_init__(self):
        model = absolute_paths({"model": self.model}, ("model",))["model"]
        object.__setattr__(self, "model", None if model is None else str(model))


SETTINGS = tuple(f.name for f in dataclasses.fields(RecordPosing))


@functools.lru_cache(maxsize=1)
def record_predictor(posing: RecordPosing) -> Predictor:
    """The one posing object of this process for `posing`: a Predictor without a detector (every box is given),
    opened at its first call and the same object after, so that the driver, which reads the model's config and
    calibration, and the worker of the same process (OneProcess) open the model once (a run holds it:
    opened_posing)."""
    predictor = Predictor(posing.model, posing.device, posing.flip, posing.batch_size, posing.backend,
                          posing.threads, posing.calibrated, detector=None, orientations=posing.orientations,
                          precision=posing.precision)
    predictor.estimator.decode_method = posing.decode   # eval's --decode (None: the model's own)
    return predictor


@contextlib.contextmanager
def opened_posing(posing: RecordPosing):
    """This process's posing object for `posing` (record_predictor) for the length of a run: opened once, and let
    go (its model's memory with it) when the run ends, however it ends."""
    try:
        yield record_predictor(posing)
    finally:
        record_predictor.cache_clear()


def posing_threads(engine: Engine | None, threads: int, asked: int | None) -> int | None:
    """The threads of a run's posing: where this process poses (no engine, or OneProcess: its worker), the
    process's `threads`, so that the worker's settings are the driver's and find its posing object; on Ray the
    threads `asked` for per actor (None: the cores Ray sees shared among the workers)."""
    return threads if engine is None or isinstance(engine, OneProcess) else asked


def pose_pictures(predictor: Predictor, pictures: list[tuple[str, np.ndarray, np.ndarray]]
                  ) -> list[tuple[list[PersonPose], list[str]]]:
    """(path, (N, 4) boxes, (N,) box scores) per picture -> (its people, one per box in order, and lines about it)
    per picture: each picture read as stored (its labels' pixel grid), the readable ones' boxes posed together
    through the predictor's pipeline as boxes given. One that cannot be read has no people and says why."""
    done: list[tuple[list[PersonPose], list[str]]] = [([], []) for _ in pictures]
    items, rows = [], []
    for row, (path, boxes, scores) in enumerate(pictures):
        try:
            items.append((read_image(path), boxes, scores, GIVEN))
            rows.append(row)
        except PosecalInputError as e:
            done[row] = ([], [f"skipping: {e}"])
    for row, people in zip(rows, predictor.pipeline.people(items) if items else []):
        done[row] = (people, [])
    return done


def picture_boxes(records: list[PersonRecord]) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (N, 4) and box scores (N,) of one picture's records."""
    return (np.array([r.bbox for r in records], np.float64).reshape(-1, 4),
            np.array([r.score for r in records], np.float64))


def pose_records(records: list[PersonRecord], posing: RecordPosing, engine: Engine | None, out,
                 progress: bool = True) -> Predictions:
    """Persons given as records, posed with `posing`: in this process (engine None), or through the runner on
    `engine` (parts beside `out`, the job's output file: a run started again resumes). The same Predictions
    either way (records kept, their people, and the pose quality as `oks`)."""
    predictor = record_predictor(posing)
    if engine is not None:
        return pose_record_units(records, posing, predictor.calibration, engine, out, progress)
    groups = list(runs_of_one_picture(records))
    posed = []
    for start in tqdm(range(0, len(groups), PICTURES_PER_CALL), desc="estimating poses", unit="batch",
                      disable=not progress_shown(progress), leave=False):
        chunk = groups[start:start + PICTURES_PER_CALL]
        posed += pose_pictures(predictor, [(path, *picture_boxes(group)) for path, group in chunk])
    for _, messages in posed:
        for message in messages:
            warnings.warn(message, stacklevel=2)
    return records_posed(groups, [people for people, _ in posed], predictor.calibration)


def records_posed(groups: list[tuple[str, list[PersonRecord]]], people: list[list[PersonPose]],
                  calibration) -> Predictions:
    """Each picture's records and their people (none: a picture that could not be read) as Predictions: the
    records kept, and beside the people's arrays their pose quality as `oks`, what eval's pose-score modes and the
    audit's findings read (the OKS head's output, calibrated where the posing applies the model's calibration,
    clipped to [0, 1] as every reader of it clips it)."""
    kept, found = [], []
    for (path, group), persons in zip(groups, people):
        if not persons:
            continue
        if len(persons) != len(group):   # boxes given are each reported: anything else misaligns the labels
            raise RuntimeError(f"{path}: {len(persons)} people posed for {len(group)} boxes given")
        kept += group
        found += persons
    heads = bool(found) and found[0].visibility_probs is not None
    extra = {"oks": np.array([p.pose_quality for p in found], np.float64)} if heads else None
    return predictions_of(kept, found, calibration, extra)


class RecordBatches:
    """The map_batches class: settings are RecordPosing's. A batch's columns: `path` (the picture, on storage the
    actor sees) and `records` (JSON text: the boxes of its persons, [{"bbox": [x, y, w, h], "score": s}, ...]).
    Returned: the batch's columns plus `poses`: per row, JSON text of {"people": its persons' PersonPose fields,
    one per box in order (to_json; none when the picture cannot be read), "messages": lines about the picture}."""

    def __init__(self, **settings):
        check_settings("RecordBatches", settings, SETTINGS)
        self.predictor = record_predictor(RecordPosing(**settings))

    def __call__(self, batch: dict) -> dict:
        pictures = []
        for path, text in zip(batch["path"], batch["records"]):
            given = json.loads(str(text))
            pictures.append((str(path), np.array([r["bbox"] for r in given], np.float64).reshape(-1, 4),
                             np.array([r["score"] for r in given], np.float64)))
        rows = [{"people": [person_json(p) for p in people], "messages": messages}
                for people, messages in pose_pictures(self.predictor, pictures)]
        out = dict(batch)
        out[POSES] = np.array([json.dumps(r, separators=(",", ":")) for r in rows], dtype=object)
        return out


def person_json(person: PersonPose) -> dict:
    """A PersonPose as plain JSON (to_json): the fields that are not their defaults (the staged look aside, which
    a posed person no longer holds); PersonPose(**from_json(...)) gives the person back exactly."""
    out = {}
    for f in dataclasses.fields(person):
        value = getattr(person, f.name)
        if f.name == "look" or (not isinstance(value, (np.ndarray, np.generic)) and value == f.default):
            continue
        out[f.name] = to_json(value)
    return out


def to_json(value):
    """A numpy array or scalar as plain JSON that from_json gives back exactly, dtype and shape and all: floats as
    their bytes in base64 (a float64 in 12 characters, not its 18-22 decimal digits), integers and bools as
    numbers; dicts by value; the rest (Python numbers, whose JSON text reads back exactly, strings) as is."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        if a.dtype.kind in "biu":
            return {"dtype": a.dtype.str, "shape": list(a.shape), "values": a.reshape(-1).tolist()}
        return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(value):
    if isinstance(value, dict) and set(value) in ({"dtype", "shape", "b64"}, {"dtype", "shape", "values"}):
        dtype = np.dtype(value["dtype"])
        a = np.frombuffer(base64.b64decode(value["b64"]), dtype).copy() if "b64" in value else \
            np.array(value["values"], dtype)
        a = a.reshape(value["shape"])
        return a[()] if a.ndim == 0 else a
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


def record_fingerprint(posing: RecordPosing) -> dict:
    """What every picture's poses depend on: the posing settings and the model's digest (runner.fingerprint)."""
    return fingerprint(dataclasses.asdict(posing), run_identity(posing.model, verifier=None))


def pose_record_units(records: list[PersonRecord], posing: RecordPosing, calibration, engine: Engine, out,
                      progress: bool = True, poser=RecordBatches, log=None) -> Predictions:
    """The records posed through the runner on `engine`: the same Predictions as this process gives with the same
    settings. out: the job's output file, beside which the parts are kept (a run started again with the same
    settings poses only the pictures whose file or boxes it has no part for); calibration: the model's, as the
    driver opened it (the workers apply their own; here it only marks the Predictions calibrated)."""
    log = log or log_line
    engine.ready()
    groups = list(runs_of_one_picture(records))
    boxes = [json.dumps([{"bbox": [float(v) for v in r.bbox], "score": float(r.score)} for r in group])
             for _, group in groups]
    pictures = [(path, Path(path).name) for path, _ in groups]

    def on_part(picture: dict) -> None:
        for message in picture["messages"]:
            warnings.warn(message, stacklevel=2)

    job = RowJob(poser, dataclasses.asdict(posing), POSES, PICTURES_PER_CALL, gpu=posing.device == "cuda")
    people = []
    with run(out, pictures, job, engine, record_fingerprint(posing), log, on_part, lambda i: {"records": boxes[i]},
             progress, "estimating poses", "picture") as store:
        for picture in store.parts():
            people.append([PersonPose(**from_json(p)) for p in picture["people"]])
        store.remove()
    return records_posed(groups, people, calibration)
