"""The person verifier's network: EfficientNet-Lite0 (ImageNet) + features pooled inside the box and in its ring
of context + a small head whose output, after a calibration (a * logit + b fitted on other boxes), is p(person).

posecal/detect/verifier.py makes its inputs and runs the exported graph; tools/train_person_verifier.py trains
the head on the frozen trunk's pooled features and exports the whole.
"""
from __future__ import annotations

import torch
from torch import nn

from posecal.models.backbones import EfficientNetLite, load_imagenet

HEAD_CHANNELS = 1280
FEATURES = 3 * HEAD_CHANNELS        # mean inside the box, mean in the ring, max inside the box
HIDDEN = 128


def pooled_features(fmap: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) features and (N, 1, H, W) box masks (share of each cell in the box) -> (N, 3C)."""
    inside = (fmap * masks).sum((2, 3)) / masks.sum((2, 3)).clamp_min(1e-3)
    ring = 1 - masks
    outside = (fmap * ring).sum((2, 3)) / ring.sum((2, 3)).clamp_min(1e-3)
    peak = (fmap * (masks > 0.25).to(fmap.dtype)).amax((2, 3))
    return torch.cat([inside, outside, peak], 1)


class VerifierHead(nn.Module):
    """Pooled features -> calibrated p(person); `logit` leaves out the calibration (for training)."""

    def __init__(self, features: int = FEATURES, hidden: int = HIDDEN):
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.mlp = nn.Sequential(nn.Dropout(0.2), nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(hidden, 1))
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))   # p = sigmoid(a * logit + b)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(features)).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.calibration[0] * self.logit(features) + self.calibration[1])


class PersonVerifierNet(nn.Module):
    """(crops (N, 3, 192, 128) normalised as posecal's crops, masks (N, 1, 6, 4)) -> (N,) p(person)."""

    def __init__(self, imagenet: bool = True):
        super().__init__()
        self.trunk = EfficientNetLite(0)
        if imagenet:
            load_imagenet(self.trunk)
        self.head = VerifierHead()

    def features(self, crops: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.trunk(crops), masks)

    def forward(self, crops: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(crops, masks))
