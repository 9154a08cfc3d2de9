"""posecal's own evidence at another estimator's keypoints: what `posecal calibrate fit|apply --images` adds to
the calibrator's inputs.

posecal's evidence is its trust model (posecal/models/trust), the same network that rates the shipped accurate
model's keypoints: for each result it looks at the result's own box (posecal's square person crop at the trust
model's input) and rates the *estimator's* keypoints there, without the estimator's score (which the
calibrator reads separately), giving per keypoint
- the trust model's keypoint quality (its predicted OPKS of the estimator's keypoint),
- its visibility probabilities (not labelled / occluded / visible),
and per person its pose quality. One implementation of "posecal's evidence": what rates posecal's own keypoints
rates anyone's. Outputs are kept in memory per (image, box, keypoints), so asking again costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.data.coco import read_image
from posecal.data.crops import crops_to_batch
from posecal.data.transforms import apply_affine, person_crop_matrix, warp
from posecal.errors import MissingPackage, PosecalInputError
from posecal.io import file_digest
from posecal.models.config import TRUST_INPUT
from posecal.detect.runtime import open_session
from posecal.export.session import SOURCE_KEY, TRUST_GRAPH_OUTPUTS
from posecal.models.shipped import DEFAULT_MODEL_NAME, SHIPPED_MODELS, model_file, trust_graph

EVIDENCE_INPUTS = ("trust keypoint quality", "trust visibility probs")


@dataclass
class Evidence:
    """Per result (N) and keypoint (K)."""

    keypoint_quality: np.ndarray   # (N, K) the trust model's OPKS of the estimator's keypoint
    visibility_probs: np.ndarray   # (N, K, 3) the trust model's [not labelled, occluded, visible]
    pose_quality: np.ndarray       # (N,) the trust model's OKS of the estimator's pose

    def take(self, idx) -> "Evidence":
        return Evidence(self.keypoint_quality[idx], self.visibility_probs[idx], self.pose_quality[idx])


def model_fingerprint(path) -> str:
    """First 16 hex digits of the model file's sha256: which posecal model the evidence came from."""
    return file_digest(path)[:16]


class PosecalEvidence:
    """posecal's trust model (the shipped accurate model's by default) as a source of evidence. The shipped one
    runs as its own graph (posecal_accurate.trust.onnx, which takes another estimator's keypoints) on onnxruntime
    alone; another model file's runs in PyTorch (the `train` extra), and without it one MissingPackage line says
    so."""

    def __init__(self, model_path=None, batch_size: int = 32, progress: bool = False, threads: int = 2):
        self.batch_size, self.progress = batch_size, progress
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}
        graph = trust_graph(DEFAULT_MODEL_NAME)
        if model_path is None and graph.is_file():
            session = open_session(graph, threads)
            self._judge = _graph_judge(session)
            source = session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY, "")   # model_fingerprint of it
            self.description = {"model": SHIPPED_MODELS[DEFAULT_MODEL_NAME].name, "sha256_16": source[:16],
                                "trust": True}
            return
        path = model_file(model_path) if model_path else SHIPPED_MODELS[DEFAULT_MODEL_NAME]
        missing = [what for what, gone in (("PyTorch", not _has_torch()),
                                           (f"{path.name} (a wheel carries ONNX graphs only)", not path.is_file()))
                   if gone]
        if missing:   # another model file's trust model runs in PyTorch only
            raise MissingPackage(" and ".join(missing), "pip install -e '.[train]' in posecal's source tree, or "
                                 "leave out --images", option="--images")
        from posecal.models.checkpoint import load_model

        model, _, _ = load_model(path)
        if model.trust is None:
            raise PosecalInputError(f"{path}: posecal's evidence needs a model with the trust model (model.trust)")
        self._judge = _torch_judge(model.trust.float().eval())
        self.description = {"model": path.name, "sha256_16": model_fingerprint(path), "trust": True}

    def __call__(self, image_paths: list[str], boxes, points) -> Evidence:
        """Evidence for N persons: their image files, (N, 4) x, y, w, h boxes and (N, K, 2) estimator keypoints."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        points = np.asarray(points, np.float64)
        keys = [(str(p), tuple(np.round(b, 3)), np.round(q, 3).tobytes()) for p, b, q in zip(image_paths, boxes, points)]
        todo = [i for i, key in enumerate(keys) if key not in self._cache]
        wh = (TRUST_INPUT, TRUST_INPUT)
        images: dict[str, np.ndarray] = {}
        for first in range(0, len(todo), self.batch_size):
            chunk = todo[first:first + self.batch_size]
            crops, kps = [], []
            for i in chunk:
                path = str(image_paths[i])
                if path not in images:
                    images = {path: read_image(path)}   # results come grouped by image: keep one
                m = person_crop_matrix(boxes[i], wh)
                crops.append(warp(images[path], m, wh))
                kps.append(apply_affine(points[i], m))
            q, v, o = self._judge(crops_to_batch(crops), np.stack(kps).astype(np.float32))
            for j, i in enumerate(chunk):
                self._cache[keys[i]] = (q[j], v[j], float(o[j]))
        q, v, o = zip(*(self._cache[key] for key in keys))
        return Evidence(np.array(q, np.float64), np.array(v, np.float64), np.array(o, np.float64))


def _graph_judge(session):
    """(crops, keypoints) -> (keypoint quality, visibility probs, pose quality) by a trust graph's session."""

    def judge(crops: np.ndarray, keypoints: np.ndarray):
        o, q, v = session.run(list(TRUST_GRAPH_OUTPUTS), {"crops": crops, "keypoints": keypoints})
        return q, v, o
    return judge


def _torch_judge(trust):
    """The same judge by a trust model in PyTorch."""
    import torch

    def judge(crops: np.ndarray, keypoints: np.ndarray):
        with torch.no_grad():
            out = trust(torch.from_numpy(crops), torch.from_numpy(keypoints))
        return (torch.sigmoid(out.opks_logits).numpy(), torch.softmax(out.vis_logits, -1).numpy(), out.oks.numpy())
    return judge


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
