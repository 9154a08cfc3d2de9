"""Typed job configs, loadable from YAML. Unknown keys are an error, so typos do not pass silently."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from posecal.data.transforms import AugmentConfig
from posecal.errors import PosecalInputError


@dataclass
class DataConfig:
    train_annotations: str = "../shared/data/coco-val2017-crops/annotations/train.json"
    train_images: str = "../shared/data/coco-val2017-crops/images"
    val_annotations: str = "../shared/data/coco-val2017-crops/annotations/val.json"
    val_images: str = "../shared/data/coco-val2017-crops/images"
    lspet_annotations: str | None = None     # optional extra training data (LSP-14 mapped to COCO-17)
    lspet_images: str | None = None
    # A pack folder (tools/pack_training_data.py): when set, the training persons come from its shard_*/ instead
    # of the files above, and validation uses its val/ when it has one (else val_annotations/val_images).
    packed: str | None = None


@dataclass
class ModelConfig:
    input_wh: tuple[int, int] = (144, 192)
    backbone: str = "efficientnet_lite0"    # efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2
    head_widths: tuple[int, int, int] = (128, 128, 64)
    sigma: float = 2.0
    imagenet: bool = True
    quality_heads: bool = False          # OKS, OPKS and visibility heads on the pose feature
    visibility_classes: int = 3          # 3: not labelled / occluded / visible; 2: labelled or not
    head_hidden: int = 256


@dataclass
class TrainConfig:
    out_dir: str = "runs/baseline"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    min_lr_ratio: float = 0.02            # cosine decays to lr * min_lr_ratio
    max_steps: int | None = None          # stop early (smoke tests, overfit checks)
    max_train_persons: int | None = None  # use the first N training persons (overfit checks)
    val_every: int = 1
    val_flip: bool = False                # flip test during per-epoch validation (final eval always flips)
    max_val_persons: int | None = None
    num_workers: int = 1
    threads: int = 2
    seed: int = 0
    channels_last: bool = True
    device: str = "cpu"                   # cpu | cuda (cuda also turns on cudnn.benchmark)
    amp: bool = False                     # autocast on CUDA (no-op on CPU) ...
    amp_dtype: str = "bf16"               # ... in bf16, or fp16 (with a GradScaler)
    # Wall-clock budget of one `posecal train` call: it stops after the step that passes it, saves last.pt and
    # the resume_state (mid-epoch too) and returns; `--resume` goes on at the next batch of the same epoch.
    max_minutes: float | None = None
    # Committed training state (fp16 weights + schedule position, see checkpoint.save_resume_state), written
    # each epoch; `--resume` falls back to it when OUT_DIR/last.pt is missing (a new machine, a new session).
    resume_state: str | None = None
    resume_warmup_steps: int = 100        # learning-rate re-warm-up after resuming without optimizer state
    # Quality heads (issue: calibrated confidence). Strategy:
    #   "s1" joint from the start, "s2" pose first then the heads' weight ramps up,
    #   "s3" backbone + heatmap head frozen (from init_from), only the heads train.
    strategy: str = "s1"
    init_from: str | None = None          # model file whose weights initialise backbone + heatmap head
    lambda_heatmap: float = 2000.0        # OKS-Net: heatmap MSE is ~1000x smaller than the OKS L1
    lambda_oks: float = 1.0
    lambda_opks: float = 1.0
    lambda_vis: float = 1.0
    head_start_epoch: int = 0             # s2: heads' weight is 0 before this epoch ...
    head_ramp_epochs: int = 0             # ... then ramps linearly to 1 over this many epochs
    hard_mining: bool = True              # OKS loss: largest 25% of the batch -> e^{2L} - 1
    flip_targets: bool = True             # s3: flip test as at inference: heads read the flip-merged heatmaps
                                          # and online targets come from their DARK decoding


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise PosecalInputError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise PosecalInputError(f"{where}: unknown key(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_train_config(path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise PosecalInputError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PosecalInputError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    return _build(TrainConfig, values, str(path))


def model_config_to_dict(cfg: ModelConfig) -> dict:
    """Plain JSON-able dict (tuples as lists), as stored in model files and ONNX metadata."""
    return vars(cfg) | {"input_wh": list(cfg.input_wh), "head_widths": list(cfg.head_widths)}


def model_config_from_dict(values: dict) -> ModelConfig:
    return ModelConfig(**{**values, "input_wh": tuple(values["input_wh"]),
                          "head_widths": tuple(values["head_widths"])})


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
