"""Batched top-down inference on person records: crops -> heatmaps (flip-merged) -> image coordinates."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from posecal.codec.heatmap import decode
from posecal.codec.movenet import decode_crops
from posecal.skeleton import NUM_KEYPOINTS
from posecal.data.coco import PersonRecord
from posecal.calibration.quality import DEFAULT_OCCLUDED_OVER_VISIBLE
from posecal.data.topdown import TopDownDataset, heatmap_to_input
from posecal.data.transforms import apply_affine, invert_affine
from posecal.errors import PosecalInputError
from posecal.models.estimator import TopDownEstimator
from posecal.inference.orientation import keep_best_turn, orientations_for, persons_to_turn


@dataclass
class Predictions:
    """Per-person arrays, aligned with `records` (persons whose image failed are dropped)."""

    records: list[PersonRecord]
    keypoints: np.ndarray        # (N, K, 2) image pixels
    heatmap_scores: np.ndarray   # (N, K) heatmap peak values
    oks: np.ndarray | None = None          # (N,) predicted pose OKS (quality heads only)
    opks: np.ndarray | None = None         # (N, K) predicted OPKS
    visibility_probs: np.ndarray | None = None  # (N, K, classes)
    keypoint_radius: np.ndarray | None = None   # (N, K) conformal radius in image pixels (calibrated models)
    calibrated: bool = False                    # quality outputs went through the model's stored calibration
    heatmaps: np.ndarray | None = None          # (N, K, h, w) flip-merged heatmaps (keep_heatmaps=True only)
    matrices: np.ndarray | None = None          # (N, 2, 3) image -> input-crop affine of each person
    occluded_over_visible: float = DEFAULT_OCCLUDED_OVER_VISIBLE   # the visibility rule's ratio (calibration's)


class _SafeCrops(Dataset):
    """Eval crops; an unreadable image becomes a warning and the others go on."""

    def __init__(self, base: TopDownDataset):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        try:
            item = self.base[i]
            item["valid"] = torch.tensor(True)
        except PosecalInputError as e:
            warnings.warn(f"skipping: {e}", stacklevel=1)
            w, h = self.base.input_wh
            item = {"image": torch.zeros(3, h, w), "matrix": torch.zeros(2, 3, dtype=torch.float64),
                    "index": torch.tensor(i), "valid": torch.tensor(False)}
        return {k: item[k] for k in ("image", "matrix", "index", "valid")}


@torch.no_grad()
def infer_crops(model: TopDownEstimator, images: torch.Tensor, flip: bool = True,
                decode_method: str | None = None, heatmaps: bool = False) -> dict[str, np.ndarray]:
    """Model on a batch of input crops: keypoints in input-crop pixels, heatmap peaks and head outputs
    (and the heatmaps themselves with heatmaps=True). decode_method None: the model's own
    (posecal.models.config.default_decode: MoveNet's centre-guided decode for a MoveNet model, else DARK)."""
    out = model(images, flip_test=flip)
    xy, scores = decode_output(out, decode_method)
    maps = {"heatmaps": out.heatmaps.float().cpu().numpy()} if heatmaps else {}
    return {"xy": xy, "heatmap_scores": scores, **maps, **_head_outputs(out)}


def decode_output(out, decode_method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A model's output -> keypoints (N, K, 2) in input-crop pixels and their heatmap scores (N, K), by the
    model's own decode (None) or the one named; what inference reports and what training scores the quality
    heads' targets on."""
    if decode_method is None:
        decode_method = "movenet" if out.movenet is not None else "dark"
    if decode_method == "movenet":
        return _movenet_decode(out)
    xy_hm, scores = decode(out.heatmaps.detach().float().cpu().numpy(), decode_method)
    return heatmap_to_input(xy_hm), scores


def _movenet_decode(out) -> tuple[np.ndarray, np.ndarray]:
    """MoveNet's own centre-guided decode (posecal.codec.movenet): keypoints in input-crop pixels (posecal's
    convention, integer = pixel centre) and their heatmap scores. With the flip test the raw outputs hold the
    crops and then their mirrors (2N), decoded apart and merged (merge_flip)."""
    if out.movenet is None:
        raise PosecalInputError("--decode movenet needs a MoveNet model (model.backbone movenet_thunder or "
                                "movenet_lightning); use dark, argmax or soft_argmax")
    m, n = out.movenet, out.heatmaps.shape[0]
    with torch.no_grad():
        xy, scores = decode_crops(m.center.detach(), m.regress.detach(), m.heatmap.detach(), m.offset.detach(), n)
    return xy.double().cpu().numpy(), scores.double().cpu().numpy()


@torch.no_grad()
def predict_records(model: TopDownEstimator, records: list[PersonRecord], input_wh, flip: bool = True,
                    batch_size: int = 32, decode_method: str | None = None, num_workers: int = 0,
                    progress: bool = True, device: str = "cpu", calibration=None,
                    orientations: int | str = 1, keep_heatmaps: bool = False) -> Predictions:
    """calibration: a QualityCalibration applied to the quality heads' outputs (None: raw outputs).
    orientations: 1, 4 for test-time orientation search (posecal/inference/orientation.py; 4 forward passes), or
    auto: the extra turns only for the persons whose upright pose quality is low (the extra passes run over
    those records only).
    keep_heatmaps: also return the heatmaps and crop matrices (to read the heatmaps at other points)."""
    model.eval()
    turns = orientations_for(orientations)

    def run(recs, rotation):
        return _predict_pass(model, recs, input_wh, flip, batch_size, decode_method, num_workers, progress, device,
                             rotation, keep_heatmaps)

    kept, res = run(records, turns[0])
    redo = persons_to_turn(orientations, res)
    if len(redo):
        subset = [kept[i] for i in redo]
        res = keep_best_turn(res, [run(subset, rotation)[1] for rotation in turns[1:]], redo)
    k = NUM_KEYPOINTS
    extra = {key: res[key] for key in ("oks", "opks", "visibility_probs") if key in res}
    if calibration is not None and extra:
        extra = calibration.apply(extra["oks"], extra["opks"], extra["visibility_probs"],
                                  np.array([r.bbox for r in kept]).reshape(-1, 4))
        extra |= {"calibrated": True, "occluded_over_visible": calibration.occluded_over_visible}
    if keep_heatmaps and kept:
        extra |= {key: res[key] for key in ("heatmaps", "matrices")}
    return Predictions(kept, res["keypoints"].reshape(-1, k, 2), res["heatmap_scores"].reshape(-1, k), **extra)


def _predict_pass(model, records, input_wh, flip, batch_size, decode_method, num_workers, progress, device,
                  rotation: float, keep_heatmaps: bool = False) -> tuple[list[PersonRecord], dict[str, np.ndarray]]:
    """One pass over the records with crops turned by `rotation`: the persons kept and their per-person arrays
    (keypoints in image pixels, heatmap peaks, and the heads' raw outputs when the model has them)."""
    loader = DataLoader(_SafeCrops(TopDownDataset(records, input_wh, rotation=rotation)), batch_size=batch_size,
                        num_workers=num_workers)
    kept, out = [], {"keypoints": [], "heatmap_scores": [], "oks": [], "opks": [], "visibility_probs": [],
                     "heatmaps": [], "matrices": []}
    desc = "estimating poses" + (f" (turned {rotation:g} degrees)" if rotation else "")
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        valid = batch["valid"].numpy()
        res = infer_crops(model, batch["image"].to(device), flip, decode_method, heatmaps=keep_heatmaps)
        for j, idx in enumerate(batch["index"].numpy()):
            if not valid[j]:
                continue
            kept.append(records[idx])
            out["keypoints"].append(apply_affine(res["xy"][j], invert_affine(batch["matrix"][j].numpy())))
            for key in ("heatmap_scores", "oks", "opks", "visibility_probs"):
                if key in res:
                    out[key].append(res[key][j])
            if keep_heatmaps:
                out["heatmaps"].append(res["heatmaps"][j])
                out["matrices"].append(batch["matrix"][j].numpy())
    k = NUM_KEYPOINTS
    arrays = {key: np.array(v) for key, v in out.items() if v}
    arrays["keypoints"] = np.array(out["keypoints"]).reshape(-1, k, 2)
    arrays["heatmap_scores"] = np.array(out["heatmap_scores"]).reshape(-1, k)
    return kept, arrays


def _head_outputs(out) -> dict[str, np.ndarray]:
    if out.oks is None:
        return {}
    return {"oks": out.oks.float().cpu().numpy(),
            "opks": torch.sigmoid(out.opks_logits).float().cpu().numpy(),
            "visibility_probs": torch.softmax(out.vis_logits, -1).float().cpu().numpy()}
