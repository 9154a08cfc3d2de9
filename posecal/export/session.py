"""A posecal ONNX graph run by onnxruntime alone: what inference needs without PyTorch.

A posecal graph takes (N, 3, H, W) normalised crops (posecal.data.crops.crops_to_batch) and returns the
outputs named in posecal.models.estimator.output_names: flip-merged heatmaps, the trust or quality heads' logits
and, for a MoveNet model, its decoded keypoints. Its metadata carries the model config, whether the flip test is
built in and the stored calibration, so an .onnx file is a self-contained posecal model; a shipped model's graphs
also carry its version and the digest of the .pt they were made from.
The shipped models travel as such graphs (posecal/weights/*.onnx); a .pt file is exported to one with PyTorch
(posecal/export/onnx.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posecal.calibration.reported import NETWORK_KEY
from posecal.devices import check_session, providers, session_options
from posecal.errors import PosecalInputError
from posecal.models.config import model_config_from_dict
from posecal.models.outputs import REFINE_GRAPH_INPUTS, REFINE_INPUTS

CONFIG_KEY = "posecal_model_config"
FLIP_KEY = "posecal_flip_test"
CALIBRATION_KEY = "posecal_calibration"   # the model file's meta["calibration"], as JSON
REPORTED_KEY = "posecal_reported_quality"  # the model file's meta["reported_quality"] (calibration/reported.py)
VERSION_KEY = "posecal_model_version"     # a shipped model's version: its name and its .pt's SHA-256, 12 hex digits
NETWORK_GRAPH_KEY = "posecal_network"     # the network's weights digest (models/checkpoint.py network_digest)
SOURCE_KEY = "posecal_source_sha256"      # SHA-256 of the model file (.pt) the graph was made from
STAGE_KEY = "posecal_stage"               # a staged crop's graph: "look" or "refine" (models/estimator.py)
STAGES = ("look", "refine")
INT8_KEY = "posecal_int8"                 # an int8 graph's recipe (tools/quantize_shipped_graphs.py), as JSON
# a trust graph's (posecal/export/shipped.py build_trust_graph): another estimator's keypoints judged in posecal's crops
TRUST_GRAPH_INPUTS = ("crops", "keypoints")
TRUST_GRAPH_OUTPUTS = ("pose_quality", "keypoint_quality", "visibility_probs")
# outputs of graphs from before MoveNet's decode moved into the graph: read by no version since
OLD_MOVENET_OUTPUT = "movenet_center"


def exported_precision(path) -> str:
    """"int8" for a posecal graph quantised to int8 (its INT8_KEY metadata), else "float": what an exported .onnx
    runs with on any CPU, read from its metadata without building the graph (one line for a file that is not
    there or not ONNX)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise PosecalInputError(f"{path}: model file not found")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise PosecalInputError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
    return "int8" if INT8_KEY in session.get_modelmeta().custom_metadata_map else "float"


