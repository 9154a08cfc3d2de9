"""A batch of pictures -> their poses, as records: the one way `posecal predict` poses, in this process and in each
Ray actor alike: the callable class Ray Data's `map_batches` runs (the model opens once per actor), the class the
runner's OneProcess engine runs, and the frame source of a streaming run. It imports no Ray.

    import ray, posecal.predict.batches as pb
    ds = ray.data.read_images("s3://bucket/photos/", include_paths=True)      # columns image (RGB), path
    poses = ds.map_batches(pb.PoseBatches, fn_constructor_kwargs={"model": "accurate"}, batch_size=8,
                           concurrency=4, num_cpus=1)
    poses.write_json("s3://bucket/poses/")                                     # column poses: JSON text per picture

The people are the API's with the same settings (its pipeline and frame loop), so Ray, one process and the API give
the same persons and keypoints.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from posecal.data.sources import Frame, Problem, iter_frames
from posecal.data.box_files import BoxFile
from posecal.errors import PosecalInputError
from posecal.inference.picture import Picture
from posecal.io import write_bytes_atomic
from posecal.parallel.runner import check_settings
from posecal.predict.job import (SETTINGS, PredictConfig, annotation_image_ids, boxes_for, open_predictor,
                                 score_mode_of)
from posecal.records import result_entries

POSES = "poses"   # the output column: per row, the JSON text of its frames' records


class PoseBatches:
    """model: as everywhere (a shipped name, a .pt, an .onnx file); settings: `posecal predict`'s (PredictConfig's
    fields: detector, detector_threshold, boxes (with annotations: the COCO file whose image ids a detections
    file uses), min_pose_quality, nms, nms_threshold, score_mode, every, batch_size, device, backend, flip,
    orientations, show_all and radius (overlays), threads). Paths are read where the actor runs: give them
    absolute, on storage every node sees. rgb: how the `image` column's arrays are ordered (True, as
    ray.data.read_images gives them; False: BGR, as OpenCV reads).

    A batch's columns: `path` (image or video files, read as posecal reads them: EXIF orientation applied, every
    `every`-th frame of a video) or `image` ((H, W, 3) arrays, with `path` or `name` naming them when there), and
    optionally `render`: per row, where its overlays go ("" none; an image's .png file, a video's folder of
    frame_NNNNNN.png). Returned: the batch's columns but `image`, plus `poses`: per row, JSON text of a list of
    frame records {"name", "frame_index", "capture_time" (when it was read), "entries": COCO keypoint results entries with posecal's fields
    (image_id 0: the caller numbers pictures), "messages": lines about that frame}, or {"name", "problem": one
    line} for a file that could not be read. One bad picture is its own record; the others go on."""

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
        for row, record, _ in self.records(batch):
            records[row].append(record)
        out = {k: v for k, v in batch.items() if k != "image"}
        out[POSES] = np.array([json.dumps(r, separators=(",", ":")) for r in records], dtype=object)
        return out

    def records(self, batch: dict, max_frames: int | None = None) -> Iterator[tuple[int, dict, Picture]]:
        """(row, record, Picture) of every frame and unreadable file of the batch's rows, in reading order, each as
        it is done (its overlay drawn where its row asks for one): what a run streaming records writes at once, and
        what __call__ gathers per row. After `max_frames` frames (None: no limit) nothing more is read."""
        renders = batch.get("render")
        tagged = self._tagged(batch, max_frames)
        for (row, record), picture in self.predictor.pictures(
                tagged, self._boxes_of, self.mode, log_frame=lambda tag, line: tag[1]["messages"].append(line),
                problems_as_pictures=True):
            if picture.error is None:
                record["entries"] = result_entries(picture, picture.people, 0, self.mode)
                if renders is not None and str(renders[row]):
                    self._render(picture, overlay_path(picture, str(renders[row])))
            yield row, record, picture

    def _tagged(self, batch: dict, max_frames: int | None = None):
        """((row, its record), frame) for the frame loop: a frame's record (entries filled when its people are
        found), or a problem's, which is all there is of it; no more than `max_frames` frames read."""
        rows, frames = (len(next(iter(batch.values()))) if batch else 0), 0
        for row in range(rows):
            for item in self._frames(batch, row):
                if max_frames is not None and frames >= max_frames:
                    return
                if isinstance(item, Problem):
                    yield (row, {"name": self._name(batch, row), "problem": item.message}), item
                    continue
                frames += 1
                yield (row, {"name": item.name, "frame_index": item.frame_index, "capture_time": item.capture_time,
                             "entries": [], "messages": []}), item

    def _boxes_of(self, frame: Frame):
        """A frame's boxes as `posecal predict` finds them: the boxes file's, else the pipeline's."""
        return boxes_for(frame, self.box_file, self.predictor.pipeline)

    def _render(self, picture: Picture, path: Path) -> None:
        from posecal.overlay import render_people

        image = render_people(picture.image, picture.people, show_all=self.cfg.show_all, radius=self.cfg.radius)
        ok, data = cv2.imencode(".png", image)
        if ok:
            write_bytes_atomic(path, data.tobytes())

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


def overlay_path(picture: Picture, render: str) -> Path:
    """A frame's overlay file, from its row's `render`: the image's own file, or the video's folder with the
    frame's file in it."""
    if picture.frame_index is None:
        return Path(render)
    return Path(render) / f"frame_{picture.frame_index:06d}.png"
