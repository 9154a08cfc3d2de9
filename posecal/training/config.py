"""Typed training configs (`posecal train`, `posecal train-trust`), loadable from YAML (the model part is posecal.models.config's ModelConfig). Unknown keys are an error, so typos do not pass silently."""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from posecal.data.transforms import AugmentConfig
from posecal.models.config import MODEL_RULES, ModelConfig, network_input
from posecal.training.trust import TrustTrainConfig
from posecal.errors import PosecalInputError
from posecal.validation import NON_NEGATIVE, POSITIVE, PROBABILITY, THREADS, Rule, describe, parse_float


@dataclass
class DataConfig:
    """Where the training data is. No defaults: a config names its own files (`required` says which are needed
    where: the COCO pair for training unless a pack gives the persons, the val pair unless the pack has val/)."""
    train_annotations: str | None = None     # a COCO keypoint JSON of the training persons
    train_images: str | None = None          # ... and the folder of its images
    val_annotations: str | None = None       # a COCO keypoint JSON of the validation persons
    val_images: str | None = None            # ... and the folder of its images
    lspet_annotations: str | None = None     # optional extra training data (LSP-14 mapped to COCO-17)
    lspet_images: str | None = None
    # LSPET's last N persons left out of pose training: the ones bench/lspet_ap.py scores, so a network trained
    # here is judged on sports poses it never saw (tools/pack_training_data.py's --lspet-holdout leaves out the same).
    lspet_holdout: int = 600
    # False: the training persons marked pseudo-labelled (`"pseudo": true` in train_annotations, source "pseudo"
    # in a pack: lab/tools/pseudo_labels.py) are left out, so one pack serves a run with them and its control.
    pseudo_labels: bool = True
    # A pack folder (made from posecal's source tree by tools/pack_training_data.py): when set, the training
    # persons come from its shard_*/ instead of the files above, and validation uses its val/ when it has one
    # (else val_annotations/val_images).
    packed: str | None = None

    def required(self, *names: str) -> tuple[str, ...]:
        """The named fields' values; one that is not set is one PosecalInputError line naming it, e.g.
        'data.train_annotations: required (a COCO keypoint JSON)'."""
        for name in names:
            if not getattr(self, name):
                raise PosecalInputError(f"data.{name}: required ({DATA_FIELDS[name]})")
        return tuple(getattr(self, name) for name in names)


# What each data path is, for the line that says it is missing (DataConfig.required).
DATA_FIELDS = {"train_annotations": "a COCO keypoint JSON", "train_images": "the folder of the training images",
               "val_annotations": "a COCO keypoint JSON", "val_images": "the folder of the validation images"}


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
    sync_batchnorm: bool = False          # under torchrun on GPUs: BatchNorm statistics over all ranks' batches
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
    # s1/s2: the feature trunk fixed (train.freeze_trunk), the rest of the pose network trains: the fine-tune a
    # CPU can afford for a pretrained network (MoveNet: its FPN and heads train, its MobileNetV2 does not).
    freeze_trunk: bool = False
    # Layer-wise unfreezing: with freeze_trunk, the trunk joins training at this step (heads and FPN settle
    # first, so their early large gradients do not reach the published trunk). None: frozen throughout.
    unfreeze_trunk_at: int | None = None
    # MoveNet: the weight of the centre-to-keypoint regression term (training.losses.movenet_pose_losses). The
    # CPU fine-tune lost AP with it at 1: on off-centre crops it stayed large and bent the shared FPN. 0 leaves
    # the regression head as published.
    lambda_regress: float = 1.0
    # MoveNet: the weight of the negatives term (training.losses.negative_cells_loss): each keypoint's heatmap held
    # low at its left/right partner and at the same joint of the people beside the target. 0: off.
    lambda_negatives: float = 0.0
    # Exponential moving average of the weights (0: off): validation, best_model.pt and the returned model use
    # the averaged weights, which are smoother than the last step's (the live weights keep training).
    ema_decay: float = 0.0
    lambda_heatmap: float = 2000.0        # OKS-Net: heatmap MSE is ~1000x smaller than the OKS L1
    lambda_oks: float = 1.0
    lambda_opks: float = 1.0
    lambda_vis: float = 1.0
    # Integral regression: weight of an L1 loss on the heatmaps' soft-argmax coordinates (heatmap pixels) relative
    # to the heatmap MSE (with quality heads both are then scaled by lambda_heatmap); 0 = heatmap loss only.
    # Pair it with `posecal eval --decode soft_argmax`.
    lambda_integral: float = 0.0
    head_start_epoch: int = 0             # s2: heads' weight is 0 before this epoch ...
    head_ramp_epochs: int = 0             # ... then ramps linearly to 1 over this many epochs
    hard_mining: bool = True              # OKS loss: largest 25% of the batch -> e^{2L} - 1
    flip_targets: bool = True             # s3: flip test as at inference: heads read the flip-merged heatmaps
                                          # and online targets come from their DARK decoding


