"""`posecal import-weights`: a published checkpoint -> a posecal model file, by a strict, explicit key map.

The model file carries the config the weights need (backbone, keypoint count, input size and the published
pipeline's input convention), so `posecal eval --model` and `posecal predict --model` need nothing else, and
`init_from` in a training config starts strategy S3 (only the quality heads train) from it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from posecal.models.checkpoint import model_from_config, read_torch_file, save_model
from posecal.models.config import ModelConfig
from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD
from posecal.errors import PosecalInputError
from posecal.models.official.key_map import family, official_keys, to_posecal_key, unwrap
from posecal.io import check_output_file

ARCHS = ("hrnet_w32", "hrnet_w48", "resnet50", "resnet101", "resnet152", "hourglass_2", "hourglass_8")
UNIT = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
IMAGENET = IMAGENET_MEAN, IMAGENET_STD


def source_convention(arch: str, mmpose: bool) -> tuple[str, tuple, tuple]:
    """(channel order, mean, std) of the pipeline that trained the published weights.

    HRNet reference configs: RGB (COLOR_RGB: true); its SimpleBaseline configs: BGR (COLOR_RGB: false), both with
    ImageNet mean/std; mmpose's data preprocessor turns BGR to RGB for every model; princeton-vl's hourglass
    feeds RGB / 255 with no mean/std (data/MPII/dp.py).
    """
    kind = family(arch)
    if kind == "hourglass":
        return ("rgb", *UNIT)
    return ("bgr" if kind == "resnet" and not mmpose else "rgb", *IMAGENET)


def _read_checkpoint(src: Path) -> dict:
    obj = read_torch_file(src, "checkpoint file not found", "not a PyTorch checkpoint that loads safely",
                          weights_only=True)
    try:
        return unwrap(obj)[0]
    except ValueError as e:
        raise PosecalInputError(f"{src}: {e}") from None


def _num_keypoints(arch: str, state: dict, src: Path) -> int:
    final = "outs.0.conv.weight" if family(arch) == "hourglass" else "final_layer.weight"
    if final not in state:
        raise PosecalInputError(f"{src}: no '{final}' in the checkpoint; is it a {arch} checkpoint?")
    return int(state[final].shape[0])


def map_state(arch: str, state: dict, expected: dict, src) -> dict:
    """Official keys -> posecal keys, strictly: every expected key once, nothing left over, equal shapes.

    `num_batches_tracked` is optional (the 2018 SimpleBaseline files predate it) and becomes 0 when absent.
    """
    mapped = {to_posecal_key(arch, k): v for k, v in state.items()}
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in mapped:
            mapped[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in mapped]
    extra = [k for k in mapped if k not in expected]
    if missing or extra:
        what = (f"{len(missing)} keys missing, e.g. {missing[0].split('.', 1)[1]!r}" if missing else "") + \
               (", " if missing and extra else "") + \
               (f"{len(extra)} keys not in a {arch}, e.g. {extra[0].split('.', 1)[1]!r}" if extra else "")
        raise PosecalInputError(f"{src}: does not match --arch {arch} ({what})")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise PosecalInputError(f"{src}: {key.split('.', 1)[1]} has shape {list(value.shape)}, a {arch} "
                                    f"needs {list(expected[key].shape)}")
    return {k: v.to(expected[k].dtype) for k, v in mapped.items()}


def import_weights(src, arch: str, out, input_wh: tuple[int, int] | None = None,
                   input_channels: str | None = None) -> ModelConfig:
    """Convert `src` into the posecal model file `out`; returns the model config written with it.

    input_wh: the crop size (W, H) the model will be fed (default: the published one, 192x256; the hourglass
    256x256). input_channels: override the detected channel order ('rgb'/'bgr').
    """
    src, out = Path(src), Path(out)
    if arch not in ARCHS:
        raise PosecalInputError(f"--arch: {arch!r} has no published checkpoints here (expected one of "
                                f"{', '.join(ARCHS)})")
    check_output_file(out, "--out")
    state, mmpose = official_keys(_read_checkpoint(src))
    hourglass = family(arch) == "hourglass"
    channels, mean, std = source_convention(arch, mmpose)
    cfg = ModelConfig(input_wh=tuple(input_wh) if input_wh else ((256, 256) if hourglass else (192, 256)),
                      backbone=arch, imagenet=False, quality_heads=False,
                      sigma=1.0 if hourglass else 2.0, num_keypoints=_num_keypoints(arch, state, src),
                      input_channels=input_channels or channels, input_mean=mean, input_std=std)
    model = model_from_config(cfg, imagenet=False)
    model.load_state_dict(map_state(arch, state, model.state_dict(), src), strict=True)
    save_model(model, cfg, out, meta={"imported_from": src.name, "source_format": "mmpose" if mmpose else "official"})
    return cfg