class OnnxEstimator:
    """Runs a posecal ONNX graph with onnxruntime: `outputs(batch, flip)` gives its outputs by name, as the
    PyTorch runner (posecal/inference/torch_runner.py) does for a model file."""

    def __init__(self, model, threads: int = 2, source: str | None = None, device: str = "cpu"):
        import onnxruntime as ort   # a core dependency
        name = source or (str(model) if isinstance(model, (str, Path)) else "ONNX model")
        if isinstance(model, (str, Path)) and not Path(model).is_file():
            raise PosecalInputError(f"{model}: model file not found")
        opts = session_options(threads)
        where = providers(device, _cuda_device() if device == "cuda" else 0)   # CUDA, or the CPU with one line
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                                providers=where)
            custom = self.session.get_modelmeta().custom_metadata_map
            meta, self.flip_test = json.loads(custom[CONFIG_KEY]), json.loads(custom.get(FLIP_KEY, "false"))
            # The model file's meta as far as inference needs it (read by calibration_from_meta).
            self.meta = {name: json.loads(custom[key]) for name, key in (("calibration", CALIBRATION_KEY),
                                                                         ("reported_quality", REPORTED_KEY))
                         if key in custom}
            if VERSION_KEY in custom:
                self.meta["model_version"] = custom[VERSION_KEY]
            if NETWORK_GRAPH_KEY in custom:   # what its reported-pose map is keyed by
                self.meta[NETWORK_KEY] = custom[NETWORK_GRAPH_KEY]
            self.int8 = INT8_KEY in custom
            self.stage = custom.get(STAGE_KEY)
        except KeyError:
            raise PosecalInputError(f"{name}: an ONNX model, but not one exported by posecal") from None
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise PosecalInputError(f"{name}: not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
        try:
            self.config = model_config_from_dict(meta)
        except (TypeError, ValueError) as e:
            raise PosecalInputError(f"{name}: not a posecal ONNX model this version reads ({e})") from None
        self.device = check_session(self.session, where)   # where it runs: "cuda", or "cpu" (said once)
        self.names = [o.name for o in self.session.get_outputs()]
        if OLD_MOVENET_OUTPUT in self.names:
            raise PosecalInputError(f"{name}: exported by an older posecal (MoveNet's decode outside the graph); "
                                    f"export it again with `posecal export`")
        self.has_quality_heads = "oks" in self.names

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs, in its order, on (N, 3, H, W) float32 crops."""
        return self.session.run(None, {"images": np.ascontiguousarray(batch, np.float32)})

    def named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs by name, on its inputs by name (float32)."""
        feeds = {name: np.ascontiguousarray(value, np.float32) for name, value in feeds.items()}
        return dict(zip(self.names, self.session.run(None, feeds)))

    def outputs(self, batch: np.ndarray, flip: bool) -> dict[str, np.ndarray]:
        """The graph's outputs by name on a batch of crops; its flip test is built in, so `flip` must match."""
        if flip != self.flip_test:
            raise PosecalInputError(f"this ONNX model was exported {'with' if self.flip_test else 'without'} the "
                                    f"flip test built in; export it again {'without' if self.flip_test else 'with'} "
                                    f"it, or match the flip setting")
        return dict(zip(self.names, self.run(batch)))


class StagedOnnx:
    """A staged crop's two graphs (a look, and its refinement: posecal.models.estimator.look_outputs,
    refine_outputs) run as one runner: `look(batch)` and `refine(inputs)` for the estimator's staged path, and
    `outputs(batch, flip)` as any runner (the flip test: the look refined; without it: the look), so that every path
    that poses crops reads the same numbers the two stages give."""

    staged = True

    def __init__(self, look: OnnxEstimator, refine: OnnxEstimator):
        if look.stage != "look" or refine.stage != "refine":
            raise PosecalInputError(f"a staged model needs a look and a refine graph, got {look.stage} and "
                                    f"{refine.stage}")
        self.look_graph, self.refine_graph = look, refine
        self.config, self.meta, self.int8, self.device = look.config, look.meta, look.int8, look.device
        self.flip_test, self.has_quality_heads, self.names = True, True, refine.names

    def look(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.look_graph.named({"images": batch})

    def refine(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """REFINE_INPUTS by name (the look's outputs) -> the flip graph's outputs."""
        return self.refine_graph.named({graph: inputs[name] for graph, name in zip(REFINE_GRAPH_INPUTS,
                                                                                  REFINE_INPUTS)})

    def outputs(self, batch: np.ndarray, flip: bool) -> dict[str, np.ndarray]:
        looked = self.look(batch)
        if not flip:
            return {name: looked[name] for name in self.names}
        return self.refine({"images": batch} | {name: looked[name] for name in REFINE_INPUTS[1:]})


def open_onnx_model(path, flip: bool | None, threads: int, device: str = "cpu") -> OnnxEstimator:
    """An exported posecal .onnx file (fp32 or int8) for `Predictor` and `posecal eval`. Its flip test is built
    into the graph at export, so a flip setting that differs (None: the file's own) is one error line."""
    model = OnnxEstimator(path, threads=threads, device=device)
    if flip is not None and flip != model.flip_test:
        raise PosecalInputError(f"{path}: exported {'with' if model.flip_test else 'without'} the flip test built in; "
                                f"{'leave out --no-flip' if model.flip_test else 'add --no-flip'} "
                                f"(flip={model.flip_test} in the API), or export it again")
    return model


def _cuda_device() -> int:
    """torch's current GPU when torch is imported already (the one a caller set with torch.cuda.set_device),
    else 0: the first GPU this process may see (CUDA_VISIBLE_DEVICES, as Ray sets per actor). PyTorch is never
    imported for this: a GPU run of the shipped graphs needs none."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    return torch.cuda.current_device() if torch.cuda.is_available() else 0
