"""posecal's one opener: a model as every command and the API name it -> something the estimator runs.

A shipped name ("accurate", "fast"), a posecal model file (.pt) or a training run's checkpoint, or an exported
ONNX file (any case of ".onnx"). backend "onnx" runs a .pt in onnxruntime through its cached export
(posecal/export/cache.py), "torch" in PyTorch; an .onnx file runs in onnxruntime whatever the backend says, with
the flip test it was exported with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from posecal.errors import PosecalInputError
from posecal.models.checkpoint import load_model, require_coco_keypoints

BACKENDS = ("torch", "onnx")


@dataclass
class OpenedModel:
    runner: object        # a TopDownEstimator (PyTorch) or an onnxruntime runner: what infer_crops runs
    config: object        # its ModelConfig
    meta: dict            # the model file's meta (calibration, version, ...)
    flip: bool            # the flip test it runs with
    backend: str          # "onnx" or "torch"
    device: str           # where inputs go ("cpu" for onnxruntime, which takes numpy)


def is_onnx_file(model_path) -> bool:
    """An exported model (`posecal export`), which only onnxruntime runs; any case of the suffix."""
    return model_path is not None and str(model_path).lower().endswith(".onnx")


def check_backend(backend: str | None, device: str = "cpu") -> str:
    """The backend asked for (None: torch on a GPU, else onnxruntime), refused by name when unknown."""
    if backend is None:
        backend = "torch" if device == "cuda" else "onnx"
    if backend not in BACKENDS:
        raise PosecalInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device not in ("cpu", "cuda"):
        raise PosecalInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise PosecalInputError("device 'cuda' asked for, but PyTorch sees no CUDA GPU on this machine")
    return backend


def open_model(model=None, backend: str | None = None, flip: bool | None = None, threads: int | None = None,
               device: str = "cpu", check=None) -> OpenedModel:
    """The model named by `model` (None: the default shipped model), ready for the estimator. check(config),
    when given, runs on the model's config before an ONNX export would be made for a model that is then
    refused (an export costs 20-30 s)."""
    backend = check_backend(backend, device)
    if is_onnx_file(model):
        from posecal.export.onnx import open_onnx_model

        runner = open_onnx_model(model, flip, threads, device)
        opened = OpenedModel(runner, runner.config, runner.meta, runner.flip_test, "onnx", "cpu")
    elif backend == "onnx":
        from posecal.export.cache import cached_onnx

        if check is not None:   # said before an export is made for a model then refused
            _, config, _ = load_model(model)
            require_coco_keypoints(config, model)
            check(config)
        flip = True if flip is None else flip
        runner = cached_onnx(model, flip, threads, device)
        opened = OpenedModel(runner, runner.config, runner.meta, flip, "onnx", "cpu")
    else:
        runner, config, meta = load_model(model, device=device)
        opened = OpenedModel(runner, config, meta, True if flip is None else flip, "torch", device)
    require_coco_keypoints(opened.config, model)
    if check is not None:
        check(opened.config)
    return opened
