"""Checkpoints: written atomically (temp file + rename) so a crash never leaves a half file."""
from __future__ import annotations

from pathlib import Path

import torch

from posecal.config import ModelConfig, model_config_from_dict, model_config_to_dict
from posecal.errors import PosecalInputError
from posecal.io import write_atomic
from posecal.models.estimator import TopDownEstimator, build_estimator

DEFAULT_MODEL = Path(__file__).parent / "weights" / "posecal_default.pt"


def atomic_save(obj, path) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def model_from_config(cfg: ModelConfig, imagenet: bool | None = None) -> TopDownEstimator:
    return build_estimator(cfg.head_widths, imagenet=cfg.imagenet if imagenet is None else imagenet,
                           quality_heads=cfg.quality_heads, visibility_classes=cfg.visibility_classes,
                           head_hidden=cfg.head_hidden)


def save_model(model: TopDownEstimator, cfg: ModelConfig, path, meta: dict | None = None, half: bool = False):
    """The deployable model file: config + weights (fp16 optional, halves the size)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    atomic_save({"model_config": model_config_to_dict(cfg),
                 "state_dict": state, "meta": meta or {}}, path)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise PosecalInputError(f"{path}: model file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise PosecalInputError(f"{path}: not a posecal model file ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict):
        raise PosecalInputError(f"{path}: not a posecal model file")
    return ckpt


def _float_state(state: dict) -> dict:
    """fp16 shipped weights -> fp32 for CPU inference and training."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_state_from(model: TopDownEstimator, path) -> None:
    """Initialise from a model file; only the quality heads may be missing from it (S3 / fine-tuning)."""
    path = Path(path)
    ckpt = _read(path)
    state = ckpt.get("state_dict", ckpt.get("model"))
    if state is None:
        raise PosecalInputError(f"{path}: not a posecal model file (no weights)")
    result = model.load_state_dict(_float_state(state), strict=False)
    heads = ("oks_head.", "opks_head.", "visibility_head.")
    bad = [k for k in result.missing_keys if not k.startswith(heads)] + list(result.unexpected_keys)
    if bad:
        raise PosecalInputError(f"{path}: weights do not match the model ({len(bad)} keys, e.g. {bad[0]})")


def load_model(path=None, device: str = "cpu") -> tuple[TopDownEstimator, ModelConfig, dict]:
    """Load a model file (best_model.pt or a packed file); the shipped default model when path is None."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    ckpt = _read(path)
    try:
        cfg = model_config_from_dict(ckpt["model_config"])
        model = model_from_config(cfg, imagenet=False)
        model.load_state_dict(_float_state(ckpt["state_dict"]))
    except (KeyError, RuntimeError, TypeError, EOFError, ValueError) as e:
        raise PosecalInputError(f"{path}: not a posecal model file ({str(e).splitlines()[0][:120]})") from None
    return model.to(device).eval(), cfg, ckpt.get("meta", {})
