"""posecal's crops as a network reads them, in numpy: the one pixel normalisation and the crop <-> heatmap grid.

Torch-free, so that inference on onnxruntime needs no PyTorch; posecal.data.topdown wraps them for training.
"""
from __future__ import annotations

import numpy as np

HEATMAP_STRIDE = 4
# posecal's one pixel normalisation of crops (the ImageNet statistics, in units of the 0..1 pixel range). It is
# the data side's: a network trained on another form converts it inside the model
# (posecal.models.input_convention), so this pipeline never needs to know which network it feeds.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32) * 255
_STD = np.array(IMAGENET_STD, dtype=np.float32) * 255


def input_to_heatmap(xy: np.ndarray) -> np.ndarray:
    """Input-crop pixels -> heatmap pixels (pixel edges align at both resolutions)."""
    return (np.asarray(xy) + 0.5) / HEATMAP_STRIDE - 0.5


def heatmap_to_input(xy: np.ndarray) -> np.ndarray:
    return (np.asarray(xy) + 0.5) * HEATMAP_STRIDE - 0.5


def crops_to_batch(crops_bgr: list[np.ndarray]) -> np.ndarray:
    """BGR uint8 crops of one size -> normalised RGB float32 (N, 3, H, W), in one pass over the batch (the
    per-crop conversions and the stacking cost a video frame of 10 people about 10 ms on a CPU)."""
    planes = np.ascontiguousarray(np.stack(crops_bgr)[..., ::-1].transpose(0, 3, 1, 2))   # reordered as bytes
    batch = planes.astype(np.float32)
    batch -= _MEAN[:, None, None]
    batch /= _STD[:, None, None]
    return batch
