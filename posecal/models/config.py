"""The model's typed config: what a model file stores beside its weights, so it can be rebuilt exactly.
Loaded from YAML as the `model:` part of a training config (posecal.training.config)."""
from __future__ import annotations

from dataclasses import dataclass

from posecal.validation import POSITIVE, Rule


@dataclass
class ModelConfig:
    input_wh: tuple[int, int] = (144, 192)
    # efficientnet_lite0|1|2 | resnet18|50|101|152 (SimpleBaseline) | hrnet_w32|w48 | hourglass_2|8
    backbone: str = "efficientnet_lite0"
    head_widths: tuple[int, int, int] = (128, 128, 64)
    sigma: float = 2.0
    imagenet: bool = True
    quality_heads: bool = False          # OKS, OPKS and visibility heads on the pose feature
    visibility_classes: int = 3          # 3: not labelled / occluded / visible; 2: labelled or not
    head_hidden: int = 256
    num_keypoints: int = 17              # 17 (COCO); an imported MPII hourglass has 16
    # The pose network's input convention, applied inside the model (posecal/models/input_convention.py):
    # channel order and mean/std in units of the 0..1 pixel range. The defaults are posecal's own; imported
    # checkpoints carry their published pipeline's (SimpleBaseline: bgr; stacked hourglass: mean 0, std 1).
    input_channels: str = "rgb"
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)



# What each numeric or enum-like field allows beyond its type (posecal.training.config checks them).
MODEL_RULES: dict[str, Rule] = {
    "input_wh": POSITIVE, "head_widths": POSITIVE, "sigma": POSITIVE, "visibility_classes": Rule(choices=(2, 3)),
    "head_hidden": POSITIVE, "num_keypoints": POSITIVE, "input_channels": Rule(choices=("rgb", "bgr")),
    "input_std": POSITIVE,
}


def model_config_to_dict(cfg: ModelConfig) -> dict:
    """Plain JSON-able dict (tuples as lists), as stored in model files and ONNX metadata."""
    return vars(cfg) | {k: list(getattr(cfg, k)) for k in _TUPLE_FIELDS}


_TUPLE_FIELDS = ("input_wh", "head_widths", "input_mean", "input_std")


def model_config_from_dict(values: dict) -> ModelConfig:
    """Model files written before a field existed get its default (e.g. the input convention)."""
    return ModelConfig(**{**values, **{k: tuple(values[k]) for k in _TUPLE_FIELDS if k in values}})
