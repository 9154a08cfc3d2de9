"""`posecal train`: heatmap training with AdamW + warmup/cosine, per-epoch val AP, atomic checkpoints, resume
(also mid-epoch, after a wall-clock budget), on CPU or CUDA (optionally with autocast), in one process or as
torchrun's data-parallel ranks (posecal.training.distributed)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from posecal.data.neighbours import neighbours_by_image
from posecal.models.checkpoint import (atomic_save, load_resume_state, load_state_from, model_file,
                                       model_from_config, plain, read_torch_file, save_model,
                                       save_resume_state)
from posecal.models.estimator import TopDownEstimator
from posecal.models.config import MOVENET_VARIANTS
from posecal.training.config import AMP_DTYPES, STRATEGIES, TrainConfig, to_dict
from posecal.data.coco import load_coco_persons, load_lspet, pseudo_label_ids
from posecal.data.images import unreadable_images
from posecal.data.packed import packed_neighbours, load_packed_persons, packed_val_paths
from posecal.data.crops import HEATMAP_STRIDE
from posecal.data.topdown import TopDownDataset
from posecal.training.distributed import DistributedEpochOrder, Group, launched_by_torchrun, start_group
from posecal.errors import PosecalInputError
from posecal.inference.estimator import predict_records
from posecal.inference.torch_runner import decode_pose_output
from posecal.io import check_output_dir, progress_shown, remove_stale_temps, write_json_atomic
from posecal.training.losses import (hard_mined_l1, heatmap_mse, integral_l1, movenet_pose_losses, opks_bce,
                                     visibility_ce, visibility_class_weights, visibility_target)
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt
from posecal.training.quality_targets import online_targets
from posecal.inference.scoring import keypoint_confidence, pose_scores


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, cfg: TrainConfig, rewarm_from: int | None = None) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio. After a resume without optimizer state
    (`rewarm_from` = the step resumed at) the scheduled rate ramps up again over resume_warmup_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    lr = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    if rewarm_from is not None and step - rewarm_from < cfg.resume_warmup_steps:
        lr *= (step - rewarm_from + 1) / cfg.resume_warmup_steps
    return lr


def validate(model, cfg: TrainConfig, val_records, gt, flip: bool) -> dict:
    """Val AP per pose-score mode; `ap` is the selection metric (the `oks` mode, the default, once heads exist)."""
    preds = predict_records(model, val_records, cfg.model.input_wh, flip=flip, progress=False,
                            batch_size=max(32, cfg.batch_size),
                            device=str(next(model.parameters()).device))
    ids = [r.image_id for r in val_records] if cfg.max_val_persons else None
    conf = keypoint_confidence(preds)
    metrics = {}
    for mode, scores in pose_scores(preds).items():
        if mode == "mmpose":
            continue
        results = coco_keypoint_results([r.image_id for r in preds.records], preds.keypoints, conf, scores)
        ap = coco_keypoint_ap(gt, results, image_ids=ids)
        metrics.update({k if mode == "heatmap" else f"{k}_{mode}": v for k, v in ap.items()})
    if "ap_oks" in metrics:
        metrics["ap_heatmap"], metrics["ap"] = metrics["ap"], metrics["ap_oks"]
    return metrics


def head_weight(cfg: TrainConfig, epoch: int) -> float:
    """S2 staging: 0 before head_start_epoch, then a linear ramp to 1."""
    if cfg.strategy != "s2" or epoch >= cfg.head_start_epoch + cfg.head_ramp_epochs:
        return 1.0
    if epoch < cfg.head_start_epoch:
        return 0.0
    return (epoch - cfg.head_start_epoch + 1) / (cfg.head_ramp_epochs + 1)


def _set_trainable(modules, trainable: bool) -> None:
    """Weights and BatchNorm statistics of `modules` fixed (trainable False) or training again."""
    for module in modules:
        module.train(trainable)
        for p in module.parameters():
            p.requires_grad_(trainable)


def freeze_pose(model) -> None:
    """S3: backbone and heatmap head fixed (weights and BatchNorm statistics)."""
    _set_trainable((model.backbone, model.heatmap_head), False)


def freeze_trunk(model, frozen: bool = True) -> None:
    """`freeze_trunk`: the feature trunk fixed, the rest of the pose network trains (the CPU-sized fine-tune:
    no gradient flows through the trunk, which holds most of the compute). For MoveNet the trunk is its
    MobileNetV2 and its centre head (the decode's choice of person stays the published one); its FPN and its
    heatmap, offset and regression heads train. For the other families, the backbone. frozen=False: the trunk
    trains again (layer-wise unfreezing, TrainConfig.unfreeze_trunk_at)."""
    parts = (model.backbone.backbone, model.backbone.center_head) if model.is_movenet else (model.backbone,)
    _set_trainable(parts, not frozen)


def trunk_frozen(cfg: TrainConfig, step: int) -> bool:
    return cfg.freeze_trunk and (cfg.unfreeze_trunk_at is None or step < cfg.unfreeze_trunk_at)


def weight_average(model, decay: float):
    """The exponential moving average of the model's weights and BatchNorm statistics (TrainConfig.ema_decay),
    or None when it is off."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def quality_losses(model, out, batch, cfg: TrainConfig, class_weights) -> dict:
    """The quality heads' terms; their targets are the quality of the keypoints as the model decodes them at
    test time (decode_pose_output: DARK on the heatmaps, MoveNet's centre-guided decode for a MoveNet model)."""
    pred_xy, _ = decode_pose_output(out)
    targets = online_targets(pred_xy, batch["keypoints"].cpu(), batch["area"].cpu())
    dev = out.heatmaps.device
    targets.oks, targets.opks, targets.labelled, targets.visibility = (
        t.to(dev) for t in (targets.oks, targets.opks, targets.labelled, targets.visibility))
    class_weights = class_weights.to(dev)
    out = model.forward_heads(out)
    vis_t = visibility_target(targets.visibility, cfg.model.visibility_classes)
    has_labelled = targets.labelled.any(1)
    return {"oks": hard_mined_l1(out.oks[has_labelled], targets.oks[has_labelled], enabled=cfg.hard_mining),
            "opks": opks_bce(out.opks_logits, targets.opks, targets.labelled),
            "vis": visibility_ce(out.vis_logits, vis_t, class_weights, batch.get("visibility_weight"))}


def pose_losses(out, batch, cfg: TrainConfig) -> dict:
    """The pose network's terms: heatmap MSE (summed over every stack of a stacked network: intermediate
    supervision), and the integral L1 on the final heatmaps when lambda_integral > 0; 'pose' combines them
    (the heatmap term's scale unchanged, so lambda_heatmap keeps its meaning)."""
    if out.movenet is not None:
        return movenet_pose_losses(out.movenet, batch["keypoints"], batch["target_weight"],
                                   regress_weight=cfg.lambda_regress, negatives=batch.get("negatives"),
                                   negative_weight=cfg.lambda_negatives)
    heatmaps = out.heatmaps
    hm_loss = sum(heatmap_mse(h, batch["heatmaps"], batch["target_weight"])
                  for h in (heatmaps, *out.intermediate_heatmaps))
    if not cfg.lambda_integral:
        return {"heatmap": hm_loss, "pose": hm_loss}
    target = (batch["keypoints"][..., :2].to(heatmaps.device) + 0.5) / HEATMAP_STRIDE - 0.5  # = input_to_heatmap
    integral = integral_l1(heatmaps, target, batch["target_weight"])
    return {"heatmap": hm_loss, "integral": integral, "pose": hm_loss + cfg.lambda_integral * integral}


def step_losses(model, batch, images, cfg: TrainConfig, class_weights, epoch: int) -> dict:
    """Loss terms of one step; 'total' is what is minimised."""
    if not cfg.model.quality_heads:
        terms = pose_losses(model(images), batch, cfg)
        return {"total": terms.pop("pose"), **terms}
    if cfg.strategy == "s3":
        with torch.no_grad():  # the frozen part runs as at test time: flip test, heads read merged heatmaps
            out = model.forward_flip_test(images) if cfg.flip_targets else model.pose_from_crops(images)
        terms = quality_losses(model, out, batch, cfg, class_weights)
        terms["total"] = cfg.lambda_oks * terms["oks"] + cfg.lambda_opks * terms["opks"] + cfg.lambda_vis * terms["vis"]
        return terms
    out = model.pose_from_crops(images)
    pose = pose_losses(out, batch, cfg)
    terms = quality_losses(model, out, batch, cfg, class_weights)
    w = head_weight(cfg, epoch)
    terms.update(pose)
    terms["total"] = cfg.lambda_heatmap * terms.pop("pose") + w * (
        cfg.lambda_oks * terms["oks"] + cfg.lambda_opks * terms["opks"] + cfg.lambda_vis * terms["vis"])
    return terms


class EpochOrder(Sampler):
    """Each epoch's seeded shuffle as (epoch, index) pairs, from position `start` on (an epoch resumed mid-way).

    The order is the one `DataLoader(shuffle=True, generator=Generator().manual_seed(seed * 1000 + epoch))`
    gave before this sampler existed (the loader draws one number for its workers' base seed, then randperm),
    so runs resumed across the change keep their data order. The epoch travels with each index because
    persistent workers hold their own copy of the dataset, which `set_epoch` in the main process does not reach.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        torch.empty((), dtype=torch.int64).random_(generator=gen)
        return torch.randperm(self.n, generator=gen).tolist()

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.order(self.epoch)[self.start:]])

    def __len__(self) -> int:
        return max(0, self.n - self.start)


class _EpochItems(Dataset):
    """Training items by (epoch, index). Image files are checked before training starts (`readable_persons`),
    but one can still fail to decode or vanish mid-run: it is reported once and the next person takes its place,
    so a long run does not die on it."""

    def __init__(self, base: TopDownDataset):
        self.base = base
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, idx = key
        self.base.set_epoch(epoch)
        n = len(self.base)
        for i in ((idx + k) % n for k in range(n)):
            if i in self.unreadable:
                continue
            try:
                return self.base[i]
            except PosecalInputError as e:
                self.unreadable.add(i)
                print(f"skipped: {e}", file=sys.stderr)
        raise PosecalInputError("none of the training images can be read (see the messages above)")


class StepLosses(nn.Module):
    """step_losses as a module, for DistributedDataParallel: its gradient averaging hooks in through the wrapped
    module's forward, and a step runs more than `model.forward` (forward_pose, then the quality heads)."""

    def __init__(self, model, cfg: TrainConfig, class_weights):
        super().__init__()
        self.model, self.cfg, self.class_weights = model, cfg, class_weights

    def forward(self, batch, images, epoch: int) -> dict:
        return step_losses(self.model, batch, images, self.cfg, self.class_weights, epoch)


def make_loader(dataset: TopDownDataset, order: EpochOrder, cfg: TrainConfig, drop_last: bool,
                pin_memory: bool = False) -> DataLoader:
    """The training loader; its workers (if any) persist across epochs."""
    if cfg.num_workers > 0:
        # Many workers: one OpenCV thread each, not a pool each. Set here, before the workers fork, and not in
        # the workers: calling it in a forked child deadlocks once this process has used OpenCV's thread pool.
        cv2.setNumThreads(0)
    return DataLoader(_EpochItems(dataset), batch_size=cfg.batch_size, sampler=order, drop_last=drop_last,
                      num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, pin_memory=pin_memory)


def _device(cfg: TrainConfig, group: Group | None = None) -> torch.device:
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PosecalInputError(f"device: {cfg.device}, but this torch ({torch.__version__}) sees no CUDA GPU")
        torch.backends.cudnn.benchmark = True
        return torch.device(f"cuda:{group.local_rank}" if group else cfg.device)  # a rank: its node's GPU
    raise PosecalInputError(f"device must be cpu or cuda, got {cfg.device!r}")


def _amp(cfg: TrainConfig, device: torch.device):
    """(autocast context factory, GradScaler or None). Autocast runs on CUDA only; on CPU amp is a no-op."""
    if cfg.amp_dtype not in AMP_DTYPES:
        raise PosecalInputError(f"amp_dtype must be one of {AMP_DTYPES}, got {cfg.amp_dtype!r}")
    if not cfg.amp or device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


class GracefulStop:
    """SIGTERM (a scheduler's or `kill`'s stop) asks training to finish its step, save a resumable checkpoint
    (mid-epoch too) and return, instead of dying with up to an epoch of work lost. SIGINT (Ctrl-C) stays an
    immediate KeyboardInterrupt (deferred only while a checkpoint is being written: interrupts_deferred): data-loader
    workers get it too, so going on is not possible; the last complete checkpoint stays, and train() names it."""

    def __init__(self):
        self.requested: str | None = None
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def optimizer_step(loss: torch.Tensor, optim, scaler=None) -> None:
    """One backward + update; through the GradScaler when fp16 autocast needs loss scaling."""
    optim.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()
    else:
        loss.backward()
        optim.step()


def resume_training(model, optim, cfg: TrainConfig, out: Path, scaler=None, ema=None) -> tuple[dict, int | None]:
    """State to go on from: OUT_DIR/last.pt (weights + optimizer, and the weight average when it has one), else
    the committed compact state (weights only: returns the step from which the learning rate re-warms; the
    average starts again from them). Says which on stdout."""
    last = out / "last.pt"
    if last.is_file():
        # weights and plain values only (Trainer.save writes no other kind): a last.pt holding pickled code is
        # refused, not run
        try:
            ckpt = read_torch_file(last, invalid="cannot resume from it")
        except PosecalInputError as e:
            raise PosecalInputError(f"{e}; delete it to start over") from None
        try:
            model.load_state_dict(ckpt["model"])
            optim.load_state_dict(ckpt["optim"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            if ema is not None and ckpt.get("ema"):
                ema.load_state_dict(ckpt["ema"])
            elif ema is not None:        # a run that had no average: it starts from the resumed weights
                ema.module.load_state_dict(model.state_dict())
            state = ckpt["state"]
        except Exception as e:  # a truncated or foreign file: say so in one line, do not train from scratch
            raise PosecalInputError(f"{last}: cannot resume from it ({str(e).splitlines()[0][:120]}); "
                                    "delete it to start over") from None
        print(f"resumed from {last} at epoch {state['epoch']}, step {state['step']}{_where(state)}")
        return state, None
    if cfg.resume_state and (Path(cfg.resume_state) / "state.json").is_file():
        state = load_resume_state(model, cfg.resume_state)
        if ema is not None:
            ema.module.load_state_dict(model.state_dict())
        print(f"resumed from committed state {cfg.resume_state} at epoch {state['epoch']}, step {state['step']}"
              f"{_where(state)} (fresh optimizer, learning rate re-warms over {cfg.resume_warmup_steps} steps)")
        return state, state["step"]
    raise PosecalInputError(f"--resume: nothing to resume from ({last} not found"
                            + (f", no state in {cfg.resume_state})" if cfg.resume_state else ")"))


def _where(state: dict) -> str:
    part = state.get("partial")
    return f" (batch {part['batches']} of epoch {state['epoch'] + 1})" if part else ""


def _load_data(cfg: TrainConfig):
    """(training records, val records, val annotation file)."""
    if cfg.data.packed:
        records = load_packed_persons(cfg.data.packed, pseudo=cfg.data.pseudo_labels)
        val_ann, val_img = (packed_val_paths(cfg.data.packed)
                            or cfg.data.required("val_annotations", "val_images"))   # a pack without val/
        print(f"{len(records)} training persons from the pack {cfg.data.packed}; validation on {val_ann}")
    else:
        train_ann, train_img, val_ann, val_img = cfg.data.required("train_annotations", "train_images",
                                                                   "val_annotations", "val_images")
        records = load_coco_persons(train_ann, train_img)
        if not cfg.data.pseudo_labels:
            pseudo = pseudo_label_ids(train_ann)
            records = [r for r in records if r.ann_id not in pseudo]
        if cfg.data.lspet_annotations:
            lspet = load_lspet(cfg.data.lspet_annotations, cfg.data.lspet_images)
            records += lspet[: len(lspet) - cfg.data.lspet_holdout] if cfg.data.lspet_holdout > 0 else lspet
    if cfg.max_train_persons:
        records = records[: cfg.max_train_persons]
    if not records:
        source = cfg.data.packed or cfg.data.train_annotations
        raise PosecalInputError(f"{source}: no usable person to train on (a person needs labelled keypoints "
                                f"and iscrowd 0); check data.train_annotations")
    val_records = load_coco_persons(val_ann, val_img)
    if cfg.max_val_persons:
        val_records = val_records[: cfg.max_val_persons]
    if not val_records:
        raise PosecalInputError(f"{val_ann}: no usable person to validate on (a person needs labelled keypoints "
                                f"and iscrowd 0); check data.val_annotations")
    records = readable_persons(records, "training")
    val_records = readable_persons(val_records, "validation")
    return records, val_records, val_ann


def _neighbours(cfg: TrainConfig) -> dict | None:
    """The training crops' other labelled people (negatives for lambda_negatives), read from the crop set's
    annotations or from the pack that carries them; None without the term."""
    if not cfg.lambda_negatives:
        return None
    if cfg.data.packed:
        found = packed_neighbours(cfg.data.packed)
    elif cfg.data.train_annotations:
        found = neighbours_by_image(cfg.data.train_annotations, cfg.data.train_images)
    else:
        return None
    print(f"{len(found)} training crops have other labelled people beside them (negatives)")
    return found


def readable_persons(records: list, what: str) -> list:
    """The persons whose image files pass `check_image_file`; one line per reason (per bad file, or per missing
    folder for all the files in it) and a count of the persons left out. A bad file among thousands is the data's
    problem, not a reason to stop (or to crash hours in); when no image can be read for one reason (their folder
    is missing), that reason is the one line of the refusal."""
    bad = unreadable_images(r.image_path for r in records)
    if not bad:
        return records
    kept = [r for r in records if r.image_path not in bad]
    reasons = Counter(bad.values())
    if not kept and len(reasons) == 1:
        raise PosecalInputError(f"{next(iter(reasons))} (none of the {len(records)} {what} persons' images can be "
                                f"read)")
    for reason, n in reasons.items():
        print(f"skipped: {reason}" + (f" ({n} image files)" if n > 1 else ""), file=sys.stderr)
    print(f"{what}: left out {len(records) - len(kept)} of {len(records)} persons "
          f"({len(bad)} unreadable image file(s), listed above)", file=sys.stderr)
    if not kept:
        raise PosecalInputError(f"{what}: none of the {len(records)} persons' images can be read (reasons above)")
    return kept


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the best validation metrics (and `stopped`: True when max_minutes or SIGTERM ended this
    call early, after saving a resumable checkpoint; `stopped_by` says which).
    Files in cfg.out_dir: last.pt, best_model.pt, log.json, config.json. `model`: the trained network; `rank`:
    this process's rank (0 without torchrun; only rank 0's best_ap and log include validation).

    Launched by torchrun, each process is one data-parallel rank: batch_size is per rank, every rank trains on
    its share of each epoch, and rank 0 alone prints, validates and writes files (--resume reads OUT_DIR on
    every rank, so multi-node resuming needs OUT_DIR on shared storage)."""
    on_sigterm = GracefulStop()
    group = None
    saved: dict = {}                      # the last checkpoint this call completed, for the Ctrl-C line
    try:
        if launched_by_torchrun():
            if cfg.sync_batchnorm and not cfg.device.startswith("cuda"):
                raise PosecalInputError("sync_batchnorm: true needs device: cuda (torch syncs BatchNorm on GPUs only)")
            group = start_group("cuda" if cfg.device.startswith("cuda") else "cpu")
        quiet = group is not None and not group.is_main
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull) if quiet else contextlib.nullcontext():
            return TrainingRun(cfg, resume, progress and not quiet, on_sigterm, group, saved).run()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_line(Path(cfg.out_dir), saved)) from None
    finally:
        on_sigterm.restore()
        if group is not None:
            group.close()


def interrupted_line(out: Path, saved: dict) -> str:
    """What Ctrl-C leaves: the checkpoint --resume will go on from (checkpoint writes are atomic and finish
    before the interrupt is taken, so the file named is complete), or that there is none."""
    if saved:
        return (f"interrupted: last complete checkpoint is {saved['path']} (epoch {saved['epoch']}, step "
                f"{saved['step']}); go on with --resume")
    if (out / "last.pt").is_file():
        return f"interrupted: last complete checkpoint is {out / 'last.pt'} (from an earlier run); go on with --resume"
    return f"interrupted before the first checkpoint; nothing to resume in {out}"


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C waits until the block has run (a checkpoint's last.pt, weights.pt and state.json written as one),
    then interrupts as usual. Each file is written atomically anyway (posecal.io.write_atomic); this keeps the
    set consistent, so resume_state's weights never run ahead of its state.json. Main thread only (signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)        # Python's default handler raises KeyboardInterrupt
    elif caught and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


def training_model(cfg: TrainConfig, pretrained: bool = True) -> TopDownEstimator:
    """The model a training of `cfg` starts from, after the checks of its recipe that need no data: built from
    cfg.model (with its shipped pretrained weights unless pretrained=False or init_from is given) and
    initialised from init_from (a shipped model's name or a model file)."""
    if cfg.strategy not in STRATEGIES:
        raise PosecalInputError(f"strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")
    # A MoveNet backbone with its shipped weights is a trained pose network already: S3 needs no init_from.
    trained_pose = cfg.init_from or (cfg.model.backbone in MOVENET_VARIANTS and cfg.model.imagenet)
    if cfg.strategy == "s3" and not (cfg.model.quality_heads and trained_pose):
        raise PosecalInputError("strategy s3 needs model.quality_heads: true and init_from: a trained pose model "
                                "(or a MoveNet backbone with its shipped weights, model.imagenet: true)")
    if cfg.strategy == "s3" and cfg.freeze_trunk:
        raise PosecalInputError("freeze_trunk fine-tunes the pose network's heads, which strategy s3 freezes; "
                                "use strategy s1 with it")
    if cfg.strategy == "s3" and cfg.lambda_integral:
        raise PosecalInputError("lambda_integral trains the pose network, which strategy s3 freezes; set it to 0")
    if cfg.lambda_integral and cfg.model.backbone in MOVENET_VARIANTS:   # else silently unused (pose_losses)
        raise PosecalInputError(f"lambda_integral is an integral loss on heatmaps, which a MoveNet model "
                                f"({cfg.model.backbone}) does not train (it trains with MoveNet's own centre, "
                                f"regression and offset losses); set it to 0")
    model = model_from_config(cfg.model, imagenet=pretrained and cfg.model.imagenet and not cfg.init_from)
    if cfg.init_from:
        load_state_from(model, model_file(cfg.init_from), cfg.model)
    return model


def _class_weights(cfg: TrainConfig, records: list, device: torch.device) -> torch.Tensor:
    """The visibility loss's class weights from the training persons' label counts."""
    counts = np.bincount(np.concatenate([r.keypoints[:, 2].astype(int) for r in records]), minlength=3)[:3]
    if cfg.model.visibility_classes == 2:
        counts = np.array([counts[0], counts[1:].sum()])
    return visibility_class_weights(counts).to(device)


def _placed_model(cfg: TrainConfig, model, device: torch.device, group: Group | None):
    """The model frozen as the strategy says, on its device and memory format; the unfreezing options checked."""
    if cfg.strategy == "s3":
        freeze_pose(model)
    elif cfg.freeze_trunk:
        freeze_trunk(model)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if group is not None and cfg.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # same parameters and state_dict keys
    if cfg.unfreeze_trunk_at is not None and not cfg.freeze_trunk:
        raise PosecalInputError("unfreeze_trunk_at unfreezes the trunk that freeze_trunk fixes; set freeze_trunk: "
                                "true with it")
    if cfg.unfreeze_trunk_at is not None and group is not None:
        raise PosecalInputError("unfreeze_trunk_at: not under torchrun (DDP fixes the trained parameters when it "
                                "starts); run the frozen and the unfrozen parts as two runs with --resume")
    return model


class TrainingRun:
    """One `posecal train` call: set up (data, model, optimizer, resume), then epochs of steps until the schedule,
    max_minutes or a signal ends it; each epoch's end validates (rank 0), keeps best_model.pt and saves last.pt;
    an epoch stopped mid-way is saved with its position and sums so far (`partial`), where --resume goes on."""

    def __init__(self, cfg: TrainConfig, resume: bool, progress: bool, on_sigterm: GracefulStop,
                 group: Group | None, saved: dict | None = None):
        self.t_start = time.time()
        self.cfg, self.progress, self.on_sigterm, self.group, self.saved = cfg, progress, on_sigterm, group, saved
        self.main = group is None or group.is_main     # the process that validates and writes files
        self.out = out = check_output_dir(cfg.out_dir, "out_dir")
        if cfg.resume_state:
            check_output_dir(cfg.resume_state, "resume_state")
        torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.device = device = _device(cfg, group)
        self.autocast, self.scaler = _amp(cfg, device)
        for folder in (out, cfg.resume_state) if self.main else ():
            for tmp in remove_stale_temps(folder):
                print(f"removed {tmp}: a checkpoint write that a killed run left unfinished")
        records, self.val_records, val_ann = _load_data(cfg)
        self.gt = load_coco_gt(val_ann)
        dataset = TopDownDataset(records, cfg.model.input_wh, cfg.augment, cfg.model.sigma, seed=cfg.seed,
                                 neighbours=_neighbours(cfg))
        class_weights = _class_weights(cfg, records, device)
        self.model = model = _placed_model(cfg, training_model(cfg), device, group)
        # a trunk to be unfrozen later is in the optimizer from the start (AdamW skips parameters without gradients)
        params = [p for p in model.parameters() if p.requires_grad or cfg.unfreeze_trunk_at is not None]
        self.optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.order = order = (EpochOrder(len(dataset), cfg.seed) if group is None
                              else DistributedEpochOrder(len(dataset), group, cfg.seed))
        n_crops = len(order)                 # this process's crops per epoch (all of them without torchrun)
        drop_last = n_crops > cfg.batch_size
        self.batches_per_epoch = n_crops // cfg.batch_size if drop_last else 1
        self.total = cfg.epochs * math.ceil(n_crops / cfg.batch_size)
        if cfg.max_steps:
            self.total = min(self.total, cfg.max_steps)
        self.state = {"epoch": 0, "step": 0, "best_ap": -1.0, "log": []}
        self.rewarm_from = None
        self.ema = weight_average(model, cfg.ema_decay)
        if resume:
            self.state, self.rewarm_from = resume_training(model, self.optim, cfg, out, self.scaler, self.ema)
        if self.main:
            write_json_atomic(to_dict(cfg), out / "config.json", indent=2)
        if group is None:
            def step(batch, images, epoch):
                return step_losses(model, batch, images, cfg, class_weights, epoch)
            self.step_losses = step
        else:  # wrapped after resuming: DDP starts by giving every rank rank 0's weights
            self.step_losses = DistributedDataParallel(StepLosses(model, cfg, class_weights))
        self.loader = make_loader(dataset, order, cfg, drop_last, pin_memory=device.type == "cuda")
        self.deadline = self.t_start + cfg.max_minutes * 60 if cfg.max_minutes is not None else None
        self.stopped = None                   # what ended this call early: "max_minutes" or the signal's name

    def run(self) -> dict:
        state, cfg = self.state, self.cfg
        while state["epoch"] < cfg.epochs and state["step"] < self.total and not self.stopped:
            part = self.train_epoch()
            if part is None:                  # stopped mid-epoch: saved with its position
                break
            self.end_epoch(part)
        return {"best_ap": state["best_ap"], "log": state["log"], "stopped": self.stopped is not None,
                "stopped_by": self.stopped, "epoch": state["epoch"], "step": state["step"],
                "model": served(self.model, self.ema), "rank": self.group.rank if self.group else 0}

    def save(self) -> None:
        if not self.main:
            return
        # state and config as plain values (no numpy scalars): the file loads with weights_only=True, as any
        # command's --model reads it
        ckpt = {"model": self.model.state_dict(), "optim": self.optim.state_dict(), "state": plain(self.state),
                "config": plain(to_dict(self.cfg))}
        if self.ema is not None:
            ckpt["ema"] = self.ema.state_dict()
        if self.scaler is not None:
            ckpt["scaler"] = self.scaler.state_dict()
        with interrupts_deferred():
            atomic_save(ckpt, self.out / "last.pt")
            if self.cfg.resume_state:
                save_resume_state(self.model, self.cfg.model, self.state, self.cfg.resume_state)
            if self.saved is not None:
                self.saved.update(path=self.out / "last.pt", epoch=self.state["epoch"], step=self.state["step"])

    def _set_freezing(self) -> None:
        cfg, model = self.cfg, self.model
        model.train()
        if cfg.strategy == "s3":
            freeze_pose(model)
        elif trunk_frozen(cfg, self.state["step"]):
            freeze_trunk(model)
        elif cfg.freeze_trunk:           # past unfreeze_trunk_at (a run resumed there too)
            freeze_trunk(model, frozen=False)

    def train_epoch(self) -> dict | None:
        """The epoch's batches (from where a stopped epoch left off, with its sums so far); its sums, or None
        when this call stopped mid-epoch (then saved, `partial` in the state)."""
        cfg, state = self.cfg, self.state
        epoch = state["epoch"]
        part = state.pop("partial", None) or {"batches": 0, "loss_sum": 0.0, "terms_sum": {}, "seen": 0,
                                                 "train_s": 0.0}
        self.order.set_epoch(epoch, part["batches"] * cfg.batch_size)
        self._set_freezing()
        t0, recent = time.time(), deque(maxlen=50)
        part["terms_sum"] = dict(part["terms_sum"])
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress_shown(self.progress),
                   leave=False)
        for batch in bar:
            if state["step"] >= self.total:
                break
            terms, lr, n = self.train_step(batch, epoch)
            part["batches"] += 1
            for k, v in terms.items():
                part["terms_sum"][k] = part["terms_sum"].get(k, 0.0) + v
            part["loss_sum"] += terms["total"]
            recent.append(terms["total"])
            part["seen"] += n
            bar.set_postfix(loss=f"{np.mean(recent):.4g}", lr=f"{lr:.1e}")
            if self._should_stop():
                break
        part["train_s"] += time.time() - t0
        if self.stopped and part["batches"] < self.batches_per_epoch and state["step"] < self.total:
            state["partial"] = part
            self.save()
            self._say_stopped(epoch, part["batches"])
            return None
        return part

    def train_step(self, batch, epoch: int) -> tuple[dict, float, int]:
        """One optimiser step: (its loss terms as floats, the learning rate, the crops it saw)."""
        cfg, state, device = self.cfg, self.state, self.device
        if cfg.unfreeze_trunk_at is not None and state["step"] == cfg.unfreeze_trunk_at:
            freeze_trunk(self.model, frozen=False)
        lr = lr_at(state["step"], self.total, cfg, self.rewarm_from)
        for g in self.optim.param_groups:
            g["lr"] = lr
        images = batch["image"].to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        batch = {k: v.to(device, non_blocking=True) if k in ("heatmaps", "target_weight", "visibility_weight")
                 else v for k, v in batch.items()}
        with self.autocast():
            terms = self.step_losses(batch, images, epoch)
        optimizer_step(terms["total"], self.optim, self.scaler)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        state["step"] += 1
        return {k: v.item() for k, v in terms.items()}, lr, len(images)

    def _should_stop(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            self.stopped = "max_minutes"
        self.stopped = self.stopped or self.on_sigterm.requested
        if self.group is not None:
            self.stopped = _agreed_stop(self.group, self.stopped, self.device)
        return bool(self.stopped)

    def _say_stopped(self, epoch: int, batches: int) -> None:
        print(json.dumps({"stopped": self.stopped, "epoch": epoch + 1, "batch": batches, "of": self.batches_per_epoch,
                          "step": self.state["step"], "minutes": round((time.time() - self.t_start) / 60, 2)}),
              flush=True)

    def end_epoch(self, part: dict) -> None:
        """Log the epoch, validate it where due (rank 0; best_model.pt when its AP is the best), save last.pt."""
        cfg, state, epoch = self.cfg, self.state, self.state["epoch"]
        state["epoch"] = epoch + 1
        batches, n = part["batches"], max(part["batches"], 1)
        entry = {"epoch": epoch + 1, "step": state["step"], "loss": part["loss_sum"] / n if batches else None,
                 **{f"loss_{k}": v / n for k, v in part["terms_sum"].items() if k != "total"},
                 "crops_per_s": part["seen"] / max(part["train_s"], 1e-9), "train_s": part["train_s"]}
        due = (epoch + 1) % cfg.val_every == 0 or state["epoch"] >= cfg.epochs or state["step"] >= self.total
        if self.main and due:
            t1 = time.time()
            metrics = validate(served(self.model, self.ema), cfg, self.val_records, self.gt, cfg.val_flip)
            entry.update({f"val_{k}": v for k, v in metrics.items()}, val_s=time.time() - t1)
            if metrics["ap"] > state["best_ap"]:
                state["best_ap"] = metrics["ap"]
                save_model(served(self.model, self.ema), cfg.model, self.out / "best_model.pt",
                           meta={"epoch": epoch + 1, "val": metrics, "val_flip": cfg.val_flip})
        state["log"].append(entry)
        print(json.dumps(entry), flush=True)
        self.save()
        if self.main:
            write_json_atomic(state["log"], self.out / "log.json")
        if self.group is not None:
            self.group.barrier()              # the other ranks wait for rank 0's validation and files
        if self.stopped:
            self._say_stopped(epoch, batches)


def served(model, ema):
    """What validation, best_model.pt and the caller get: the averaged weights when ema_decay is on."""
    return model if ema is None else ema.module


def _agreed_stop(group: Group, stopped: str | None, device: torch.device) -> str | None:
    """This rank's reason to stop, or another rank's: all ranks stop after the same step."""
    code = group.agree_on_stop({None: 0, "max_minutes": 1}.get(stopped, 2), device)
    return stopped or {0: None, 1: "max_minutes"}.get(code, "SIGTERM")
