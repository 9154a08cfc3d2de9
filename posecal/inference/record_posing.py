"""Persons given as records (a labelled picture and a box each) posed with one config, `RecordPosing` (model,
backend, flip, decode, orientations, batch size, threads, device, precision): the posing of `posecal eval` and `posecal audit`,
in this process or through the runner (posecal/parallel/runner.py) on any engine: Ray Data actors on this machine
or a cluster, or this process keeping parts (`pose_records`). The metrics and the audit's findings are computed
once, in the driver, from the Predictions it gives, however they were posed.

Every way opens the one estimator the same way (`record_estimator`: the model, its stored calibration, the
Estimator of inference/estimator.py), once per process or actor. Through the runner a unit is one picture with its
records (consecutive records of one image file, as the estimator groups them); each worker (RecordBatches) runs
Estimator.estimate_records on the records of its batch of rows; each picture's persons (their PersonPose and the
network's own arrays, each array as a JSON list with its dtype, so that it reads back exactly) are its part,
written by the worker, beside the job's output file: resumable. A picture that cannot be read is the warning one
process gives, and its persons are dropped.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from posecal.calibration.quality import calibration_from_meta
from posecal.data.coco import PersonRecord
from posecal.inference.estimator import Estimator, PersonPose, predictions_of, runs_of_one_picture
from posecal.inference.opener import open_model
from posecal.inference.run_identity import run_identity
from posecal.inference.topdown import Predictions
from posecal.io import log_line
from posecal.parallel.runner import Engine, RowJob, absolute_paths, check_settings, fingerprint, run
from posecal.skeleton import NUM_KEYPOINTS

POSES = "poses"            # the output column: per row, JSON text of its picture's persons
PICTURES_PER_CALL = 4      # pictures per map_batches call (an actor's crops are batched across them)
EXTRA = ("oks",)          # per-person arrays of the network's pass kept beside the people


@dataclasses.dataclass
class RecordPosing:
    """How records are posed (RecordBatches' settings): predict_records' arguments. model: a shipped name or an
    absolute path; backend: open_model's; calibrated: apply the model's stored calibration; threads: per actor
    (None: the cores Ray sees shared among the workers)."""
    model: str | None = None
    backend: str = "onnx"
    flip: bool = True
    threads: int | None = None
    calibrated: bool = True
    decode: str | None = None
    orientations: int | str = 1
    batch_size: int = 32
    device: str = "cpu"
    precision: str = "auto"    # a shipped model's graphs: the driver passes what it decided (decide_precision)


SETTINGS = tuple(f.name for f in dataclasses.fields(RecordPosing))


def record_calibration(posing: RecordPosing, opened):
    """The stored calibration of the model `opened` when `posing` applies it, else None."""
    return calibration_from_meta(opened.meta, str(posing.model or "default model")) if posing.calibrated else None


def record_estimator(posing: RecordPosing, opened=None) -> Estimator:
    """The one estimator of records posed with `posing`: the model `opened` (as the driver opened it) or opened
    here, with its stored calibration where posing applies it. This process and every Ray actor pose with it."""
    opened = opened or open_model(posing.model, posing.backend, posing.flip, posing.threads, posing.device,
                                  precision=posing.precision)
    return Estimator(opened.runner, opened.config.input_wh, record_calibration(posing, opened), opened.flip,
                     posing.batch_size, posing.orientations, opened.device, posing.threads, decode_method=posing.decode)


def pose_records(records: list[PersonRecord], posing: RecordPosing, opened, engine: Engine | None, out,
                 progress: bool = True) -> Predictions:
    """Persons given as records, posed with `posing`: in this process with the model `opened` (engine None), or
    through the runner on `engine`, whose workers each open it themselves (parts beside `out`, the job's output
    file: a run started again resumes). The same Predictions either way (records kept, people, the OKS head's own
    output)."""
    if engine is None:
        return record_estimator(posing, opened).estimate_records(records, progress)
    return pose_record_units(records, posing, record_calibration(posing, opened), engine, out, progress)


class RecordBatches:
    """The map_batches class: settings are RecordPosing's. A batch's columns: `path` (the picture, on storage the
    actor sees) and `records` (JSON text: the boxes of its persons, [{"bbox": [x, y, w, h], "score": s}, ...]).
    Returned: the batch's columns plus `poses`: per row, JSON text of {"kept": positions of the records posed,
    "people": their PersonPose fields, "extra": the network's per-person arrays (oks),
    "messages": lines about the picture (one that cannot be read)}; arrays as JSON lists with their dtype
    (to_json, from_json)."""

    def __init__(self, **settings):
        check_settings("RecordBatches", settings, SETTINGS)
        self.cfg = RecordPosing(**settings)
        self.estimator = record_estimator(self.cfg)

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        groups = [[PersonRecord(path, 0, np.asarray(r["bbox"], np.float64), np.zeros((NUM_KEYPOINTS, 3)), 0.0,
                                score=float(r["score"])) for r in json.loads(str(text))]
                  for path, text in zip(paths, batch["records"])]
        with warnings.catch_warnings(record=True) as caught:   # a picture that cannot be read: said by its row
            warnings.simplefilter("always")
            pred = self.estimator.estimate_records([r for g in groups for r in g], False)
        rows = [{"kept": [], "people": [], "extra": {}, "messages": []} for _ in groups]
        where = {id(r): (row, j) for row, g in enumerate(groups) for j, r in enumerate(g)}
        at: list[list[int]] = [[] for _ in groups]
        for n, (record, person) in enumerate(zip(pred.records, pred.people)):
            row, j = where[id(record)]
            rows[row]["kept"].append(j)
            rows[row]["people"].append({f.name: to_json(getattr(person, f.name)) for f in dataclasses.fields(person)})
            at[row].append(n)
        for row, n in enumerate(at):
            rows[row]["extra"] = {k: to_json(getattr(pred, k)[n]) for k in EXTRA if getattr(pred, k) is not None}
        for w in caught:
            line = str(w.message)
            row = next((i for i, p in enumerate(paths) if p in line), 0)
            rows[row]["messages"].append(line)
        out = dict(batch)
        out[POSES] = np.array([json.dumps(r, separators=(",", ":")) for r in rows], dtype=object)
        return out


def to_json(value):
    """A numpy array or scalar as plain JSON that from_json gives back exactly, dtype and shape and all (a float32's
    value is a float64 exactly, and JSON keeps a float64 exactly); the rest as is."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        return {"dtype": a.dtype.str, "shape": list(a.shape), "values": a.tolist()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(value):
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "values"}:
        a = np.array(value["values"], np.dtype(value["dtype"])).reshape(value["shape"])
        return a[()] if a.ndim == 0 else a
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


