"""posecal's one opener: a model as every command and the API name it -> something the estimator runs.

A shipped name ("accurate", "fast"), a posecal model file (.pt) or a training run's checkpoint, or an exported
ONNX file (any case of ".onnx"). On the onnx backend (the default on a CPU) a shipped model runs its packaged
graph (posecal/models/shipped.py: int8 on a CPU, float for "NAME-float" and on a GPU) in onnxruntime alone: no
PyTorch, no export. A .pt runs through its cached
export (posecal/export/cache.py) or, on the torch backend, in PyTorch: both need PyTorch (the `train` extra). An
.onnx file runs in onnxruntime whatever the backend says, with the flip test it was exported with.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass

from posecal.calibration.reported import NETWORK_KEY
from posecal.devices import BACKENDS, check_device, choose_precision
from posecal.errors import PosecalInputError
from posecal.export.session import OnnxEstimator, StagedOnnx, exported_precision, open_onnx_model
from posecal.models.config import require_coco_keypoints, stages_crops
from posecal.models.shipped import (FLOAT_SUFFIX, SHIPPED_MODELS, graph_model, installed_models, int8_graph,
                                    is_installed, missing_model_message, model_file, packaged_graph, shipped_name,
                                    staged_graphs)


@dataclass
class OpenedModel:
    runner: object        # a TopDownEstimator (PyTorch) or an onnxruntime runner: what infer_crops runs
    config: object        # its ModelConfig
    meta: dict            # the model file's meta (calibration, version, ...)
    flip: bool            # the flip test it runs with
    backend: str          # "onnx" or "torch"
    device: str           # where inputs go ("cpu" for onnxruntime, which takes numpy)
    precision: str = "float"   # the graphs' arithmetic: "int8" (a shipped model's int8 graphs) or "float"


def is_onnx_file(model_path) -> bool:
    """An exported model (`posecal export`), which only onnxruntime runs; any case of the suffix."""
    return model_path is not None and str(model_path).lower().endswith(".onnx")


def has_torch() -> bool:
    """PyTorch is installed (the `train` extra): without it, posecal runs ONNX graphs only."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):   # a finder that refuses it
        return False


def check_backend(backend: str | None, device: str = "cpu") -> str:
    """The backend asked for (None: onnxruntime, on the CPU or on CUDA through its CUDA provider: no PyTorch),
    refused by name when unknown. The torch backend on 'cuda' needs PyTorch and a GPU it sees (one line if not);
    the onnx backend on 'cuda' without a usable GPU runs on the CPU with one warning line (posecal/devices.py)."""
    backend = "onnx" if backend is None else backend
    if backend not in BACKENDS:
        raise PosecalInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_device(device)
    if backend == "torch" and device == "cuda" and not has_torch():
        raise PosecalInputError("backend 'torch' on device 'cuda' needs PyTorch, which is not installed: pip install "
                                "'posecal[train]' (the default onnx backend runs on CUDA without it: posecal[gpu])")
    if backend == "torch" and device == "cuda" and not _cuda_available():
        raise PosecalInputError("backend 'torch' on device 'cuda', but PyTorch sees no CUDA GPU on this machine")
    return backend


def decide_precision(model, requested: str = "auto", backend: str | None = None, device: str = "cpu",
                     flip: bool | None = None) -> tuple[str, str | None]:
    """(the precision every process of a run opens `model` with, "int8" or "float": what runs, not what was asked;
    the line the run says first, None where no shipped graph runs): decided once, by whoever starts the run, from
    that machine's CPU (devices.choose_precision). Why once: `auto` resolved in each Ray worker would let a cluster
    of VNNI and AVX2 nodes write one results file from int8 and float graphs; with the decision passed on, an AVX2
    node runs the int8 graphs widened, which computes the very integers a VNNI CPU does. Why what runs: a model
    file (.pt) runs float and an exported .onnx as it was exported on every CPU, so their results (and a resume's
    fingerprint) must not say int8 because this CPU would have picked a shipped model's int8 graphs. An unknown
    value is one line."""
    precision, why = choose_precision(requested, device)
    backend = check_backend(backend, device)
    if is_onnx_file(model):
        return exported_precision(model), None
    graph = packaged_graph(model, flip is not False, device, precision) if backend == "onnx" else None
    name = shipped_name(model)
    ran = "int8" if name is not None and graph == int8_graph(graph_model(name), flip is not False) else "float"
    return ran, precision_line(model, why, backend, device, ran)


def precision_decided(cfg) -> tuple[object, str | None]:
    """(a run's config with its precision decided (decide_precision) before any worker starts, the line the run
    says first): for a dataclass with model, precision, backend, device and flip (predict's, track's). The caller
    says the line once it holds its output (a run refused there says only why)."""
    precision, line = decide_precision(cfg.model, cfg.precision, cfg.backend, cfg.device, cfg.flip)
    return dataclasses.replace(cfg, precision=precision), line


