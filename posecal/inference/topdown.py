"""The network step of top-down inference: a batch of input crops -> keypoints in crop pixels, heatmap peaks
and the trust heads' outputs (flip-merged, by the model's own decode); and the per-person arrays
(`Predictions`) that the estimator (posecal/inference/estimator.py) gives for persons given as records."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posecal.codec.heatmap import decode
from posecal.codec.movenet import decode_crops
from posecal.data.coco import PersonRecord
from posecal.calibration.quality import DEFAULT_OCCLUDED_OVER_VISIBLE
from posecal.data.topdown import heatmap_to_input
from posecal.errors import PosecalInputError
from posecal.models.estimator import TopDownEstimator


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
    in_frame: np.ndarray | None = None          # (N, K) p(keypoint inside the picture) (calibrated models)
    people: list | None = None                  # the PersonPose of each record, as `predict` reports them


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


def _head_outputs(out) -> dict[str, np.ndarray]:
    if out.oks is None:
        return {}
    return {"oks": out.oks.float().cpu().numpy(),
            "opks": torch.sigmoid(out.opks_logits).float().cpu().numpy(),
            "visibility_probs": torch.softmax(out.vis_logits, -1).float().cpu().numpy()}