@dataclass
class TrustSamplesConfig:
    """The trust model's training samples (posecal.training.trust_samples): each epoch is every COCO training
    person once and LSPET persons drawn anew, augmented anew, with the base model's keypoints on the crop."""
    epochs: int = 2
    lspet_per_epoch: int = 4000           # LSPET persons per epoch (of those not held out), with data.lspet_*
    max_train_persons: int | None = None  # the first N COCO training persons (smoke tests)
    max_val_persons: int | None = None
    no_flip_share: float = 0.4            # share of each epoch decoded without the flip test (users run both)
    backend: str = "onnx"                 # the base model run in onnxruntime (as users run it) or in torch
    batch_size: int = 32
    num_workers: int = 1                  # data-loading processes


@dataclass
class TrustJobConfig:
    """`posecal train-trust CONFIG` (posecal.training.trust_job): samples -> training -> the model file."""
    out_dir: str = "runs/trust"           # samples/ and train/ (last.pt, best.pt, log.json): resumable
    output: str = "runs/trust/model.pt"   # the model file written: base's pose network + the trained trust model
    # The MoveNet model whose keypoints the trust model learns to judge; the model file keeps its pose network.
    base: str = "accurate"
    init: str | None = None               # start from this trust model (a model with one, or a trust checkpoint)
    init_pose: str = "lite0"              # else its pose network starts from this EfficientNet-Lite0 model's
    data: DataConfig = field(default_factory=DataConfig)   # the COCO files (and LSPET); no pack
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    samples: TrustSamplesConfig = field(default_factory=TrustSamplesConfig)
    train: TrustTrainConfig = field(default_factory=TrustTrainConfig)


STRATEGIES = ("s1", "s2", "s3")
AMP_DTYPES = ("bf16", "fp16")

# Data-loading processes: each holds a copy of the dataset and its own threads, so a typo (num_workers: 400)
# would fork hundreds of processes and exhaust the machine's memory before the first step; 64 is more than any
# one machine's loading needs.
WORKERS = Rule(lo=0, hi=64)

# What each numeric or enum-like field allows beyond its type (the type comes from the annotation). A field
# missing here takes any value of its type.
RULES: dict[type, dict[str, Rule]] = {
    TrainConfig: {
        "epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
        "warmup_steps": NON_NEGATIVE, "min_lr_ratio": PROBABILITY, "max_steps": POSITIVE,
        "max_train_persons": POSITIVE, "val_every": POSITIVE, "max_val_persons": POSITIVE,
        "num_workers": WORKERS, "threads": THREADS, "seed": NON_NEGATIVE, "amp_dtype": Rule(choices=AMP_DTYPES),
        "max_minutes": POSITIVE, "resume_warmup_steps": NON_NEGATIVE, "strategy": Rule(choices=STRATEGIES),
        "lambda_heatmap": NON_NEGATIVE, "lambda_oks": NON_NEGATIVE, "lambda_opks": NON_NEGATIVE,
        "lambda_vis": NON_NEGATIVE, "lambda_integral": NON_NEGATIVE, "lambda_regress": NON_NEGATIVE, "lambda_negatives": NON_NEGATIVE, "unfreeze_trunk_at": NON_NEGATIVE,
        "ema_decay": Rule(lo=0, hi=1, hi_open=True), "head_start_epoch": NON_NEGATIVE, "head_ramp_epochs": NON_NEGATIVE,
    },
    ModelConfig: MODEL_RULES,
    TrustSamplesConfig: {"epochs": POSITIVE, "no_flip_share": PROBABILITY, "backend": Rule(choices=("onnx", "torch")),
                         "batch_size": POSITIVE, "num_workers": WORKERS, "lspet_per_epoch": NON_NEGATIVE,
                         "max_train_persons": POSITIVE, "max_val_persons": POSITIVE},
    TrustTrainConfig: {
        "batch_size": POSITIVE, "lr": POSITIVE, "min_lr_ratio": PROBABILITY, "weight_decay": NON_NEGATIVE,
        "epochs": POSITIVE, "warmup_steps": NON_NEGATIVE, "score_dropout": PROBABILITY, "perturb_prob": PROBABILITY,
        "swap_prob": PROBABILITY, "save_every": POSITIVE, "max_minutes": NON_NEGATIVE, "seed": NON_NEGATIVE,
        "threads": THREADS, "lambda_opks": NON_NEGATIVE, "lambda_vis": NON_NEGATIVE, "lambda_oks": NON_NEGATIVE,
    },
    AugmentConfig: {
        "flip_prob": PROBABILITY, "scale_range": Rule(lo=0, hi=1, hi_open=True), "rotation_max": Rule(lo=0, hi=180),
        "rotation_prob": PROBABILITY, "rotation_full_prob": PROBABILITY, "half_body_prob": PROBABILITY,
        "half_body_min_keypoints": NON_NEGATIVE, "color_jitter": PROBABILITY, "truncation_prob": PROBABILITY,
        "truncation_range": Rule(lo=0, hi=1, hi_open=True, ordered=True), "occluder_prob": PROBABILITY,
        "occluder_max": POSITIVE, "occluder_size": Rule(lo=0, hi=1, lo_open=True, ordered=True),
        "box_jitter": Rule(lo=0, hi=1), "blur_prob": PROBABILITY, "jpeg_prob": PROBABILITY,
        "small_prob": PROBABILITY, "small_height": Rule(lo=1, hi=10000, ordered=True), "noise_prob": PROBABILITY,
        "paste_person_prob": PROBABILITY, "paste_person_scale": Rule(lo=0.1, hi=10, ordered=True),
        "paste_person_shift": Rule(lo=0, hi=2, ordered=True),
    },
}