def precision_line(model, why: str, backend: str, device: str, ran: str) -> str | None:
    """What a run says first: which graphs of a shipped model run here, and why ("accurate runs its float graphs
    (this CPU has no VNNI: ...)"); None for anything else (a model file, PyTorch, a GPU)."""
    name = shipped_name(model)
    if name is None or backend != "onnx" or device != "cpu" or packaged_graph(model, True, device, ran) is None:
        return None
    why = f"the name {name!r} asks for them" if name.endswith(FLOAT_SUFFIX) else why
    return f"{name} runs its {ran} graphs ({why})"


def require_model(model) -> None:
    """One line, before any input is read, for a model argument that names nothing in this installation."""
    name = shipped_name(model)
    if name is not None and not is_installed(name):
        raise PosecalInputError(f"model {name!r}: not in this installation (installed: "
                                f"{', '.join(installed_models())}); it ships in posecal's source tree")
    if name is None and not model_file(model).is_file():
        raise PosecalInputError(missing_model_message(model, model_file(model)))


def open_model(model=None, backend: str | None = None, flip: bool | None = None, threads: int | None = None,
               device: str = "cpu", check=None, precision: str = "auto") -> OpenedModel:
    """The model named by `model` (None: the default shipped model), ready for the estimator. check(config),
    when given, runs on the model's config before an ONNX export would be made for a model that is then
    refused (an export costs 20-30 s). precision: which graphs of a shipped model run (posecal.devices.
    choose_precision; a model file or an exported .onnx runs as it is)."""
    backend = check_backend(backend, device)
    precision = choose_precision(precision, device)[0]   # once (an unknown value refused before anything loads)
    if is_onnx_file(model):
        runner = open_onnx_model(model, flip, threads, device)
        opened = OpenedModel(runner, runner.config, runner.meta, runner.flip_test, "onnx", "cpu",
                             "int8" if runner.int8 else "float")
    elif backend == "onnx" and packaged_graph(model, True, device, precision) is not None:
        flip = True if flip is None else flip
        graph, source = packaged_graph(model, flip, device, precision), f"model {shipped_name(model)!r}"
        stages = staged_graphs(graph) if flip else None   # the flip test as a look and its refinement
        runner = OnnxEstimator(graph, threads=threads or 1, source=source, device=device) if stages is None else \
            StagedOnnx(*(OnnxEstimator(g, threads=threads or 1, source=source, device=device) for g in stages))
        opened = OpenedModel(runner, runner.config, runner.meta, flip, "onnx", "cpu",
                             "int8" if runner.int8 else "float")
    else:
        opened = _open_torch_file(model, backend, flip, threads, device, check)
    require_coco_keypoints(opened.config, model)
    if check is not None:
        check(opened.config)
    return opened


def _open_torch_file(model, backend: str, flip: bool | None, threads: int | None, device: str, check) -> OpenedModel:
    """A .pt model file (or a shipped model without its graph here): in PyTorch, or through its cached export."""
    require_model(model)
    _require_torch_for(model)
    from posecal.models.checkpoint import load_model

    if backend == "onnx":
        from posecal.export.cache import cached_onnx

        _, config, _ = load_model(model)   # its config decides whether it stages (models.config.stages_crops)
        require_coco_keypoints(config, model)   # said before an export is made for a model then refused
        if check is not None:
            check(config)
        flip = True if flip is None else flip
        if flip and stages_crops(config):   # the flip test as a look and its refinement (two cached graphs)
            runner = StagedOnnx(*(cached_onnx(model, True, threads, device, stage=stage) for stage in ("look", "refine")))
        else:
            runner = cached_onnx(model, flip, threads, device)
        return OpenedModel(runner, runner.config, runner.meta, flip, "onnx", "cpu")
    runner, config, meta = load_model(model, device=device)
    from posecal.models.checkpoint import network_digest

    meta = meta | {NETWORK_KEY: network_digest(runner)}   # what its reported-pose map is keyed by, as a graph says
    return OpenedModel(runner, config, meta, True if flip is None else flip, "torch", device)


def _require_torch_for(model) -> None:
    """One line where a model needs PyTorch or a PyTorch file that this installation lacks: a shipped model whose
    .pt is not here (a wheel carries graphs only) is said by name, PyTorch installed or not; a .pt file needs the
    `train` extra."""
    name = shipped_name(model)
    if name is not None and not SHIPPED_MODELS[name].is_file():
        raise PosecalInputError(f"model {name!r}: its PyTorch form is not in this installation (the wheel carries "
                                f"ONNX graphs); use the onnx backend (the default, on the CPU or --device cuda), or "
                                f"install posecal from its source tree with the train extra")
    if has_torch():
        return
    raise PosecalInputError(f"{model_file(model)}: a PyTorch model file, which needs PyTorch: pip install 'posecal[train]' "
                            f"(or run its ONNX export, `posecal export`, made where PyTorch is)")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
