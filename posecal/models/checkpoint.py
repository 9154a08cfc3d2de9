"""Checkpoints: written atomically (temp file + rename) so a crash never leaves a half file."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from posecal.models.config import ModelConfig, network_input, model_config_from_dict, model_config_to_dict
from posecal.errors import PosecalInputError
from posecal.io import write_atomic, write_json_atomic
from posecal.models.estimator import STRIDE32_BACKBONES, TopDownEstimator, build_estimator
from posecal.models.trust.network import check_trust_input
from posecal.models.shipped import (DEFAULT_MODEL_NAME, SHIPPED_GRAPHS, SHIPPED_MODELS, WEIGHTS_DIR,  # noqa: F401
                                    missing_model_message, model_file)

def atomic_save(obj, path) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def model_from_config(cfg: ModelConfig, imagenet: bool | None = None) -> TopDownEstimator:
    try:
        network_input(cfg)
    except ValueError as e:
        field, problem = e.args
        raise PosecalInputError(f"model.{field}: {problem}") from None
    if cfg.trust:
        try:
            check_trust_input(cfg.trust_input)
        except ValueError as e:
            raise PosecalInputError(f"model.trust_input: {e}") from None
    if cfg.backbone in STRIDE32_BACKBONES and any(v % 32 for v in cfg.input_wh):
        raise PosecalInputError(f"model.input_wh: {cfg.backbone} needs a width and height that are multiples "
                                f"of 32 (e.g. 192x256 or 288x384), got {cfg.input_wh[0]}x{cfg.input_wh[1]}")
    try:
        model = build_estimator(cfg.head_widths, cfg.num_keypoints,
                                imagenet=cfg.imagenet if imagenet is None else imagenet,
                                quality_heads=cfg.quality_heads, visibility_classes=cfg.visibility_classes,
                                head_hidden=cfg.head_hidden, backbone=cfg.backbone, input_channels=cfg.input_channels,
                                input_mean=cfg.input_mean, input_std=cfg.input_std, trust=cfg.trust)
    except FileNotFoundError as e:   # an init's weights that this installation lacks (Lightning, in a wheel)
        raise PosecalInputError(f"model.backbone {cfg.backbone}: {e}") from None
    if model.trust is not None:      # its input side is no weight: the config says it (192 unless recorded)
        model.trust.input_size = int(cfg.trust_input)
    return model


def network_digest(model) -> str:
    """The digest (16 hex digits) of a network's weights as it runs them: every state-dict entry's name, shape and
    float32 bytes, in order. What a map fitted for one network is keyed by (calibration/reported.py): the same
    weights give the same digest from a model file, a training checkpoint or the graphs exported from them
    (export/onnx.py records it), whatever the file's name or its other metadata."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        tensor = value.detach().cpu()
        tensor = tensor.float() if tensor.is_floating_point() else tensor
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_model(model: TopDownEstimator, cfg: ModelConfig, path, meta: dict | None = None, half: bool = False,
               share_shipped: bool = False):
    """The deployable model file: config + weights (fp16 optional, halves the size). With share_shipped, a
    pose network that is a shipped part unchanged (Google's MoveNet, `SHIPPED_PARTS`) is not stored again: the
    file names the part and its digest, and read_model_file puts it back (`posecal pack` does this, so the
    `published` model does not carry a second copy of movenet_thunder_fp16.pt)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    ckpt = {"model_config": plain(model_config_to_dict(cfg)), "state_dict": state, "meta": plain(meta or {})}
    if share_shipped and cfg.backbone in SHIPPED_PARTS:
        part_state, record = shipped_part(SHIPPED_PARTS[cfg.backbone])
        if part_state is not None and all(
                f"{PART_PREFIX}{k}" in state and state[f"{PART_PREFIX}{k}"].dtype == v.dtype
                and torch.equal(state[f"{PART_PREFIX}{k}"], v) for k, v in part_state.items()):
            ckpt["state_dict"] = {k: v for k, v in state.items()
                                  if not (k.startswith(PART_PREFIX) and k[len(PART_PREFIX):] in part_state)}
            ckpt["shared_weights"] = record
    atomic_save(ckpt, path)


# Shipped networks other model files may share instead of storing a copy (save_model's share_shipped): the
# MoveNet weights as converted from Google's release, under the estimator's "backbone." prefix.
SHIPPED_PARTS = {"movenet_thunder": "movenet_thunder_fp16.pt"}
PART_PREFIX = "backbone."


def shipped_part(name: str) -> tuple[dict | None, dict]:
    """(state_dict, record) of a shipped part file in posecal/weights; the record (file name and the sha256 of
    its bytes) is what a sharing model file stores. (None, record) when the part is not installed."""
    path = WEIGHTS_DIR / name
    if not path.is_file():
        return None, {"file": name}
    data = path.read_bytes()
    blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return blob["state_dict"], {"file": name, "prefix": PART_PREFIX, "sha256": hashlib.sha256(data).hexdigest()}


def read_model_file(path: Path) -> dict:
    """read_torch_file of a model file, with the weights it shares with a shipped part put back: the part must
    be one of posecal's own files (a bare name in posecal/weights, never a path the file chooses) with the
    recorded digest, so a model file can neither point elsewhere nor load against other weights."""
    ckpt = read_torch_file(path)
    shared = ckpt.get("shared_weights")
    if shared is None:
        return ckpt
    name = shared.get("file") if isinstance(shared, dict) else None
    if name not in SHIPPED_PARTS.values():
        raise PosecalInputError(f"{path}: shares weights with {name!r}, which is not a part posecal ships")
    part_state, record = shipped_part(name)
    if part_state is None:
        raise PosecalInputError(f"{path}: its pose network is posecal's {name}, which this installation lacks "
                                f"(reinstall posecal)")
    if record["sha256"] != shared.get("sha256") or shared.get("prefix") != PART_PREFIX:
        raise PosecalInputError(f"{path}: shares weights with {name}, but the installed {name} is another "
                                f"version (digest {record['sha256'][:12]}, the file expects "
                                f"{str(shared.get('sha256'))[:12]})")
    own = ckpt.get("state_dict")
    if not isinstance(own, dict):
        raise PosecalInputError(f"{path}: not a posecal model file (no weights)")
    return {**ckpt, "state_dict": {f"{PART_PREFIX}{k}": v for k, v in part_state.items()} | own}


def plain(value):
    """Metadata as plain Python (dict, list, str, numbers, bool, None): numpy scalars and arrays, tuples and
    paths turned into their plain forms, so the file loads with torch.load(weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def save_resume_state(model: TopDownEstimator, cfg: ModelConfig, state: dict, folder) -> None:
    """The compact, committable form of a training's last checkpoint: fp16 weights (`weights.pt`, a model
    file `posecal eval --model` also reads) and the schedule position with the epoch log (`state.json`).

    The optimizer's moments are left out on purpose: they would triple the size (AdamW keeps two fp32 tensors
    per weight) and a resumed run re-estimates them within a short learning-rate re-warm-up.
    """
    folder = Path(folder)
    save_model(model, cfg, folder / "weights.pt", meta={"epoch": state["epoch"], "step": state["step"]}, half=True)
    keep = ("epoch", "step", "best_ap", "log", "partial")   # partial: an epoch stopped mid-way (max_minutes)
    write_json_atomic({k: state[k] for k in keep if k in state}, folder / "state.json")


def load_resume_state(model: TopDownEstimator, folder) -> dict:
    """Load `save_resume_state`'s weights into `model`; returns the training state (epoch, step, best_ap, log,
    and `partial` when it was saved mid-epoch)."""
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise PosecalInputError(f"{folder}: no committed training state (state.json) to resume from")
    ckpt = read_torch_file(folder / "weights.pt")
    try:
        model.load_state_dict(_float_state(ckpt["state_dict"]))
        state = json.loads((folder / "state.json").read_text())
        state = {"epoch": int(state["epoch"]), "step": int(state["step"]), "best_ap": float(state["best_ap"]),
                 "log": list(state["log"]), **({"partial": dict(state["partial"])} if state.get("partial") else {})}
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise PosecalInputError(f"{folder}: training state does not fit this model/config "
                                f"({first_line(e)})") from None
    return state


def _yaml(value) -> str:
    return f"[{', '.join(f'{v:g}' for v in value)}]" if isinstance(value, tuple) else str(value)


def read_torch_file(path: Path, missing: str = "model file not found", invalid: str = "not a posecal model file",
                    weights_only: bool = True) -> dict:
    """torch.load of a user's file as a dict, with weights_only=True: tensors, dicts, lists and plain values,
    never pickled code (a shared .pt file could otherwise run anything when loaded). A missing or unreadable
    file is one line `PATH: <missing>` or `PATH: <invalid> (reason)`; a file holding other Python objects is
    refused in one line."""
    if not path.is_file():
        raise PosecalInputError(f"{path}: {missing}")
    if path.stat().st_size == 0:
        raise PosecalInputError(f"{path}: {invalid} (empty file, 0 bytes)")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():   # not a refused object: bytes that are no checkpoint
            detail = str(e).partition("WeightsUnpickler error:")[2].strip()   # past torch's preamble
            raise PosecalInputError(f"{path}: {invalid} ({detail.splitlines()[0][:120] if detail else first_line(e)})"
                                    ) from None
        raise PosecalInputError(f"{path}: refused: it holds Python objects beyond weights and plain values, and "
                                f"loading those could run code (posecal loads files with torch.load("
                                f"weights_only=True); re-save it with posecal's own writers") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise PosecalInputError(f"{path}: {invalid} ({first_line(e)})") from None
    if not isinstance(ckpt, dict):
        raise PosecalInputError(f"{path}: {invalid}")
    return ckpt


# numpy scalars (a float64 metric in a checkpoint's metadata) pickle as these constructors, which build a number
# from a dtype and its bytes and nothing else: allowed in weights_only loading, as PyTorch's documentation shows.
NUMPY_SCALAR_GLOBALS = [np.dtype, (np._core if hasattr(np, "_core") else np.core).multiarray.scalar,
                        *(type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool"))]


def first_line(error: BaseException, limit: int = 120) -> str:
    """An exception's first line, cut to `limit` characters, or its type's name when it has no message (torch
    raises e.g. an IndexError with none for a file too short to be a checkpoint)."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def _float_state(state: dict) -> dict:
    """fp16 shipped weights -> fp32 for CPU inference and training."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


# Fields a model file's weights depend on beyond their shapes: a different input convention loads without
# error and silently feeds the network the wrong colours.
WEIGHT_BOUND_FIELDS = ("input_channels", "input_mean", "input_std")


def load_state_from(model: TopDownEstimator, path, cfg: ModelConfig | None = None) -> None:
    """Initialise from a model file. Only quality-head weights may be missing from the file (S3, fine-tuning)
    or left over in it (a pose-only model fine-tuned from a packed model with heads or a trust model). With `cfg`, the file's
    input convention must equal the config's (an imported checkpoint's is in its file: `posecal import-weights`)."""
    path = Path(path)
    ckpt = read_model_file(path)
    state = ckpt.get("state_dict", ckpt.get("model"))
    if state is None:
        raise PosecalInputError(f"{path}: not a posecal model file (no weights)")
    if cfg is not None and isinstance(ckpt.get("model_config"), dict):
        saved = model_config_from_dict({**model_config_to_dict(ModelConfig()), **ckpt["model_config"]})
        for name in WEIGHT_BOUND_FIELDS:
            if getattr(saved, name) != getattr(cfg, name):
                raise PosecalInputError(f"init_from {path}: its weights were trained with {name} "
                                        f"{_yaml(getattr(saved, name))}; set model.{name}: "
                                        f"{_yaml(getattr(saved, name))} in the config (it has {_yaml(getattr(cfg, name))})")
    heads = ("oks_head.", "opks_head.", "visibility_head.")
    if not model.has_quality_heads:
        state = {k: v for k, v in state.items() if not k.startswith(heads)}
    if not any(k.startswith("trust.") for k in model.state_dict()):   # a pose network fine-tuned from a trusted model
        state = {k: v for k, v in state.items() if not k.startswith("trust.")}
    result = model.load_state_dict(_float_state(state), strict=False)
    bad = [k for k in result.missing_keys if not k.startswith(heads)] + list(result.unexpected_keys)
    if bad:
        raise PosecalInputError(f"{path}: weights do not match the model ({len(bad)} keys, e.g. {bad[0]})")


def load_model(path=None, device: str = "cpu") -> tuple[TopDownEstimator, ModelConfig, dict]:
    """Load a model file (best_model.pt or a packed file), a training run's checkpoint (`last.pt`), or a shipped
    model by name (model_file); the shipped default model when path is None. An exported .onnx file gets one
    line saying which file to give instead (it runs through posecal/inference/opener.py)."""
    path = DEFAULT_MODEL_NAME if path is None else path   # said by its name, never as 'None'
    if str(path) in SHIPPED_MODELS and not SHIPPED_MODELS[str(path)].is_file():
        raise PosecalInputError(f"model {path!r}: its PyTorch file is not in this installation (the shipped models' "
                                f".pt files are in posecal's source tree; a wheel carries graphs of "
                                f"{', '.join(SHIPPED_GRAPHS)}, which the onnx backend runs)")
    spec, path = path, model_file(path)
    if not path.is_file():
        raise PosecalInputError(missing_model_message(spec, path))
    if path.suffix.lower() == ".onnx" and path.is_file():
        raise PosecalInputError(f"{path}: an exported ONNX model; this needs a posecal .pt model file (e.g. the one "
                                f"it was exported from). ONNX files run in predict, eval, track and Predictor")
    ckpt = read_model_file(path)
    training = is_training_checkpoint(ckpt)
    if training:
        ckpt = training_checkpoint_model(ckpt, path)
    try:
        cfg = model_config_from_dict(ckpt["model_config"])
        model = model_from_config(cfg, imagenet=False)
        model.load_state_dict(_float_state(ckpt["state_dict"]))
    except (KeyError, RuntimeError, TypeError, EOFError, ValueError) as e:
        what = "a training checkpoint whose weights do not fit its model config" if training else \
            "not a posecal model file"
        raise PosecalInputError(f"{path}: {what} ({first_line(e)})") from None
    return model.to(device).eval(), cfg, ckpt.get("meta", {})


def is_training_checkpoint(ckpt: dict) -> bool:
    """`posecal train`'s last.pt: weights under 'model', the optimizer, the schedule and the training config."""
    return {"model", "optim", "config"} <= set(ckpt) and isinstance(ckpt.get("config"), dict)


def training_checkpoint_model(ckpt: dict, path: Path) -> dict:
    """A training checkpoint as a model file's dict: its model config and the weights training serves (the
    weight average when the run keeps one, as best_model.pt holds; else the trained weights). Its meta says
    which run and step it is, so that nobody takes it for a validated best_model.pt."""
    model_cfg = ckpt["config"].get("model")
    if not isinstance(model_cfg, dict):
        raise PosecalInputError(f"{path}: a training checkpoint without its model config (config.model); "
                                f"give the run's best_model.pt")
    weights = ckpt["model"]
    average = ckpt.get("ema")
    if isinstance(average, dict) and any(k.startswith(EMA_PREFIX) for k in average):
        weights = {k[len(EMA_PREFIX):]: v for k, v in average.items() if k.startswith(EMA_PREFIX)}
    state = ckpt.get("state") if isinstance(ckpt.get("state"), dict) else {}
    return {"model_config": model_cfg, "state_dict": weights,
            "meta": {"training_checkpoint": str(path), "epoch": state.get("epoch"), "step": state.get("step")}}


# torch.optim.swa_utils.AveragedModel's state_dict: the averaged network's weights under this prefix
EMA_PREFIX = "module."
