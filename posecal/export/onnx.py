"""ONNX export of a posecal model (all heads, dynamic batch) and an onnxruntime-backed stand-in for it.

The exported graph takes (N, 3, H, W) normalised crops and returns heatmaps, oks, opks_logits and
vis_logits, the same tensors as `TopDownEstimator`, with the flip test inside the graph unless exported
without it. The model config and the flip setting travel in the ONNX metadata, so an .onnx file is a
self-contained posecal model.
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

from posecal.models.config import ModelConfig, model_config_from_dict, model_config_to_dict
from posecal.errors import PosecalInputError, require
from posecal.io import write_bytes_atomic
from posecal.outputs import check_output_file
from posecal.models.backbones.movenet import MoveNetOutput
from posecal.models.estimator import PoseOutput, TopDownEstimator

OUTPUTS = ("heatmaps", "oks", "opks_logits", "vis_logits")
# A MoveNet model's raw outputs for its centre-guided decode (posecal.codec.movenet), after the others
MOVENET_OUTPUTS = ("movenet_center", "movenet_regress", "movenet_heatmap", "movenet_offset")


def output_names(model: TopDownEstimator) -> list[str]:
    """The exported graph's outputs, by name: heatmaps, the quality heads' when it has them, MoveNet's raw ones
    when it is a MoveNet model."""
    names = list(OUTPUTS if model.has_quality_heads else OUTPUTS[:1])
    return names + (list(MOVENET_OUTPUTS) if model.is_movenet else [])
CONFIG_KEY = "posecal_model_config"
FLIP_KEY = "posecal_flip_test"
CALIBRATION_KEY = "posecal_calibration"   # the model file's meta["calibration"], as JSON


class OutputTuple(nn.Module):
    """Tuple outputs for tracing (PoseOutput is a dataclass, which exporters do not return)."""

    def __init__(self, model: TopDownEstimator, flip_test: bool):
        super().__init__()
        self.model, self.flip_test = model, flip_test

    def forward(self, images: torch.Tensor):
        out = self.model(images, flip_test=self.flip_test)
        heads = () if out.oks is None else (out.oks, out.opks_logits, out.vis_logits)
        m = out.movenet
        return (out.heatmaps, *heads) + (() if m is None else (m.center, m.regress, m.heatmap, m.offset))


def onnx_bytes(model: TopDownEstimator, cfg: ModelConfig, flip_test: bool = True,
               calibration: dict | None = None) -> bytes:
    """Serialised ONNX model (dynamic batch) with the model config (and its calibration, when it has one)
    in its metadata, so that the ONNX backend applies the same maps as the model file."""
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
                                    dynamo=True, verbose=False)
    proto = program.model_proto
    meta = [(CONFIG_KEY, json.dumps(model_config_to_dict(cfg))), (FLIP_KEY, json.dumps(flip_test))]
    if calibration is not None:
        meta.append((CALIBRATION_KEY, json.dumps(calibration)))
    for key, value in meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, buf)
    return buf.getvalue()


def export_onnx(model: TopDownEstimator, cfg: ModelConfig, path, check_inputs: torch.Tensor | None = None,
                flip_test: bool = True, calibration: dict | None = None,
                int8_crops: np.ndarray | None = None, exported: bytes | None = None) -> dict:
    """Write the .onnx file atomically; with check_inputs, return the max abs difference per output
    between onnxruntime and PyTorch on them. int8_crops: quantise to int8, with activation ranges from these
    real crops (posecal/export/quantize.py). exported: this model's onnx_bytes when already made (the ONNX
    cache's entry), so they are not made again."""
    check_output_file(path, "--out")
    data = exported if exported is not None else onnx_bytes(model, cfg, flip_test, calibration)
    if int8_crops is not None:
        from posecal.export.quantize import quantize_int8

        data = quantize_int8(data, int8_crops)
    write_bytes_atomic(Path(path), data)
    if check_inputs is None:
        return {}
    session = OnnxEstimator(data, source=str(path))
    with torch.no_grad():
        ref = OutputTuple(model.float().eval(), flip_test)(check_inputs)
    got = session.run(check_inputs)
    return {name: float(np.abs(g - r.numpy()).max()) for name, g, r in zip(output_names(model), got, ref)}