def record_fingerprint(posing: RecordPosing) -> dict:
    """What every picture's poses depend on: the posing settings and the model's digest (runner.fingerprint)."""
    return fingerprint(absolute_paths(dataclasses.asdict(posing), ("model",)), run_identity(posing.model,
                                                                                           verifier=None))


def pose_record_units(records: list[PersonRecord], posing: RecordPosing, calibration, engine: Engine, out,
                      progress: bool = True, poser=RecordBatches, log=None) -> Predictions:
    """predict_records through the runner on `engine`: the same Predictions (records kept, people, arrays) as one
    process gives with the same settings. out: the job's output file, beside which the parts are kept (a run
    started again with the same settings poses only the pictures whose file or boxes it has no part for);
    calibration: the model's, as the driver opened it (the workers apply their own; here it only marks the
    Predictions calibrated, as predictions_of does)."""
    log = log or log_line
    engine.ready()
    groups = list(runs_of_one_picture(records))
    boxes = [json.dumps([{"bbox": [float(v) for v in r.bbox], "score": float(r.score)} for r in group])
             for _, group in groups]
    pictures = [(path, Path(path).name) for path, _ in groups]
    settings = absolute_paths(dataclasses.asdict(posing), ("model",))
    print_run = record_fingerprint(posing)   # each picture's boxes: its key

    def on_part(picture: dict) -> None:
        for message in picture["messages"]:
            warnings.warn(message, stacklevel=2)

    job = RowJob(poser, settings, POSES, PICTURES_PER_CALL, gpu=posing.device == "cuda")
    kept, people, extra = [], [], {k: [] for k in EXTRA}
    with run(out, pictures, job, engine, print_run, log, on_part, lambda i: {"records": boxes[i]}, progress,
             "estimating poses", "picture") as store:
        for (_, group), picture in zip(groups, store.parts()):
            kept += [group[j] for j in picture["kept"]]
            people += [PersonPose(**from_json(p)) for p in picture["people"]]
            for k, v in picture["extra"].items():
                extra[k].append(from_json(v))
        store.remove()
    return predictions_of(kept, people, calibration, {k: np.concatenate(v) for k, v in extra.items() if v})
