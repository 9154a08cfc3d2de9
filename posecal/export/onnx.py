"""ONNX export of a posecal model file (all heads, dynamic batch), with PyTorch.

The exported graph takes (N, 3, H, W) normalised crops and returns runtime_outputs (posecal.models.estimator),
the same arrays as the PyTorch backend, with the flip test inside the graph unless exported without it. The
model config and the flip setting travel in the ONNX metadata (posecal/export/session.py runs it).
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posecal.errors import require
from posecal.export.session import (CALIBRATION_KEY, CONFIG_KEY, FLIP_KEY, NETWORK_GRAPH_KEY, REPORTED_KEY,
                                    STAGE_KEY, STAGES, TRUST_GRAPH_INPUTS, TRUST_GRAPH_OUTPUTS, OnnxEstimator)
from posecal.io import check_output_file, write_bytes_atomic
from posecal.models.checkpoint import network_digest
from posecal.models.config import ModelConfig, model_config_to_dict
from posecal.models.estimator import (TopDownEstimator, can_stage, look_outputs, output_names, refine_outputs,
                                      runtime_outputs)
from posecal.models.outputs import REFINE_GRAPH_INPUTS, REFINE_INPUTS


class OutputTuple(nn.Module):
    """runtime_outputs (or a staged crop's look_outputs or refine_outputs: `stage`) as a tuple, for tracing
    (exporters return tensors, not dicts of them)."""

    def __init__(self, model: TopDownEstimator, flip_test: bool, stage: str | None = None):
        super().__init__()
        self.model, self.flip_test, self.stage = model, flip_test, stage

    def forward(self, images: torch.Tensor):
        if self.stage == "look":
            return tuple(look_outputs(self.model, images).values())
        return tuple(runtime_outputs(self.model, images, self.flip_test).values())


class RefineTuple(nn.Module):
    """refine_outputs as a tuple, its inputs (REFINE_INPUTS) one argument each, for tracing."""

    def __init__(self, model: TopDownEstimator):
        super().__init__()
        self.model = model

    def forward(self, images, heatmaps, xy, scores, feature, trust_heatmaps, peak, peak_xy, context):
        return tuple(refine_outputs(self.model, images, heatmaps, xy, scores, feature, trust_heatmaps, peak,
                                    peak_xy, context).values())


def stage_example(model: TopDownEstimator, cfg: ModelConfig, stage: str | None) -> tuple[list[str], tuple, list[str]]:
    """(input names, example inputs, output names) of the graph of a stage (None: the whole crop)."""
    w, h = cfg.input_wh
    images = torch.zeros(2, 3, h, w)
    if stage is None:
        return ["images"], (images,), output_names(model)
    with torch.no_grad():
        look = look_outputs(model, images)
    if stage == "look":
        return ["images"], (images,), list(look)
    return list(REFINE_GRAPH_INPUTS), (images, *[look[k] for k in REFINE_INPUTS[1:]]), output_names(model)


def onnx_bytes(model: TopDownEstimator, cfg: ModelConfig, flip_test: bool = True,
               calibration: dict | None = None, keep_batchnorm: bool = False, reported: dict | None = None,
               stage: str | None = None) -> bytes:
    """Serialised ONNX model (dynamic batch) with the model config (and its calibration and reported-pose map,
    when it has them) in its metadata, so that the ONNX backend applies the same maps as the model file. keep_batchnorm: the
    BatchNormalization nodes stay (onnxruntime fuses them into the convolutions when it opens the graph, as
    fast), so every weight keeps the value the model file holds: fp16 weights stay exactly fp16
    (posecal/export/shipped.py stores them so). stage: "look" or "refine", a staged crop's graph
    (posecal.models.estimator.look_outputs, refine_outputs; the two together are the flip graph), None the whole
    crop's."""
    onnx = require("onnx")
    require("onnxscript")  # torch.onnx's exporter

    model = model.float().eval()
    if stage is not None and (stage not in STAGES or not can_stage(model)):
        raise ValueError(f"stage {stage!r}: a MoveNet model with a trust model has stages {STAGES}")
    inputs, example, names = stage_example(model, cfg, stage)
    batch = torch.export.Dim("batch")
    buf = io.BytesIO()
    # The exporter narrates every step on stdout/logging; a user needs only the result.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        traced = RefineTuple(model) if stage == "refine" else OutputTuple(model, flip_test, stage)
        program = torch.onnx.export(traced, example, None,
                                    input_names=inputs, output_names=names,
                                    dynamic_shapes=tuple({0: batch} for _ in inputs),
                                    dynamo=True, verbose=False, optimize=not keep_batchnorm)
        if keep_batchnorm:
            _optimize_keeping_batchnorm(program)
    proto = program.model_proto
    meta = [(CONFIG_KEY, json.dumps(model_config_to_dict(cfg))), (FLIP_KEY, json.dumps(flip_test)),
            (NETWORK_GRAPH_KEY, network_digest(model))]   # what its reported-pose map is keyed by
    if stage is not None:
        meta.append((STAGE_KEY, stage))
    if calibration is not None:
        meta.append((CALIBRATION_KEY, json.dumps(calibration)))
    if reported is not None:
        meta.append((REPORTED_KEY, json.dumps(reported)))
    for key, value in meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, buf)
    return buf.getvalue()


