"""Assembling models from shipped parts and training checkpoints (tools/build_fused_model.py,
tools/build_trust_model.py, tools/train_trust.py; the fusion's tests):
* fused_model: a MoveNet model with a trust model, whose trust model then picks each keypoint among the flip
  test's passes and, with a second opinion, among a posecal EfficientNet-Lite0 network's keypoints too;
* trust_weights: a trust model's weights from a trust training checkpoint or from a model file that carries one
  (to put a trust model on another network, or to go on training it).
The weights are taken as they are; the calibration must be fitted anew (`posecal pack --calibrate-on`)."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import torch

from posecal.errors import PosecalInputError
from posecal.models.checkpoint import load_model, model_file, model_from_config


def fused_model(base="accurate", second=None):
    """(model, config, meta) of `base` fusing its flip passes, plus `second`'s pose network when given."""
    model, cfg, meta = load_model(base)
    if not cfg.trust:
        raise PosecalInputError(f"{base}: the fusion's judge is the trust model; this model has none")
    cfg = replace(cfg, fusion=True, second_opinion=second is not None)
    fused = model_from_config(cfg, imagenet=False)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("second_opinion.")}
    if second is not None:
        other, other_cfg, _ = load_model(second)
        if other_cfg.backbone != "efficientnet_lite0" or other_cfg.input_channels != "rgb":
            raise PosecalInputError(f"{second}: the second opinion is an EfficientNet-Lite0 posecal model")
        weights |= {f"second_opinion.{k}": v for k, v in other.state_dict().items()
                    if k.startswith(("backbone.", "heatmap_head."))}
    missing, unexpected = fused.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise PosecalInputError(f"weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return fused.eval(), cfg, {"base": str(base), "second_opinion": str(second),
                               "trust_checkpoint": meta.get("trust_checkpoint")}


def trust_weights(spec) -> dict:
    """The trust model's state_dict from a trust training checkpoint (posecal.training.trust: best.pt, last.pt),
    or from a model file that has one (a shipped name or a path)."""
    ckpt = torch.load(model_file(spec), map_location="cpu", weights_only=True)
    if "model" in ckpt and "state_dict" not in ckpt:
        return ckpt["model"]
    own, cfg, _ = load_model(spec)
    if not cfg.trust:
        raise PosecalInputError(f"{spec}: neither a trust checkpoint nor a model with a trust model")
    return own.trust.state_dict()


def pose_fingerprint(model) -> str:
    """A short fingerprint of a model's pose network (backbone + heatmap head, as fp16, the form that ships):
    what a trust model records as the network whose keypoints it was trained on, so a model file can show that
    its trust model judges its own network (meta `trust_trained_for`)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(("backbone.", "heatmap_head.")):
            t = tensor.detach().cpu()
            digest.update(name.encode())
            digest.update((t.half() if t.is_floating_point() else t).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
