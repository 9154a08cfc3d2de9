"""The network step of top-down inference: a batch of input crops -> keypoints in crop pixels, heatmap peaks
and the trust heads' outputs (flip-merged, by the model's own decode); and the per-person arrays
(`Predictions`) that the estimator (posecal/inference/estimator.py) gives for persons given as records.
numpy only: the network is a runner (onnxruntime, or PyTorch through posecal/inference/torch_runner.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecal.codec.heatmap import DECODE_METHODS, decode
from posecal.data.coco import PersonRecord
from posecal.calibration.quality import DEFAULT_OCCLUDED_OVER_VISIBLE
from posecal.data.crops import heatmap_to_input
from posecal.errors import PosecalInputError
from posecal.models.outputs import HEATMAP_OUTPUT, MOVENET_OUTPUTS, REFINE_INPUTS

# a look's arrays that its refinement reads (REFINE_INPUTS), kept beside the look's own results under this prefix
REFINE_KEY = "refine:"

DECODES = DECODE_METHODS + ("movenet",)   # a heatmap decode, or MoveNet's centre-guided one (decode_outputs)


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
    occluded_over_visible: float = DEFAULT_OCCLUDED_OVER_VISIBLE   # the visibility rule's ratio (calibration's)
    in_frame: np.ndarray | None = None          # (N, K) p(keypoint inside the picture) (calibrated models)
    people: list | None = None                  # the PersonPose of each record, as `predict` reports them


def infer_crops(runner, batch: np.ndarray, flip: bool = True, decode_method: str | None = None
                ) -> dict[str, np.ndarray]:
    """A runner (an onnxruntime graph, or the PyTorch runner of a model file) on a batch of input crops
    (crops_to_batch): keypoints in input-crop pixels, heatmap peaks and head outputs. decode_method None: the
    model's own (MoveNet's centre-guided decode for a MoveNet model, else DARK)."""
    outs = runner.outputs(batch, flip)
    xy, scores = decode_outputs(outs, decode_method)
    return {"xy": xy, "heatmap_scores": scores, **head_outputs(outs)}


def look_crops(runner, batch: np.ndarray, decode_method: str | None = None) -> dict[str, np.ndarray]:
    """A staged crop's look (posecal.models.estimator.look_outputs: one pose pass, the trust look and its
    judgement) on a batch of input crops: infer_crops's arrays without the flip test, plus what the refinement
    reads (the crops and the look's outputs named in REFINE_INPUTS), under REFINE_KEY."""
    outs = runner.look(batch)
    xy, scores = decode_outputs(outs, decode_method)
    kept = {REFINE_KEY + name: (batch if name == "images" else outs[name]) for name in REFINE_INPUTS}
    return {"xy": xy, "heatmap_scores": scores, **head_outputs(outs), **kept}


def refine_crops(runner, looked: dict[str, np.ndarray], decode_method: str | None = None) -> dict[str, np.ndarray]:
    """A staged crop's refinement of looks (look_crops's arrays, rows of them): the mirror pass merged and judged
    again from the cached trust look, infer_crops's arrays with the flip test."""
    outs = runner.refine({name: looked[REFINE_KEY + name] for name in REFINE_INPUTS})
    xy, scores = decode_outputs(outs, decode_method)
    return {"xy": xy, "heatmap_scores": scores, **head_outputs(outs)}


def decode_outputs(outs: dict[str, np.ndarray], decode_method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A network's outputs by name -> keypoints (N, K, 2) in input-crop pixels and their heatmap scores (N, K),
    by the model's own decode (None) or the one named; what inference reports and what training scores the
    quality heads' targets on."""
    movenet = MOVENET_OUTPUTS[0] in outs
    if decode_method is None:
        decode_method = "movenet" if movenet else "dark"
    if decode_method == "movenet":
        if not movenet:
            raise PosecalInputError("--decode movenet needs a MoveNet model (model.backbone movenet_thunder or "
                                    "movenet_lightning); use dark, argmax or soft_argmax")
        xy, scores = (outs[name] for name in MOVENET_OUTPUTS)
        return xy.astype(np.float64), scores.astype(np.float64)
    xy_hm, scores = decode(outs[HEATMAP_OUTPUT].astype(np.float32), decode_method)
    return heatmap_to_input(xy_hm), scores


def head_outputs(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trust or quality heads' logits -> predicted OKS, OPKS and visibility probabilities (none without heads)."""
    from scipy.special import expit, softmax   # here, not at the top: `posecal --help` reads this module's names

    if "oks" not in outs:
        return {}
    return {"oks": outs["oks"].astype(np.float32), "opks": expit(outs["opks_logits"].astype(np.float32)),
            "visibility_probs": softmax(outs["vis_logits"].astype(np.float32), -1)}
