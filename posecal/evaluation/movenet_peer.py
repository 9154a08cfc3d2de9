"""MoveNet SinglePose (a .tflite file) on person boxes -> COCO keypoint results, to compare it with posecal and to
calibrate its scores (`posecal calibrate fit`). Runs with `ai-edge-litert`, the `movenet` extra.

MoveNet wants a person-centred square crop: the box is made square (longer side, padded by 1.25 like
posecal's crops), warped to the model's input size, and its normalised (y, x) outputs mapped back to image
pixels with the inverse warp. Its pose score is the mean keypoint score, as MoveNet's own examples use.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from tqdm import tqdm

from posecal.data.coco import load_coco_persons, read_image
from posecal.data.transforms import apply_affine, box_to_center_scale, crop_matrix, invert_affine, warp
from posecal.errors import PosecalInputError, require
from posecal.io import check_output_file, progress_shown, write_json_atomic


class MoveNet:
    """One .tflite MoveNet model; __call__(bgr image, box) -> (17, 2) keypoints in image pixels, (17,) scores."""

    def __init__(self, model_path, threads: int = 1):
        litert = require("ai_edge_litert.interpreter", extra="movenet")
        try:
            self.interp = litert.Interpreter(model_path=str(model_path), num_threads=threads)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise PosecalInputError(f"{model_path}: not a readable TFLite model ({str(e).splitlines()[0][:120]})") \
                from None
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        if tuple(out["shape"][-2:]) != (17, 3):
            raise PosecalInputError(f"{model_path}: not a MoveNet SinglePose model (output {out['shape'].tolist()})")
        self.input, self.output = inp, out
        self.size = int(inp["shape"][1])

    def __call__(self, bgr: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        center, size = box_to_center_scale(box, 1.0)
        m = crop_matrix(center, size, 0.0, (self.size, self.size))
        rgb = cv2.cvtColor(warp(bgr, m, (self.size, self.size)), cv2.COLOR_BGR2RGB)
        self.interp.set_tensor(self.input["index"], rgb[None].astype(self.input["dtype"]))
        self.interp.invoke()
        yxs = self.interp.get_tensor(self.output["index"]).reshape(17, 3)
        xy_crop = yxs[:, [1, 0]] * (self.size - 1)
        return apply_affine(xy_crop, invert_affine(m)), yxs[:, 2].astype(np.float64)


def run_movenet(model_path, annotations, images, out, threads: int = 1, progress: bool = True) -> dict:
    """MoveNet on every labelled person of a COCO file (its GT boxes) -> COCO results at `out`."""
    check_output_file(out, "--out")
    net = MoveNet(model_path, threads)
    records = load_coco_persons(annotations, images)
    results, failed, t0 = [], 0, time.time()
    for r in tqdm(records, desc="MoveNet", disable=not progress_shown(progress), leave=False):
        try:
            xy, scores = net(read_image(r.image_path), r.bbox)
        except PosecalInputError as e:
            tqdm.write(f"posecal: skipping: {e}")
            failed += 1
            continue
        kp = np.concatenate([xy, scores[:, None]], 1).reshape(-1)
        results.append({"image_id": int(r.image_id), "category_id": 1, "file_name": r.file_name,
                        "keypoints": np.round(kp, 3).tolist(), "score": round(float(scores.mean()), 4),
                        "bbox": np.round(r.bbox, 2).tolist()})
    if not results:
        raise PosecalInputError(f"{images}: none of the {len(records)} persons' images could be read")
    write_json_atomic(results, out, indent=None)
    return {"persons": len(results), "failed": failed, "seconds": round(time.time() - t0, 1)}
