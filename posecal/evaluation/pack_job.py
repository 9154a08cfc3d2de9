"""`posecal pack MODEL OUT`: a model file made ready to ship, callable without the CLI (`run_pack(PackConfig)`).

The weights rounded to fp16 (unless fp32), and, with `calibrate_on` and `images`, the post-hoc calibration
(quality maps, conformal radii) fitted on that labelled set (evaluation/calibrate_model.py), or over the
conditions users meet made from it (`conditions`: as it is, without the flip test, cut by the frame, with
detector-like boxes; evaluation/conditions.py). The maps are fitted on the fp16 weights that ship, so that they
match what users run. With `reported_quality`, the reported-pose map fitted for this model
(tools/fit_reported_quality.py) is carried in the file, keyed by the digest of the weights it ships (a map fitted
for other weights is refused), so the model rates the poses it reports wherever it goes, by name, by path or
exported (calibration/reported.py).
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass

from posecal.calibration.reported import META_KEY as REPORTED_META_KEY
from posecal.calibration.reported import ReportedQuality
from posecal.errors import PosecalInputError
from posecal.io import check_output_file


@dataclass
class PackConfig:
    model: str                       # a model file or a training checkpoint
    out: str                         # the model file written
    fp32: bool = False               # keep fp32 weights
    calibrate_on: str | None = None  # a labelled COCO file the pose network never trained on
    images: str | None = None        # its images
    conditions: bool = False         # calibrate over conditions made from calibrate_on's persons
    reported_quality: str | None = None   # a reported-pose map (tools/fit_reported_quality.py --out) to carry
    threads: int | None = None
    progress: bool = True


def check_pack(cfg: PackConfig) -> None:
    """Every mistake in the settings, one line each, before any work."""
    check_output_file(cfg.out, "OUT")
    if bool(cfg.calibrate_on) != bool(cfg.images):
        raise PosecalInputError("--calibrate-on and --images go together (a labelled COCO file and its images)")
    if cfg.conditions and not cfg.calibrate_on:
        raise PosecalInputError("--conditions calibrates over conditions made from --calibrate-on's persons: give "
                                "--calibrate-on and --images")


def run_pack(cfg: PackConfig, log=print) -> str:
    """Write cfg.out; returns its path. `log` gets the calibration's figures (cross-fitted, before -> after)."""
    from posecal.models.checkpoint import load_model, network_digest, save_model

    check_pack(cfg)
    model, model_cfg, meta = load_model(cfg.model)
    meta = meta | {"packed_from": str(cfg.model)}
    if cfg.reported_quality:   # read (and refused in one line) before any calibration work
        shipped = model if cfg.fp32 else copy.deepcopy(model).half().float()   # the weights the file will hold
        meta[REPORTED_META_KEY] = carried_reported_map(cfg.reported_quality, network_digest(shipped))
    if cfg.calibrate_on:
        meta["calibration"] = _calibration(cfg, model if cfg.fp32 else model.half().float(), model_cfg, log)
    save_model(model, model_cfg, cfg.out, meta=meta, half=not cfg.fp32, share_shipped=True)
    return str(cfg.out)


def carried_reported_map(path: str, network: str) -> dict:
    """A reported-pose map file as the model's meta carries it, keyed by `network` (the digest of the weights the
    packed file holds): a map that names other weights, or an unreadable one, is one line. A map that names none
    (fitted without --model) is taken as fitted for these weights: packing it says so."""
    try:
        found = ReportedQuality.read(path)
    except ValueError as e:
        raise PosecalInputError(str(e)) from None
    if found.weights and found.weights != network:
        raise PosecalInputError(f"{path}: fitted for other weights (network {found.weights}) than the model packed "
                                f"(network {network}); fit it on this model's poses")
    found.weights = network
    return found.to_dict()


def _calibration(cfg: PackConfig, model, model_cfg, log) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.conditions:
        from posecal.evaluation.conditions import calibrate_over_conditions

        with tempfile.TemporaryDirectory(prefix="posecal-cut-") as cut_dir:
            cal, by_condition = calibrate_over_conditions(model, model_cfg, cfg.calibrate_on, cfg.images, cut_dir,
                                                          progress=cfg.progress)
        for name, f in by_condition.items():
            log(f"{name}: {int(f['persons'])} persons, cross-fitted: keypoint ECE {f['keypoint_ece']:.4f}, "
                f"pose ECE {f['pose_ece']:.4f}, pose Pearson {f['pose_pearson']:.3f}, radius coverage "
                f"{f['radius_coverage']:.3f}")
        return cal.to_dict()
    from posecal.evaluation.calibrate_model import calibrate_model

    cal, report = calibrate_model(model, model_cfg, cfg.calibrate_on, cfg.images, progress=cfg.progress)
    before, after = report["raw"], report["cross_fitted"]
    log(f"calibrated on {report['persons']} persons ({report['folds']}-fold cross-fitted, before -> after): "
        + ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before)
        + f"; radius coverage {after['radius_coverage']:.3f} (per keypoint "
          f"{after['radius_coverage_min']:.3f}-{after['radius_coverage_max']:.3f})")
    return cal.to_dict()