def open_onnx_model(path, flip: bool | None, threads: int, device: str = "cpu") -> "OnnxEstimator":
    """An exported posecal .onnx file (fp32 or int8) for `Predictor` and `posecal eval`. Its flip test is built
    into the graph at export, so a flip setting that differs (None: the file's own) is one error line."""
    model = OnnxEstimator(path, threads=threads, device=device)
    if flip is not None and flip != model.flip_test:
        raise PosecalInputError(f"{path}: exported {'with' if model.flip_test else 'without'} the flip test built in; "
                                f"{'leave out --no-flip' if model.flip_test else 'add --no-flip'} "
                                f"(flip={model.flip_test} in the API), or export it again")
    return model


class OnnxEstimator:
    """Runs an exported posecal model with onnxruntime; called like TopDownEstimator (returns PoseOutput)."""

    def __init__(self, model, threads: int = 2, source: str | None = None, device: str = "cpu"):
        ort = require("onnxruntime")
        name = source or (str(model) if isinstance(model, (str, Path)) else "ONNX model")
        if isinstance(model, (str, Path)) and not Path(model).is_file():
            raise PosecalInputError(f"{model}: model file not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        # no busy-waiting between calls: on a few cores the spinning threads starve whatever runs next (crops,
        # decode, the other network), which slows a video down more than the spin saves
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # on torch's current GPU: under torchrun each rank's own (posecal.parallel makes it cuda:LOCAL_RANK)
        gpu = torch.cuda.current_device() if torch.cuda.is_available() else 0
        cuda = ("CUDAExecutionProvider", {"device_id": gpu})
        providers = [cuda, "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                                providers=providers)
            custom = self.session.get_modelmeta().custom_metadata_map
            meta, self.flip_test = json.loads(custom[CONFIG_KEY]), json.loads(custom.get(FLIP_KEY, "false"))
            # The model file's meta as far as inference needs it (read by calibration_from_meta).
            self.meta = {"calibration": json.loads(custom[CALIBRATION_KEY])} if CALIBRATION_KEY in custom else {}
        except KeyError:
            raise PosecalInputError(f"{name}: an ONNX model, but not one exported by posecal") from None
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise PosecalInputError(f"{name}: not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
        try:
            self.config = model_config_from_dict(meta)
        except (TypeError, ValueError) as e:
            raise PosecalInputError(f"{name}: not a posecal ONNX model this version reads ({e})") from None
        self.names = [o.name for o in self.session.get_outputs()]
        self.has_quality_heads = "oks" in self.names

    def eval(self) -> "OnnxEstimator":
        """Inference only already; here so that code written for a torch model (`model.eval()`) takes it too."""
        return self

    def run(self, images: torch.Tensor) -> list[np.ndarray]:
        return self.session.run(None, {"images": images.detach().cpu().float().numpy()})

    def __call__(self, images: torch.Tensor, flip_test: bool = False) -> PoseOutput:
        if flip_test != self.flip_test:
            raise PosecalInputError(f"this ONNX model was exported {'with' if self.flip_test else 'without'} the "
                                    f"flip test built in; export it again {'without' if self.flip_test else 'with'} "
                                    f"it, or match the flip setting")
        outs = {name: torch.from_numpy(o) for name, o in zip(self.names, self.run(images))}
        movenet = None
        if MOVENET_OUTPUTS[0] in outs:   # only what the centre-guided decode reads
            center, regress, heatmap, offset = (outs[name] for name in MOVENET_OUTPUTS)
            movenet = MoveNetOutput(feature=None, center=center, regress=regress, heatmap=heatmap, offset=offset,
                                    center_logits=None, heatmap_logits=None)
        return PoseOutput(heatmaps=outs["heatmaps"], feature=None, oks=outs.get("oks"),
                          opks_logits=outs.get("opks_logits"), vis_logits=outs.get("vis_logits"), movenet=movenet)
