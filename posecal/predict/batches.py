"""A batch of pictures -> their poses, as records: the callable class Ray Data's `Dataset.map_batches` runs in an
actor (the model opens once per actor, in __init__), and what each actor of `posecal predict --engine ray` runs
(posecal/predict/units.py, through posecal/parallel/runner.py). It imports no Ray: it is plain Python over a dict of columns.

    import ray, posecal.predict.batches as pb
    ds = ray.data.read_images("s3://bucket/photos/", include_paths=True)      # columns image (RGB), path
    poses = ds.map_batches(pb.PoseBatches, fn_constructor_kwargs={"model": "accurate"}, batch_size=8,
                           concurrency=4, num_cpus=1)
    poses.write_json("s3://bucket/poses/")                                     # column poses: JSON text per picture

The people are those `posecal predict` finds with the same settings (its one pipeline, opened by
predict/job.open_predictor, and the API's frame loop, inference/frame_loop.py: boxes, people in batches of crops,
result entries), so a run through Ray and one process give the same persons and keypoints.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posecal.data.sources import Frame, Problem, iter_frames
from posecal.data.box_files import BoxFile
from posecal.errors import PosecalInputError
from posecal.parallel.runner import check_settings
from posecal.predict.job import (SETTINGS, PredictConfig, annotation_image_ids, boxes_for, open_predictor,
                                 score_mode_of)
from posecal.records import result_entries

POSES = "poses"   # the output column: per row, the JSON text of its frames' records


class PoseBatches:
    """model: as everywhere (a shipped name, a .pt, an .onnx file); settings: `posecal predict`'s (PredictConfig's
    fields: detector, detector_threshold, boxes (with annotations: the COCO file whose image ids a detections
    file uses), min_pose_quality, nms, nms_threshold, score_mode, every, batch_size, device, backend, flip,
    orientations, threads). Paths are read where the actor runs: give them absolute, on storage every node sees. rgb: how the `image` column's arrays are ordered
    (True, as ray.data.read_images gives them; False: BGR, as OpenCV reads).

    A batch's columns: `path` (image or video files, read as posecal reads them: EXIF orientation applied, every
    `every`-th frame of a video) or `image` ((H, W, 3) arrays, with `path` or `name` naming them when there).
    Returned: the batch's columns but `image`, plus `poses`: per row, JSON text of a list of frame records
    {"name", "frame_index", "entries": COCO keypoint results entries with posecal's fields (image_id 0: the
    caller numbers pictures), "messages": lines about that frame}, or {"name", "problem": one line} for a file that
    could not be read. One bad picture is its own record; the others go on."""

    def __init__(self, model=None, rgb: bool = True, **settings):
        check_settings("PoseBatches", settings, SETTINGS)
        self.cfg = PredictConfig(inputs=[], model=model, progress=False, **settings)
        self.rgb = rgb
        self.box_file = None
        if self.cfg.boxes:   # as run_predict reads it: detections by image id are named through the annotations
            names = {v: k for k, v in annotation_image_ids(self.cfg.annotations).items()} if self.cfg.annotations else None
            self.box_file = BoxFile(self.cfg.boxes, names, self.cfg.annotations)
        self.predictor = open_predictor(self.cfg, self.box_file)
        self.mode = score_mode_of(self.cfg, self.predictor)

    def __call__(self, batch: dict) -> dict:
        rows = len(next(iter(batch.values()))) if batch else 0
        records: list[list[dict]] = [[] for _ in range(rows)]
        frames = self._tagged(batch, records)
        for record, picture in self.predictor.pictures(frames, self._boxes_of, self.mode,
                                                       log_frame=lambda record, line: record["messages"].append(line)):
            record["entries"] = result_entries(picture, picture.people, 0, self.mode)
        out = {k: v for k, v in batch.items() if k != "image"}
        out[POSES] = np.array([json.dumps(r, separators=(",", ":")) for r in records], dtype=object)
        return out

    def _tagged(self, batch: dict, records: list[list[dict]]):
        """(its record, frame) for the frame loop, each row's records made in reading order: a frame's record
        (entries filled when its people are found), or a problem's, which is all there is of it."""
        for row in range(len(records)):
            for item in self._frames(batch, row):
                if isinstance(item, Problem):
                    records[row].append({"name": self._name(batch, row), "problem": item.message})
                    yield None, item
                    continue
                record = {"name": item.name, "frame_index": item.frame_index, "entries": [], "messages": []}
                records[row].append(record)
                yield record, item

    def _boxes_of(self, frame: Frame):
        """A frame's boxes as `posecal predict` finds them: the boxes file's, else the pipeline's."""
        return boxes_for(frame, self.box_file, self.predictor.pipeline)

    def _frames(self, batch: dict, row: int):
        """The frames of one row: its file's (images and videos alike), or its array."""
        if "image" in batch:
            image = np.asarray(batch["image"][row])
            if image.ndim != 3 or image.shape[2] != 3:
                yield Problem(f"{self._name(batch, row)}: expected an (H, W, 3) picture, got shape {image.shape}")
                return
            bgr = np.ascontiguousarray(image[..., ::-1] if self.rgb else image)
            yield Frame(self._name(batch, row), Path(self._name(batch, row)), bgr)
            return
        if "path" not in batch:
            raise PosecalInputError(f"PoseBatches: a batch needs a 'path' or an 'image' column, got {sorted(batch)}")
        path = Path(str(batch["path"][row]))
        yield from iter_frames([(path, self._name(batch, row))], self.cfg.every)

    @staticmethod
    def _name(batch: dict, row: int) -> str:
        if "name" in batch:
            return str(batch["name"][row])
        if "path" in batch:
            return Path(str(batch["path"][row])).name
        return f"picture_{row}"
