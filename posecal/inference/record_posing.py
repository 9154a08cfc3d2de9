"""Persons given as records (a labelled picture and a box each) posed with one config, `RecordPosing` (model,
backend, flip, decode, orientations, batch size, threads, device): the posing of `posecal eval` and `posecal audit`,
in this process or spread over Ray Data actors on this machine or a cluster (`pose_records`). The metrics and the
audit's findings are computed once, in the driver, from the Predictions it gives, however they were posed.

Both ways open the one estimator the same way (`record_estimator`: the model, its stored calibration, the
Estimator of inference/estimator.py), once per process or actor. On Ray a row is one picture with its records
(consecutive records of one image file, as the estimator groups them); each actor (RecordBatches) runs
Estimator.estimate_records on the records of its batch of rows; each picture's persons (their PersonPose and the
network's own arrays, the numbers as their exact bytes) are its part, written by the worker. The rows, actors,
parts (beside the job's output file: resumable), retries and resources are posecal/parallel/ray_rows.py's, shared
with `predict` and `track --engine ray`. A picture that cannot be read is the warning one process gives, and its
persons are dropped.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from posecal.calibration.quality import calibration_from_meta
from posecal.data.coco import PersonRecord
from posecal.errors import PosecalInputError
from posecal.inference.estimator import Estimator, PersonPose, _runs_of_one_picture, predictions_of
from posecal.inference.opener import open_model
from posecal.inference.run_identity import run_identity
from posecal.inference.topdown import Predictions
from posecal.io import log_line
from posecal.parallel.parts import resumable
from posecal.parallel.ray_rows import RayConfig, RowJob, import_ray, run_rows
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


SETTINGS = tuple(f.name for f in dataclasses.fields(RecordPosing))


def record_calibration(posing: RecordPosing, opened):
    """The stored calibration of the model `opened` when `posing` applies it, else None."""
    return calibration_from_meta(opened.meta, str(posing.model or "default model")) if posing.calibrated else None


def record_estimator(posing: RecordPosing, opened=None) -> Estimator:
    """The one estimator of records posed with `posing`: the model `opened` (as the driver opened it) or opened
    here, with its stored calibration where posing applies it. This process and every Ray actor pose with it."""
    opened = opened or open_model(posing.model, posing.backend, posing.flip, posing.threads, posing.device)
    return Estimator(opened.runner, opened.config.input_wh, record_calibration(posing, opened), opened.flip,
                     posing.batch_size, posing.orientations, opened.device, posing.threads, decode_method=posing.decode)


def pose_records(records: list[PersonRecord], posing: RecordPosing, opened, engine: RayConfig | None, out,
                 progress: bool = True) -> Predictions:
    """Persons given as records, posed with `posing`: in this process with the model `opened` (engine None), or
    on Ray actors that each open it themselves (parts beside `out`, the job's output file: a run started again
    resumes). The same Predictions either way (records kept, people, the OKS head's own output)."""
    if engine is None:
        return record_estimator(posing, opened).estimate_records(records, progress)
    return predict_records_ray(records, posing, record_calibration(posing, opened), engine, out, progress)


class RecordBatches:
    """The map_batches class: settings are RecordPosing's. A batch's columns: `path` (the picture, on storage the
    actor sees) and `records` (JSON text: the boxes of its persons, [{"bbox": [x, y, w, h], "score": s}, ...]).
    Returned: the batch's columns plus `poses`: per row, JSON text of {"kept": positions of the records posed,
    "people": their PersonPose fields, "extra": the network's per-person arrays (oks),
    "messages": lines about the picture (one that cannot be read)}; arrays as exact bytes (unpack)."""

    def __init__(self, **settings):
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise PosecalInputError(f"RecordBatches: unknown setting(s) {', '.join(unknown)} (settings: "
                                    f"{', '.join(SETTINGS)})")
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
            rows[row]["people"].append({f.name: pack(getattr(person, f.name)) for f in dataclasses.fields(person)})
            at[row].append(n)
        for row, n in enumerate(at):
            rows[row]["extra"] = {k: pack(getattr(pred, k)[n]) for k in EXTRA if getattr(pred, k) is not None}
        for w in caught:
            line = str(w.message)
            row = next((i for i, p in enumerate(paths) if p in line), 0)
            rows[row]["messages"].append(line)
        out = dict(batch)
        out[POSES] = np.array([json.dumps(r, separators=(",", ":")) for r in rows], dtype=object)
        return out


def pack(value):
    """A numpy array or scalar as JSON with its exact bytes (unpack gives it back, dtype and all); the rest as is."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)   # tobytes: C order, 0-d arrays (scalars) kept 0-d
        return {"__array__": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}
    if isinstance(value, dict):
        return {k: pack(v) for k, v in value.items()}
    return value


def unpack(value):
    if isinstance(value, dict) and "__array__" in value:
        a = np.frombuffer(base64.b64decode(value["data"]), np.dtype(value["__array__"])).reshape(value["shape"])
        return a.copy()[()] if a.ndim == 0 else a.copy()
    if isinstance(value, dict):
        return {k: unpack(v) for k, v in value.items()}
    return value


def predict_records_ray(records: list[PersonRecord], posing: RecordPosing, calibration, ray_cfg: RayConfig,
                        out, progress: bool = True, poser=RecordBatches, log=None) -> Predictions:
    """predict_records through Ray actors: the same Predictions (records kept, people, arrays) as one process
    gives with the same settings. out: the job's output file, beside which the parts are kept (a run started
    again with the same records and settings resumes); calibration: the model's, as the driver opened it (the
    actors apply their own; here it only marks the Predictions calibrated, as predictions_of does)."""
    log = log or log_line
    ray_cfg.check()
    ray = import_ray()
    groups = list(_runs_of_one_picture(records))
    boxes = [json.dumps([{"bbox": [float(v) for v in r.bbox], "score": float(r.score)} for r in group])
             for _, group in groups]
    pictures = [(path, Path(path).name) for path, _ in groups]
    settings = dataclasses.asdict(posing)
    if settings["model"] is not None and Path(settings["model"]).is_file():   # an actor is not in this folder
        settings["model"] = str(Path(settings["model"]).resolve())
    fingerprint = {"inputs": [[str(Path(p).resolve()), name] for p, name in pictures],
                   "records": hashlib.sha256("\n".join(boxes).encode()).hexdigest(),
                   "settings": {k: v for k, v in settings.items() if k != "threads"},
                   "identity": run_identity(posing.model, verifier=None)}
    store, rows = resumable(out, pictures, fingerprint, log)
    for row in rows:
        row["records"] = boxes[row["index"]]

    def on_part(picture: dict) -> None:
        for message in picture["messages"]:
            warnings.warn(message, stacklevel=2)

    if rows:
        job = RowJob(poser, settings, POSES, PICTURES_PER_CALL, gpu=posing.device == "cuda")
        run_rows(ray, ray_cfg, job, rows, store, on_part, progress, "estimating poses (ray)", "picture")
    kept, people, extra = [], [], {k: [] for k in EXTRA}
    for (_, group), picture in zip(groups, store.parts(len(groups))):
        kept += [group[j] for j in picture["kept"]]
        people += [PersonPose(**unpack(p)) for p in picture["people"]]
        for k, v in picture["extra"].items():
            extra[k].append(unpack(v))
    store.remove()
    return predictions_of(kept, people, calibration, {k: np.concatenate(v) for k, v in extra.items() if v})

