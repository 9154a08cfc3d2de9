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


@dataclass
class ModelConfig:
    input_wh: tuple[int, int] = (144, 192)
    head_widths: tuple[int, int, int] = (128, 128, 64)
    sigma: float = 2.0
    imagenet: bool = True


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


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
