"""The model's typed config: what a model file stores beside its weights, so it can be rebuilt exactly.
Loaded from YAML as the `model:` part of a training config (posecal.training.config)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD
from posecal.errors import PosecalInputError
from posecal.validation import POSITIVE, Rule

# Plain data, so that a model's config is read without PyTorch (inference on onnxruntime alone):
TRUST_INPUT = 192          # the shipped trust models' square input side (stride-4 map 48 x 48); TrustNet's default
MOVENET_INPUT_SIDE = {"thunder": 256, "lightning": 192}   # each MoveNet variant's fixed square input


@dataclass
class ModelConfig:
    input_wh: tuple[int, int] = (144, 192)
    # efficientnet_lite0|1|2 | resnet18|50|101|152 (SimpleBaseline) | hrnet_w32|w48 | hourglass_2|8
    # | movenet_thunder|lightning (Google's COCO-trained MoveNet, ported; its input is fixed: network_input)
    backbone: str = "efficientnet_lite0"
    head_widths: tuple[int, int, int] = (128, 128, 64)
    sigma: float = 2.0
    imagenet: bool = True                # start from the backbone's shipped weights (ImageNet; MoveNet: COCO)
    quality_heads: bool = False          # OKS, OPKS and visibility heads on the pose feature
    visibility_classes: int = 3          # 3: not labelled / occluded / visible; 2: labelled or not
    head_hidden: int = 256
    # The quality outputs come from posecal's trust model (posecal/models/trust: its own network on the crop,
    # reading the decoded keypoints) instead of heads on the pose feature; MoveNet backbones.
    trust: bool = False
    # The trust model's own square input side (crops are resized to it inside the graph): 192 for the shipped
    # models (and any model file written before the field existed), 256 = MoveNet Thunder's crops, no resize.
    trust_input: int = TRUST_INPUT
    num_keypoints: int = 17              # 17 (COCO); an imported MPII hourglass has 16
    # The pose network's input convention, applied inside the model (posecal/models/input_convention.py):
    # channel order and mean/std in units of the 0..1 pixel range. The defaults are posecal's own; imported
    # checkpoints carry their published pipeline's (SimpleBaseline: bgr; stacked hourglass: mean 0, std 1).
    input_channels: str = "rgb"
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD


# What each numeric or enum-like field allows beyond its type (posecal.training.config checks them).
MODEL_RULES: dict[str, Rule] = {
    "input_wh": POSITIVE, "head_widths": POSITIVE, "sigma": POSITIVE, "visibility_classes": Rule(choices=(2, 3)),
    "head_hidden": POSITIVE, "num_keypoints": POSITIVE, "input_channels": Rule(choices=("rgb", "bgr")),
    "input_std": POSITIVE, "trust_input": POSITIVE,
}


def model_config_to_dict(cfg: ModelConfig) -> dict:
    """Plain JSON-able dict (tuples as lists), as stored in model files and ONNX metadata."""
    return vars(cfg) | {k: list(getattr(cfg, k)) for k in _TUPLE_FIELDS}


_TUPLE_FIELDS = ("input_wh", "head_widths", "input_mean", "input_std")


# Fields of former model files that no model uses any more: off, they are dropped (posecal_accurate.pt stores
# fusion: false); on, the file needs code posecal no longer has (trust-guided fusion, removed: it shipped in
# no model and lost AP on the fine-tuned network, CHANGELOG.md).
RETIRED_FIELDS = ("fusion", "second_opinion")


def model_config_from_dict(values: dict) -> ModelConfig:
    """Model files written before a field existed get its default (e.g. the input convention); a retired field
    is dropped when off and refused (ValueError) when on."""
    on = [k for k in RETIRED_FIELDS if values.get(k)]
    if on:
        raise ValueError(f"model.{on[0]} is on: a trust-guided fusion model, which posecal no longer runs; use the "
                         "model it was assembled from")
    values = {k: v for k, v in values.items() if k not in RETIRED_FIELDS}
    return ModelConfig(**{**values, **{k: tuple(values[k]) for k in _TUPLE_FIELDS if k in values}})


# MoveNet SinglePose variants (posecal/models/backbones/movenet.py). The network was trained on square crops of
# its own size with RGB values 0..255, and nothing else: posecal's crop of (v/255 - mean) / std gives v back
# with mean 0 and std 1/255.
MOVENET_VARIANTS = {"movenet_thunder": "thunder", "movenet_lightning": "lightning"}


# The MoveNet variants whose crops are posed in two stages with the flip test (a look, then the refinement of the
# people the policy keeps): Thunder. Not Lightning: its pass is cheap, and a second graph call a crop cost `fast`
# more than the mirror passes of rejected candidates saved (bench/speed_vs_start.py; CHANGELOG).
STAGED_VARIANTS = ("thunder",)


def stages_crops(cfg) -> bool:
    """A model whose crops are posed in two stages, a look and its refinement (models/estimator.py look_outputs,
    refine_outputs): a MoveNet network of a STAGED_VARIANTS kind judged by a trust model. The one rule: the shipped
    graphs are built by it, and a model file opened on either backend follows it."""
    return bool(cfg.trust) and MOVENET_VARIANTS.get(cfg.backbone) in STAGED_VARIANTS


MOVENET_CONVENTION = {"input_channels": "rgb", "input_mean": (0.0, 0.0, 0.0), "input_std": (1 / 255,) * 3}


def network_input(cfg: ModelConfig, given=None) -> ModelConfig:
    """The config with the input its network fixes, for networks that fix one (MoveNet: square crops of its
    size, RGB 0..255). Every path that crops for a model (predict, eval, track, train, export, calibrate
    --images) crops cfg.input_wh, so a MoveNet model is never fed a 3:4 crop. Fields not in `given` (None: all
    are given) take the network's values; a given one that differs is ValueError(field, problem)."""
    if cfg.backbone not in MOVENET_VARIANTS:
        return cfg
    side = MOVENET_INPUT_SIDE[MOVENET_VARIANTS[cfg.backbone]]
    want = {"input_wh": (side, side), **MOVENET_CONVENTION, "num_keypoints": 17}
    given = set(want) if given is None else set(given)
    for field, value in want.items():
        have = getattr(cfg, field)
        same = have == value if isinstance(value, (str, int)) else np.allclose(have, value, rtol=1e-6, atol=0)
        if field in given and not same:
            raise ValueError(field, f"{cfg.backbone} takes {_listed(value)} (its network's fixed input), "
                                    f"got {_listed(have)}")
    return replace(cfg, **{field: value for field, value in want.items() if field not in given})


def _listed(value) -> str:
    if isinstance(value, (str, int)):
        return str(value)
    return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"


def default_decode(cfg: ModelConfig) -> str:
    """How a model's outputs become keypoints unless a user says otherwise: MoveNet's own centre-guided decode
    for a MoveNet model, else DARK. Why not DARK for MoveNet: its keypoint heatmaps fire on every person in the
    crop and hold no sub-cell position (that is in its offsets), while the centre-guided decode keeps the person
    the crop is centred on."""
    return "movenet" if cfg.backbone in MOVENET_VARIANTS else "dark"


def require_coco_keypoints(cfg: ModelConfig, path) -> None:
    """Decoding, flip test, scores and metrics work on COCO's 17 keypoints; an imported MPII hourglass has 16."""
    if cfg.num_keypoints != 17:
        raise PosecalInputError(f"{path or 'model'}: a {cfg.num_keypoints}-keypoint model (e.g. an MPII stacked "
                                "hourglass); eval and predict need COCO's 17 keypoints (train hourglass_2/8 on COCO)")
