"""The trust model trained online on a GPU (tools/gpu_trust.py; lab/tools/gpu_train.md, "The trust model on a GPU").
A tool's module, not the package's: only tools/gpu_trust.py and tools/pack_training_data.py --trust use it.

`posecal train-trust` (trust_job.py) stores the base model's keypoints once per augmented crop, because on a CPU
the base costs more than a trust step. On a GPU the frozen base is cheap, so here every batch is augmented anew
by DataLoader workers from packed persons (tools/pack_training_data.py --trust), the base's pose network (frozen,
eval, fp32) gives its keypoints with its own decode (posecal.inference.torch_runner.decode_pose_output), with the flip test
for a share of the batches (no_flip_share as the samples' epochs have it), and the trust model trains on them at
once: its whole network (`train.freeze_prefix: false`: the trunk too, the stem and early blocks at a lower
learning rate), at its own input side (`train.input_size`, 256 = MoveNet Thunder's crops), bf16 autocast,
BatchNorm statistics kept (TrustNet.train). Score dropout, keypoint perturbation, targets and losses are those
of posecal.training.trust (batch_keypoints, trust_losses), and validation is its predict_samples/sample_scores
on the val persons' plain crops (flip test, as trust_job's val samples).

The run stops at `train.max_minutes` counted from its start (setup included), or after `train.epochs` passes
over the packed persons; the cosine learning rate follows whichever of the two is nearer its end, so the run ends annealed however fast
the machine is. OUT_DIR/best.pt is a trust checkpoint in train_trust's format ({"model", "state"} with
`trained_for` and `trust_input`), so `posecal.models.assemble.with_trust(best.pt, "accurate")` builds the model
file; OUT_DIR/log.json is the log. No resume: a run is one device call.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from posecal.data.coco import load_coco_persons, read_json
from posecal.data.packed import INDEX, load_packed_persons, packed_val_paths
from posecal.data.topdown import TopDownDataset
from posecal.data.transforms import AugmentConfig
from posecal.errors import PosecalInputError
from posecal.inference.torch_runner import decode_pose_output, pose_output_arrays
from posecal.io import write_atomic
from posecal.models.assemble import pose_fingerprint, trust_source
from posecal.models.checkpoint import load_model
from posecal.models.config import MOVENET_VARIANTS
from posecal.models.trust.network import TrustNet, TrustOutput, check_trust_input
from posecal.training.config import TrustJobConfig, load_trust_config, to_dict
from posecal.training.train import EpochOrder, _EpochItems
from posecal.training.trust import (POSE_LR_SCALE, _lr, batch_keypoints, predict_samples,
                                    sample_scores, trust_losses, validation_score)
from posecal.training.trust_samples import load_shards, write_samples

# What a pack must say before the trust model trains on its LSPET persons (tools/pack_training_data.py --trust):
# the 1,000 LSPET persons held out for the trust model (trust_samples.lspet_trust_split) are not in it.
TRUST_PACK_KEY = "lspet_trust_heldout"
TRUST_PACK_VALUE = "excluded"

# The val persons again as video shows them (seeded, so every run judges the same crops): the person 40-200 px
# tall, blurred, noisy, compressed, but framed as the plain val crops are. A run that adds video-like samples is
# judged on both (the mean of the two scores chooses best.pt), so it cannot buy video at the photos' cost unseen.
VIDEO_VAL = AugmentConfig(flip_prob=0.0, scale_range=0.0, rotation_prob=0.0, half_body_prob=0.0, color_jitter=0.0,
                          small_prob=0.8, blur_prob=0.5, jpeg_prob=0.7, noise_prob=0.5)
VIDEO_VAL_SEED = 53


@dataclass
class OnlineOptions:
    """How an online run uses the machine (tools/gpu_trust.py's flags). The recipe itself is a `posecal
    train-trust` config (TrustJobConfig; configs/trust/accurate_gpu.yaml), read as follows: base, init, augment
    and train as there (train.epochs: passes over the packed persons, the schedule's length in steps, which
    train.max_minutes may end first; train.save_every: steps between validations); samples.no_flip_share,
    samples.num_workers (augmentation processes) and samples.max_val_persons; data only to pack (the persons come
    from `packed`); out_dir gets best.pt, log.json and val_samples/."""
    packed: str = ".gpu_data/trust"   # the pack: shard_*/ (training persons) and val/ (validation persons)
    device: str = "cuda"
    amp: bool = True                  # bf16 autocast for the trust model (the base runs in fp32, as users run it)
    channels_last: bool = True
    prefetch_factor: int = 2           # batches each worker keeps ready (14 x 2 x 100 MB of shared memory)
    val_batch_size: int = 64
    trunk_lr_scale: float = 0.1       # lr of frozen_prefix()'s parameters (stem, blocks to stride 16), relative
    final_reserve_s: float = 25.0     # training stops this long before max_minutes: last validation and writes
    half_best: bool = True            # best.pt in fp16 (~9 MB instead of ~18: files back from a device <= 16 MiB)
    log_every: int = 25
    video_val: bool = False           # also validate on VIDEO_VAL's crops; best.pt by the mean of both scores


def load_online_config(path) -> TrustJobConfig:
    """A trust config (load_trust_config) whose train.input_size TrustNet takes."""
    cfg = load_trust_config(path)
    try:
        check_trust_input(cfg.train.input_size)
    except ValueError as e:
        raise PosecalInputError(f"{path}: train.input_size: {e}") from None
    return cfg


def check_options(opts: OnlineOptions) -> None:
    if opts.device not in ("cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise PosecalInputError(f"device {opts.device!r}: cpu or cuda")
    if opts.trunk_lr_scale < 0 or opts.log_every < 1 or opts.val_batch_size < 1:
        raise PosecalInputError("trunk_lr_scale >= 0, log_every and val_batch_size >= 1")


class EndlessOrder(Sampler):
    """(epoch, index) pairs, epoch after epoch, each epoch in EpochOrder's seeded shuffle: one loader (and one set
    of workers) serves the whole run, with no stall at epoch ends."""

    def __init__(self, n: int, seed: int):
        self.order = EpochOrder(n, seed)
        self.n = n

    def __iter__(self):
        epoch = 0
        while True:
            yield from ((epoch, i) for i in self.order.order(epoch))
            epoch += 1

    def __len__(self) -> int:
        return self.n * 10 ** 6


def check_trust_pack(folder) -> dict:
    """The info of a pack's shard indices; refused unless every shard with LSPET persons says the trust model's
    held-out LSPET persons were left out (tools/pack_training_data.py --trust)."""
    infos, lspet = [], 0
    for shard in sorted(p for p in Path(folder).glob("shard_*") if p.is_dir()):
        data = read_json(shard / INDEX)
        info = data.get("info", {})
        n = sum(a.get("source") == "lspet" for a in data.get("annotations", []))
        if n and info.get(TRUST_PACK_KEY) != TRUST_PACK_VALUE:
            raise PosecalInputError(f"{shard}: {n} LSPET persons, and its index does not say that the trust "
                                    "model's held-out LSPET persons were left out: pack it with --trust "
                                    "(tools/pack_training_data.py CONFIG --trust, in posecal's source tree)")
        lspet += n
        infos.append(info)
    return {"shards": len(infos), "lspet": lspet, "aspect": infos[0].get("aspect") if infos else None}


def _base_network(spec, device: str):
    """The base MoveNet model as a pose network only (its quality heads or trust model dropped), frozen, eval."""
    model, cfg, _ = load_model(spec)
    if cfg.backbone not in MOVENET_VARIANTS:
        raise PosecalInputError(f"base: the trust model judges a MoveNet model's keypoints; {spec} is a "
                                f"{cfg.backbone} model")
    fingerprint = pose_fingerprint(model)
    model.trust = None
    model.oks_head = model.opks_head = model.visibility_head = None
    for p in model.parameters():
        p.requires_grad = False
    return model.to(device).eval(), cfg, fingerprint


class _BaseOnDevice:
    """The base called as write_samples calls it (CPU crops in), run on the device."""

    def __init__(self, model, device: str, channels_last: bool):
        self.model, self.device, self.channels_last = model, device, channels_last

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, flip_test: bool = False):
        x = images.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x, flip_test=flip_test)

    def outputs(self, batch: np.ndarray, flip: bool) -> dict[str, np.ndarray]:
        """The network's outputs by name on CPU crops, as write_samples asks of every base."""
        return pose_output_arrays(self(torch.from_numpy(batch), flip_test=flip))


def _trust_model(cfg: TrustJobConfig, opts: OnlineOptions, device: str) -> tuple[TrustNet, list]:
    """The trust model (from cfg.init) on the device and its optimizer's parameter groups."""
    try:
        model = TrustNet(input_size=cfg.train.input_size)
    except ValueError as e:
        raise PosecalInputError(f"train.input_size: {e}") from None
    if cfg.init:
        weights, _ = trust_source(cfg.init)   # its input side may differ: the weights do not depend on it
        model.load_state_dict(weights)
    prefix = {id(p) for p in model.frozen_prefix()}
    for p in model.parameters():
        p.requires_grad = not (cfg.train.freeze_prefix and id(p) in prefix)
    pose_ids = {id(p) for m in (model.backbone, model.heatmap_head) for p in m.parameters()}
    groups = {"trunk": [], "pose": [], "heads": []}
    for p in model.parameters():
        if p.requires_grad:
            groups["trunk" if id(p) in prefix else "pose" if id(p) in pose_ids else "heads"].append(p)
    scales = {"trunk": opts.trunk_lr_scale, "pose": POSE_LR_SCALE, "heads": 1.0}
    param_groups = [{"params": ps, "lr_scale": scales[name], "name": name} for name, ps in groups.items() if ps]
    model = model.to(device)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, param_groups


def _float_out(out: TrustOutput) -> TrustOutput:
    return TrustOutput(oks=out.oks.float(), opks_logits=out.opks_logits.float(), vis_logits=out.vis_logits.float())


def train_step(model: TrustNet, base, optim, batch: dict, cfg: TrustJobConfig, opts: OnlineOptions,
               rng: np.random.Generator) -> tuple[dict, bool, float]:
    """One step on a loader batch (CPU tensors: image, keypoints, area, visibility_weight): the base's keypoints
    (flip test with probability 1 - no_flip_share; its own decode), score dropout and perturbation
    (trust.batch_keypoints), the trust model in bf16 autocast, trust_losses in fp32. Returns (losses, flip, the
    seconds the base took, decode included)."""
    tc = cfg.train
    device = next(model.parameters()).device
    t0 = time.time()
    images = batch["image"].to(device, non_blocking=True)
    if opts.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    flip = bool(rng.random() >= cfg.samples.no_flip_share)
    with torch.no_grad():
        xy, scores = decode_pose_output(base(images, flip_test=flip))   # to the CPU: a sync
    base_s = time.time() - t0
    data = {"base_xy": xy, "base_scores": scores, "keypoints": batch["keypoints"].numpy(),
            "area": batch["area"].numpy(), "visibility_weight": batch["visibility_weight"].numpy()}
    pts, s, targets, vis_weight = batch_keypoints(data, np.arange(len(xy)), tc, rng)
    pts, s, vis_weight = (t.to(device, non_blocking=True) for t in (pts, s, vis_weight))
    targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.amp):
        pred = model(images, pts, s)
    losses = trust_losses(_float_out(pred), targets, vis_weight, {"opks": tc.lambda_opks, "vis": tc.lambda_vis,
                                                                  "oks": tc.lambda_oks})
    optim.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optim.step()
    return losses, flip, base_s


def probe_steps(cfg: TrustJobConfig, opts: OnlineOptions, steps: int = 12, warmup: int = 4, log=print) -> dict:
    """The device's speed for this config without data loading: `steps` training steps on random crops with
    random keypoints (after `warmup` untimed ones: cudnn.benchmark, allocator), the model set up as the run sets
    it up (base, init, optimizer). A check that the GPU path works before the run, and its steps/s bound."""
    t0 = time.time()
    o, tc = opts, cfg.train
    check_options(o)
    _cuda_setup(o.device)
    base, base_cfg, fingerprint = _base_network(cfg.base, o.device)
    if o.channels_last:
        base = base.to(memory_format=torch.channels_last)
    model, groups = _trust_model(cfg, o, o.device)
    optim = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay,
                              **({"fused": True} if o.device.startswith("cuda") else {}))
    model.train()
    w, h = base_cfg.input_wh
    gen = np.random.default_rng(0)
    n = tc.batch_size
    kp = np.concatenate([gen.uniform(0, min(w, h), (n, 17, 2)), np.full((n, 17, 1), 2.0)], -1).astype(np.float32)
    batch = {"image": torch.randn(n, 3, h, w), "keypoints": torch.from_numpy(kp),
             "area": torch.full((n,), 0.3 * w * h), "visibility_weight": torch.ones(n, 17)}
    if o.device.startswith("cuda"):
        batch["image"] = batch["image"].pin_memory()
    timed, base_s = 0.0, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(o.device)
            timed = time.time()
            base_s = 0.0
        losses, _, b = train_step(model, base, optim, batch, cfg, o, np.random.default_rng(i))
        base_s += b
    _sync(o.device)
    el = time.time() - timed
    out = {"steps_per_s": round(steps / el, 2), "crops_per_s": round(steps * n / el, 1), "batch_size": n,
           "base_s_per_step": round(base_s / steps, 4), "loss": round(float(losses["loss"].detach()), 4),
           "setup_s": round(timed - t0, 1), "network": fingerprint, "trust_input": tc.input_size}
    if o.device.startswith("cuda"):
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    log(json.dumps({"probe": out}))
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cuda_setup(device: str) -> None:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PosecalInputError("online.device cuda: no CUDA device here (set online.device: cpu)")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def run_online_trust(cfg: TrustJobConfig, opts: OnlineOptions, log=print) -> dict:
    """Train the trust model online (see the module's doc and OnlineOptions); returns the run's summary (also
    in log.json)."""
    t0 = time.time()
    o, tc, sc = opts, cfg.train, cfg.samples
    check_options(o)
    device = o.device
    _cuda_setup(device)
    torch.manual_seed(tc.seed)
    torch.set_num_threads(tc.threads)
    cuda = device.startswith("cuda")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    deadline = t0 + tc.max_minutes * 60 - o.final_reserve_s if tc.max_minutes else math.inf

    pack = check_trust_pack(o.packed)
    records = load_packed_persons(o.packed)
    val_paths = packed_val_paths(o.packed)
    if val_paths is None:
        raise PosecalInputError(f"{o.packed}: no val/ (pack without --no-val): the run validates on it")
    val_records = load_coco_persons(*val_paths)[:sc.max_val_persons]
    steps = max(1, int(tc.epochs * len(records) // tc.batch_size))   # the schedule's length
    base, base_cfg, fingerprint = _base_network(cfg.base, device)
    input_wh = tuple(base_cfg.input_wh)
    if o.channels_last:
        base = base.to(memory_format=torch.channels_last)
    call_base = _BaseOnDevice(base, device, o.channels_last)
    log(f"{len(records)} training persons ({pack['lspet']} LSPET) in {pack['shards']} shards, {len(val_records)} "
        f"val; base {cfg.base} ({base_cfg.backbone} {input_wh[0]}x{input_wh[1]}, network {fingerprint}); "
        f"trust input {tc.input_size}, init {cfg.init}; device {device}"
        + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""))
    if pack["aspect"] not in (None, 1.0):
        log(f"note: the pack's regions have aspect {pack['aspect']} (a square pack: --trust)")

    # the val persons' plain crops with the base's keypoints (flip test), as trust_job's val samples
    if sc.num_workers:
        cv2.setNumThreads(0)   # before any worker forks (see posecal.training.train.make_loader)
    shutil.rmtree(out / "val_samples", ignore_errors=True)   # made anew: the base or the val set may differ
    write_samples(call_base, val_records, input_wh, out / "val_samples", augment=None, batch_size=o.val_batch_size,
                  num_workers=min(sc.num_workers, 8), progress=False, flip=True)
    val = load_shards(out / "val_samples")
    video = None
    if o.video_val:
        shutil.rmtree(out / "video_val_samples", ignore_errors=True)
        write_samples(call_base, val_records, input_wh, out / "video_val_samples", augment=VIDEO_VAL,
                      seed=VIDEO_VAL_SEED, batch_size=o.val_batch_size, num_workers=min(sc.num_workers, 8),
                      progress=False, flip=True)
        video = load_shards(out / "video_val_samples")
    log(f"val samples ready, {time.time() - t0:.0f} s")

    model, groups = _trust_model(cfg, o, device)
    optim = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay,
                              **({"fused": True} if cuda else {}))
    dataset = TopDownDataset(records, input_wh, augment=cfg.augment, seed=tc.seed)
    loader = DataLoader(_EpochItems(dataset), batch_size=tc.batch_size, sampler=EndlessOrder(len(records), tc.seed),
                        drop_last=True, num_workers=sc.num_workers, pin_memory=cuda,
                        persistent_workers=sc.num_workers > 0,
                        **({"prefetch_factor": o.prefetch_factor} if sc.num_workers else {}))

    state = {"step": 0, "best": -1.0, "log": [], "trained_for": fingerprint, "trust_input": tc.input_size,
             "base": str(cfg.base), "init": cfg.init, "online": True}
    history: list[dict] = []
    summary: dict = {}

    def save_best() -> None:
        sd = {k: (v.half() if o.half_best and v.is_floating_point() else v).detach().cpu()
              for k, v in model.state_dict().items()}
        obj = {"model": sd, "state": json.loads(json.dumps(state))}
        write_atomic(out / "best.pt", lambda f: torch.save(obj, f))

    def write_log() -> None:
        doc = {"summary": summary, "val": state["log"], "train": history, "config": to_dict(cfg)}
        write_atomic(out / "log.json", lambda f: f.write(json.dumps(doc, indent=1)), mode="w")
    summary["options"] = to_dict(o)

    def validate() -> None:
        tv = time.time()
        scores = sample_scores(predict_samples(model, val, batch_size=o.val_batch_size), val)
        score = validation_score(scores)
        if video is not None:
            on_video = sample_scores(predict_samples(model, video, batch_size=o.val_batch_size), video)
            scores.update({f"video_{k}": v for k, v in on_video.items()})
            scores["photo_score"] = score
            scores["video_score"] = validation_score(on_video)
            score = (score + scores["video_score"]) / 2
        entry = {"step": state["step"], **{k: round(v, 4) for k, v in scores.items()}, "score": round(score, 4),
                 "minutes": round((time.time() - t0) / 60, 2), "val_s": round(time.time() - tv, 1)}
        state["log"].append(entry)
        if score > state["best"]:
            state["best"] = score
            state["best_step"] = state["step"]
            save_best()
        log(json.dumps(entry))
        write_log()
        model.train()

    validate()   # step 0: the init as it is at this input side (best.pt is never missing)
    model.train()
    it = iter(loader)
    t_train = time.time()
    span = max(1.0, deadline - t_train) if math.isfinite(deadline) else math.inf
    timers = {"wait": 0.0, "base": 0.0, "step": 0.0}
    running: dict[str, float] = {}
    stop_reason = "steps"
    while state["step"] < steps:
        if time.time() >= deadline:
            stop_reason = "max_minutes"
            break
        step = state["step"]
        rng = np.random.default_rng((tc.seed, step))
        ta = time.time()
        batch = next(it)
        tb = time.time()
        progress = max(step / steps, (time.time() - t_train) / span)
        for g in optim.param_groups:
            g["lr"] = _lr(step, steps, tc, progress=progress) * g["lr_scale"]
        losses, flip, base_s = train_step(model, base, optim, batch, cfg, o, rng)
        state["step"] += 1
        timers["wait"] += tb - ta
        timers["base"] += base_s
        timers["step"] += time.time() - tb - base_s
        if state["step"] % o.log_every == 0 or state["step"] == 1:
            vals = {k: float(v.detach()) for k, v in losses.items()}   # a sync: only here
            for k, v in vals.items():
                running[k] = v if k not in running else 0.8 * running[k] + 0.2 * v
            el = time.time() - t_train
            entry = {"step": state["step"], "lr": round(optim.param_groups[-1]["lr"], 7), "flip": flip,
                     **{k: round(v, 4) for k, v in running.items()}, "minutes": round((time.time() - t0) / 60, 2),
                     "crops_per_s": round(state["step"] * tc.batch_size / max(el, 1e-6), 1),
                     **{f"{k}_s": round(v, 1) for k, v in timers.items()}}
            history.append(entry)
            log(json.dumps(entry))
        if state["step"] % tc.save_every == 0:
            validate()
    it = loader = None   # the workers end here, not after the last validation
    if not state["log"] or state["log"][-1]["step"] != state["step"]:
        validate()
    el = time.time() - t_train
    summary.update({"steps": state["step"], "stopped_by": stop_reason, "train_minutes": round(el / 60, 2),
                    "total_minutes": round((time.time() - t0) / 60, 2), "best": state["best"],
                    "best_step": state.get("best_step"), "crops_per_s": round(state["step"] * tc.batch_size
                                                                              / max(el, 1e-6), 1),
                    "schedule_steps": steps, "batch_size": tc.batch_size, "trust_input": tc.input_size, "trained_for": fingerprint,
                    **{f"{k}_s": round(v, 1) for k, v in timers.items()},
                    "persons": len(records), "lspet_persons": pack["lspet"], "val_persons": len(val_records)})
    if cuda:
        summary["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    write_log()
    log(json.dumps({"summary": summary}))
    return summary
