"""`posecal train-trust CONFIG`: posecal's trust model trained from one YAML config (posecal.training.config.
TrustJobConfig; configs/trust/), in three steps under the config's out_dir, each resumable:
1. samples/: the base model's keypoints on augmented crops of the training persons (trust_samples.write_samples;
   existing shards are kept). base.json records the base's network, so samples of another network are never
   mixed in.
2. train/: the trust model trained on them (trust.train_trust: last.pt every save_every steps and at a
   max_minutes stop, best.pt, log.json).
3. the model file `output`: the base's pose network with the trained trust model (models.assemble.with_trust),
   uncalibrated: `posecal pack OUTPUT PACKED.pt --calibrate-on VAL.json --images DIR --conditions` fits its
   calibration. A shipped model file is never overwritten.
Run it again after a stop and it goes on where it stopped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from posecal.data.coco import load_coco_persons, load_lspet
from posecal.errors import PosecalInputError
from posecal.export.cache import cached_onnx
from posecal.inference.torch_runner import TorchRunner
from posecal.io import check_output_dir, check_output_file, write_json_atomic
from posecal.models.assemble import pose_fingerprint, trust_weights, with_trust
from posecal.models.checkpoint import WEIGHTS_DIR, load_model, model_file, read_model_file, save_model
from posecal.models.config import MOVENET_VARIANTS
from posecal.training.config import TrustJobConfig, to_dict
from posecal.training.trust import train_trust
from posecal.training.trust_samples import lspet_trust_split, write_samples


def check_trust_outputs(path, out_dir) -> tuple[Path, Path]:
    """(the model file to write, the run folder): the file outside posecal's shipped weights folder (refused
    before any folder is made), then the run folder made, then the file's folder writable (it may be the run
    folder: `output: runs/x/model.pt`)."""
    path = Path(path)
    if path.resolve().parent == WEIGHTS_DIR.resolve() or WEIGHTS_DIR.resolve() in path.resolve().parents:
        raise PosecalInputError(f"output {path}: inside posecal's shipped weights ({WEIGHTS_DIR}); write the "
                                "trained model elsewhere (a shipped model file is never overwritten)")
    out = check_output_dir(out_dir, "out_dir")
    return check_output_file(path, "output"), out


def run_trust_job(cfg: TrustJobConfig, progress: bool = True, log=print) -> dict:
    """Samples, training and the model file of `cfg`; returns {"output", "step", "total", "stopped", "log"}
    (stopped: max_minutes ran out before the last step; no model file is written then)."""
    output, out = check_trust_outputs(cfg.output, cfg.out_dir)
    cfg.data.required("train_annotations", "train_images", "val_annotations", "val_images")   # before any work
    torch.set_num_threads(cfg.train.threads)
    base_model, base_cfg, _ = load_model(cfg.base)
    if base_cfg.backbone not in MOVENET_VARIANTS:
        raise PosecalInputError(f"base: the trust model judges a MoveNet model's keypoints; {cfg.base} is a "
                                f"{base_cfg.backbone} model")
    fingerprint = pose_fingerprint(base_model)
    sample_dirs = write_trust_samples(cfg, base_model, base_cfg.input_wh, fingerprint, out / "samples", progress)
    log(f"samples: {', '.join(str(d) for d in sample_dirs)}")
    init_trust = trust_weights(cfg.init) if cfg.init else None
    init_pose = None if cfg.init else read_model_file(model_file(cfg.init_pose))["state_dict"]
    state = train_trust(cfg.train, sample_dirs, out / "samples" / "val", out / "train", init_state=init_pose,
                        log=log, init_trust=init_trust, trained_for=fingerprint)
    if state["total"] == 0:
        raise PosecalInputError(f"train: no training step (fewer samples than train.batch_size "
                                f"{cfg.train.batch_size} x train.epochs {cfg.train.epochs:g})")
    result = {"output": output, "step": state["step"], "total": state["total"], "log": state["log"],
              "stopped": state["step"] < state["total"]}
    if result["stopped"]:
        return result
    trained = out / "train" / "best.pt"
    trained = trained if trained.is_file() else out / "train" / "last.pt"
    model, model_cfg, meta = with_trust(trained, cfg.base)
    save_model(model, model_cfg, output, meta=meta | {"trust_training": to_dict(cfg)})
    return result


def write_trust_samples(cfg: TrustJobConfig, base_model, input_wh, fingerprint: str, folder: Path,
                        progress: bool = True) -> list[Path]:
    """The sample folders of every epoch (epochN, and epochN_noflip for the share decoded without the flip
    test), and val/ (the val persons' plain test-time crops); shards already written are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    recorded = folder / "base.json"
    if recorded.is_file():
        theirs = json.loads(recorded.read_text())["pose_fingerprint"]
        if theirs != fingerprint:
            raise PosecalInputError(f"{folder}: samples of another network's keypoints ({theirs}; {cfg.base} is "
                                    f"{fingerprint}); give a new out_dir")
    else:
        write_json_atomic({"model": str(cfg.base), "pose_fingerprint": fingerprint}, recorded)
    d, s = cfg.data, cfg.samples
    train_ann, train_img, val_ann, val_img = d.required("train_annotations", "train_images", "val_annotations",
                                                        "val_images")
    train = load_coco_persons(train_ann, train_img)[:s.max_train_persons]
    val = load_coco_persons(val_ann, val_img)[:s.max_val_persons]
    lspet = load_lspet(d.lspet_annotations, d.lspet_images) if d.lspet_annotations else []
    lspet_train = lspet_trust_split(len(lspet))[0] if lspet else np.zeros(0, np.int64)

    def base(flip: bool):
        return TorchRunner(base_model) if s.backend == "torch" else cached_onnx(cfg.base, flip=flip, threads=cfg.train.threads)

    def write(records, name: str, augment, seed: int = 0, flip: bool = True) -> Path:
        write_samples(base(flip), records, input_wh, folder / name, augment=augment, seed=seed, batch_size=s.batch_size,
                      num_workers=s.num_workers, progress=progress, flip=flip)
        return folder / name

    if not train or not val:
        raise PosecalInputError(f"data: no {'training' if not train else 'val'} persons to make samples of")
    write(val, "val", augment=None)
    dirs = []
    for epoch in range(s.epochs):
        rng = np.random.default_rng(epoch)
        picked = rng.choice(lspet_train, min(s.lspet_per_epoch, len(lspet_train)), replace=False)
        records = train + [lspet[i] for i in picked]
        records = [records[i] for i in rng.permutation(len(records))]
        cut = int(round(len(records) * (1 - s.no_flip_share)))
        if cut:
            dirs.append(write(records[:cut], f"epoch{epoch}", cfg.augment, seed=100 + epoch))
        if cut < len(records):
            dirs.append(write(records[cut:], f"epoch{epoch}_noflip", cfg.augment, seed=200 + epoch, flip=False))
    return dirs