def _optimize_keeping_batchnorm(program) -> None:
    """The exporter's own graph optimisation (constant folding, the default rewrites) without the rewrites
    that fold BatchNormalization into the convolution before it, whose folded weights fp16 cannot hold."""
    from onnxscript import optimizer, rewriter

    rules = rewriter._DEFAULT_REWRITE_RULES
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if "BatchNorm" not in (getattr(r, "name", "") or ""))
    try:
        optimizer.optimize_ir(program.model)
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


class TrustOutputs(nn.Module):
    """A trust model judging keypoints given from outside, as probabilities (tracing returns tensors)."""

    def __init__(self, trust: nn.Module):
        super().__init__()
        self.trust = trust

    def forward(self, crops: torch.Tensor, keypoints: torch.Tensor):
        out = self.trust(crops, keypoints)
        return out.oks, torch.sigmoid(out.opks_logits), torch.softmax(out.vis_logits, -1)


def trust_onnx_proto(trust: nn.Module, crop_side: int):
    """The trust model alone as an ONNX graph (dynamic batch) that rates any estimator's keypoints: (N, 3, S, S)
    posecal-normalised square crops and (N, K, 2) keypoints in their pixels -> TRUST_GRAPH_OUTPUTS. What
    `posecal calibrate --images` runs without PyTorch; BatchNormalization kept so fp16 weights stay exact."""
    require("onnxscript")
    trust = trust.float().eval()
    k = trust.type_codes.shape[0]
    batch = torch.export.Dim("batch")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(TrustOutputs(trust), (torch.zeros(2, 3, crop_side, crop_side), torch.zeros(2, k, 2)),
                                    None, input_names=list(TRUST_GRAPH_INPUTS), output_names=list(TRUST_GRAPH_OUTPUTS),
                                    dynamic_shapes={"crops": {0: batch}, "keypoints": {0: batch}}, dynamo=True,
                                    verbose=False, optimize=False)
        _optimize_keeping_batchnorm(program)
    return program.model_proto


def export_onnx(model: TopDownEstimator, cfg: ModelConfig, path, check_inputs: torch.Tensor | None = None,
                flip_test: bool = True, calibration: dict | None = None,
                int8_crops: np.ndarray | None = None, exported: bytes | None = None,
                reported: dict | None = None) -> dict:
    """Write the .onnx file atomically; with check_inputs, return the max abs difference per output
    between onnxruntime and PyTorch on them. int8_crops: quantise to int8, with activation ranges from these
    real crops (posecal/export/quantize.py). exported: this model's onnx_bytes when already made (the ONNX
    cache's entry), so they are not made again."""
    check_output_file(path, "--out")
    data = exported if exported is not None else onnx_bytes(model, cfg, flip_test, calibration, reported=reported)
    if int8_crops is not None:
        from posecal.export.quantize import quantize_int8

        data = quantize_int8(data, int8_crops)
    write_bytes_atomic(Path(path), data)
    if check_inputs is None:
        return {}
    session = OnnxEstimator(data, source=str(path))
    with torch.no_grad():
        ref = OutputTuple(model.float().eval(), flip_test)(check_inputs)
    got = session.run(check_inputs.numpy())
    return {name: float(np.abs(g - r.numpy()).max()) for name, g, r in zip(output_names(model), got, ref)}