_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class _Invalid(Exception):
    """A bad field (dotted name, problem); load_train_config adds the file and turns it into PosecalInputError."""


def _scalar(value, kind: type, name: str):
    """`value` as a bool, int, float or str. Bools are not numbers here (YAML turns `yes` into True), ints are
    floats, and a plain float literal string is a float (YAML 1.1 reads `1e-3` as a string)."""
    if kind is float and isinstance(value, str) and parse_float(value) is not None:
        value = parse_float(value)
    accepted = (int, float) if kind is float else kind
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
        raise _Invalid(name, f"expected {_EXPECTED[kind]}, got {describe(value)}")
    if kind is float and not math.isfinite(value):
        raise _Invalid(name, f"expected a finite number, got {value!r}")
    return float(value) if kind is float else value


def _tuple(value, kinds: tuple, name: str) -> tuple:
    """A YAML list of exactly len(kinds) elements as a tuple; elements are named FIELD[i] in errors."""
    if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
        raise _Invalid(name, f"expected a list of {len(kinds)} values, got {describe(value)}")
    return tuple(_scalar(v, kind, f"{name}[{i}]") for i, (v, kind) in enumerate(zip(value, kinds)))


def _coerce(value, hint, name: str):
    """`value` checked against the field's annotation: `X | None`, a nested config, a tuple or a scalar."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return None if value is None else _coerce(value, inner, name)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name)
    if typing.get_origin(hint) is tuple:
        return _tuple(value, typing.get_args(hint), name)
    return _scalar(value, hint, name)


def _unknown_key(key, known: list[str], name: str) -> _Invalid:
    """Unknown keys are an error (a typo must not silently leave the default); suggest the closest known key."""
    close = difflib.get_close_matches(str(key), known, n=1)
    return _Invalid(name, "unknown key" + (f", did you mean '{close[0]}'?" if close else ""))


def _build(cls, values, prefix: str = ""):
    """An instance of the config dataclass `cls` from a YAML mapping, each field checked for type and RULES."""
    if not isinstance(values, dict):
        raise _Invalid(prefix, f"expected a mapping of settings, got {describe(values)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise _unknown_key(key, list(hints), name)
        kwargs[key] = _coerce(value, hints[key], name)
        rule = RULES.get(cls, {}).get(key)
        problem = rule.problem(kwargs[key]) if rule is not None and kwargs[key] is not None else None
        if problem:
            raise _Invalid(name, problem)
    if cls is ModelConfig:
        try:
            return network_input(cls(**kwargs), given=kwargs)
        except ValueError as e:
            field, problem = e.args
            raise _Invalid(f"{prefix}.{field}" if prefix else field, problem) from None
    return cls(**kwargs)


def load_config(path, cls):
    """The YAML file as an instance of the config dataclass `cls` (TrainConfig, the trust job's config, ...), each
    field checked for type and RULES; any bad field is one PosecalInputError line 'FILE: FIELD: problem'."""
    path = Path(path)
    if not path.is_file():
        raise PosecalInputError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PosecalInputError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise PosecalInputError(f"{path}: not a text file (not UTF-8); a config is YAML text") from None
    try:
        return _build(cls, {} if values is None else values)
    except _Invalid as e:
        name, problem = e.args
        raise PosecalInputError(f"{path}: {name}: {problem}" if name else f"{path}: {problem}") from None


def load_train_config(path) -> TrainConfig:
    """The YAML file as a TrainConfig; any bad field is one PosecalInputError line 'FILE: FIELD: problem'."""
    path = Path(path)
    cfg = load_config(path, TrainConfig)
    lspet = {"annotations": cfg.data.lspet_annotations, "images": cfg.data.lspet_images}
    if any(lspet.values()) and not all(lspet.values()):   # one without the other: unused, or a traceback
        given, missing = sorted(lspet, key=lambda k: not lspet[k])
        raise PosecalInputError(f"{path}: data.lspet_{missing}: needed with data.lspet_{given} (the LSPET "
                                f"annotation file and its image folder go together)")
    return cfg


def load_trust_config(path) -> TrustJobConfig:
    """The YAML file as a TrustJobConfig (`posecal train-trust`); bad fields as load_config says."""
    path = Path(path)
    cfg = load_config(path, TrustJobConfig)
    lspet = (cfg.data.lspet_annotations, cfg.data.lspet_images)
    if any(lspet) and not all(lspet):
        raise PosecalInputError(f"{path}: data.lspet_annotations and data.lspet_images go together")
    if cfg.data.packed:
        raise PosecalInputError(f"{path}: data.packed: trust samples are made from the COCO files, not a pack")
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
