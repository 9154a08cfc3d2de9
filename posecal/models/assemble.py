"""Assembling models from shipped parts and training checkpoints (`posecal train-trust`,
tools/build_trust_model.py):
* with_trust: a MoveNet model's pose network with a trust model in place of its quality heads;
* trust_weights: a trust model's weights from a trust training checkpoint or from a model file that carries one
  (to put a trust model on another network, or to go on training it);
* pose_fingerprint: which pose network a trust model was trained on.
The weights are taken as they are; the calibration must be fitted anew (`posecal pack --calibrate-on`)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import torch

from posecal.errors import PosecalInputError
from posecal.models.checkpoint import load_model, model_file, model_from_config, read_torch_file
from posecal.models.trust.network import TRUST_INPUT


def with_trust(trust, base="accurate", any_network: bool = False):
    """(model, config, meta) of `base`'s pose network (a MoveNet model: a shipped name or a file) with the trust
    model of `trust` (a trust training checkpoint, or a model file that carries one), uncalibrated. A trust
    checkpoint records the network whose keypoints it was trained on; another network is refused unless
    any_network (then recalibrate)."""
    base_model, cfg, base_meta = load_model(base)
    weights, side = trust_source(trust)
    # the trust model's own input side is the trust's (a checkpoint's state records it), not the base's
    cfg = replace(cfg, quality_heads=True, trust=True, trust_input=side)
    model = model_from_config(cfg, imagenet=False)
    pose = {k: v for k, v in base_model.state_dict().items() if k.startswith(("backbone.", "heatmap_head."))}
    trust_state = {f"trust.{k}": v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(pose | trust_state, strict=False)
    if missing or unexpected:
        raise PosecalInputError(f"{trust}: weights do not fit {base}: missing {missing[:3]}, unexpected "
                                f"{unexpected[:3]}")
    meta = {"trust_checkpoint": str(trust)} | {k: base_meta[k] for k in ("pose_network",) if k in base_meta}
    ckpt = read_torch_file(Path(trust)) if Path(str(trust)).is_file() else {}
    trained_for = ckpt.get("state", {}).get("trained_for") if "model" in ckpt else None
    if trained_for is not None:
        own = pose_fingerprint(model)
        if trained_for != own and not any_network:
            raise PosecalInputError(f"{trust}: its trust model was trained on network {trained_for}'s keypoints, "
                                    f"{base}'s network is {own} (with_trust(..., any_network=True) builds it "
                                    "anyway; then recalibrate)")
        meta["trust_trained_for"] = trained_for
    return model.eval(), cfg, meta


def trust_weights(spec) -> dict:
    """The trust model's state_dict from a trust training checkpoint (posecal.training.trust: best.pt, last.pt),
    or from a model file that has one (a shipped name or a path)."""
    return trust_source(spec)[0]


def trust_source(spec) -> tuple[dict, int]:
    """(state_dict, input side) of the trust model in a trust training checkpoint (its state's `trust_input`;
    192, TRUST_INPUT, for a checkpoint written before it was recorded) or in a model file that has one (its
    config's trust_input)."""
    ckpt = torch.load(model_file(spec), map_location="cpu", weights_only=True)
    if "model" in ckpt and "state_dict" not in ckpt:
        state = ckpt.get("state") if isinstance(ckpt.get("state"), dict) else {}
        return ckpt["model"], int(state.get("trust_input") or TRUST_INPUT)
    own, cfg, _ = load_model(spec)
    if not cfg.trust:
        raise PosecalInputError(f"{spec}: neither a trust checkpoint nor a model with a trust model")
    return own.trust.state_dict(), int(cfg.trust_input)


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
