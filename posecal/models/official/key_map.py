"""The explicit map from published state_dict keys to posecal's, and the wrappers around them in the files.

posecal's backbone modules reproduce the reference modules' names (tests/test_official_keys.py checks every key,
shape and dtype against ../shared/reference/*.json), so the map is a prefix per key:

    HRNet            final_layer.*                  -> heatmap_head.final_layer.*,  every other key K -> backbone.K
    SimpleBaseline   deconv_layers.*, final_layer.* -> heatmap_head.*,              every other key K -> backbone.K
    Stacked HG       every key K (outs.* included)  -> backbone.K   (the stacks feed on their own heatmaps)

Files wrap those keys in different ways; `official_keys` undoes each one before the map:
  - `{'state_dict': ...}` (princeton-vl `checkpoint.pt`, mmpose model-zoo files) and `{'model': ...}`;
  - `model.module.` (princeton-vl: Trainer around DataParallel) and `module.` (any DataParallel save);
  - mmpose 1.x `backbone.` / `head.` and mmpose 0.x `keypoint_head.`; mmpose's non-persistent
    `data_preprocessor.mean/std` are dropped if present.
"""
from __future__ import annotations

HEAD_PREFIXES = {"hrnet": ("final_layer.",), "resnet": ("deconv_layers.", "final_layer."), "hourglass": ()}
WRAPPER_PREFIXES = ("model.module.", "module.")
MMPOSE_PREFIXES = ("backbone.", "head.", "keypoint_head.")
MMPOSE_DROPPED = ("data_preprocessor.mean", "data_preprocessor.std")


def family(arch: str) -> str:
    """'hrnet', 'resnet' or 'hourglass' for a model.backbone name that has published checkpoints."""
    for name in HEAD_PREFIXES:
        if arch.startswith(name):
            return name
    raise ValueError(f"{arch}: no published checkpoints of this family")


def to_posecal_key(arch: str, key: str) -> str:
    """Official (flat, unprefixed) key -> the posecal TopDownEstimator key."""
    if key.startswith(HEAD_PREFIXES[family(arch)]):
        return "heatmap_head." + key
    return "backbone." + key


def unwrap(obj) -> tuple[dict, str]:
    """The state_dict inside a loaded checkpoint object and the name of its layout ('flat', 'state_dict',
    'model'). Raises ValueError when there is none."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], "state_dict"
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], "model"
    if isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        return obj, "flat"
    raise ValueError("no state_dict in it (expected a flat state_dict or a dict with 'state_dict')")


def official_keys(state: dict) -> tuple[dict, bool]:
    """The state_dict with every wrapper prefix removed: (flat official keys -> tensors, came from mmpose).

    The official key sets never start with `backbone.`, `head.` or `keypoint_head.`, so those prefixes can only
    be mmpose's and stripping them cannot clash with a real key.
    """
    out, mmpose = {}, False
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key in MMPOSE_DROPPED:
            mmpose = True
            continue
        for prefix in MMPOSE_PREFIXES:
            if key.startswith(prefix):
                key, mmpose = key[len(prefix):], True
                break
        out[key] = value
    return out, mmpose
