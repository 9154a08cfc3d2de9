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
from posecal.export.session import (CALIBRATION_KEY, CONFIG_KEY, FLIP_KEY, REPORTED_KEY, TRUST_GRAPH_INPUTS,
                                    TRUST_GRAPH_OUTPUTS, OnnxEstimator)
from posecal.io import check_output_file, write_bytes_atomic
from posecal.models.config import ModelConfig, model_config_to_dict
from posecal.models.estimator import TopDownEstimator, output_names, runtime_outputs



class OutputTuple(nn.Module):
    """runtime_outputs as a tuple, for tracing (exporters return tensors, not dicts of them)."""

    def __init__(self, model: TopDownEstimator, flip_test: bool):
        super().__init__()
        self.model, self.flip_test = model, flip_test

    def forward(self, images: torch.Tensor):
        return tuple(runtime_outputs(self.model, images, self.flip_test).values())


def onnx_bytes(model: TopDownEstimator, cfg: ModelConfig, flip_test: bool = True,
               calibration: dict | None = None, keep_batchnorm: bool = False, reported: dict | None = None) -> bytes:
    """Serialised ONNX model (dynamic batch) with the model config (and its calibration and reported-pose map,
    when it has them) in its metadata, so that the ONNX backend applies the same maps as the model file. keep_batchnorm: the
    BatchNormalization nodes stay (onnxruntime fuses them into the convolutions when it opens the graph, as
    fast), so every weight keeps the value the model file holds: fp16 weights stay exactly fp16
    (posecal/export/shipped.py stores them so)."""
    onnx = require("onnx")
    require("onnxscript")  # torch.onnx's exporter

    model = model.float().eval()
    w, h = cfg.input_wh
    names = output_names(model)
    buf = io.BytesIO()
    # The exporter narrates every step on stdout/logging; a user needs only the result.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(OutputTuple(model, flip_test), (torch.zeros(2, 3, h, w),), None,
                                    input_names=["images"], output_names=names, dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
                                    dynamo=True, verbose=False, optimize=not keep_batchnorm)
        if keep_batchnorm:
            _optimize_keeping_batchnorm(program)
    proto = program.model_proto
    meta = [(CONFIG_KEY, json.dumps(model_config_to_dict(cfg))), (FLIP_KEY, json.dumps(flip_test))]
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
