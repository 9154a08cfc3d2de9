"""Assembling a fusing model from shipped parts (tools/build_fused_model.py; the fusion's tests): a MoveNet model
with a trust model, whose trust model then picks each keypoint among the flip test's passes and, with a second
opinion, among a posecal EfficientNet-Lite0 network's keypoints too. The weights are taken as they are; the
calibration must be fitted anew on the fused outputs (`posecal pack --calibrate-on`)."""
from __future__ import annotations

from dataclasses import replace

from posecal.errors import PosecalInputError
from posecal.models.checkpoint import load_model, model_from_config


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
