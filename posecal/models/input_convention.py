"""The input convention a pose network was trained with, applied inside the model.

posecal's crops reach every model in one form (posecal.data.topdown.to_tensor: RGB, ImageNet mean/std, NCHW).
Networks imported from other code bases were trained on other forms: the reference SimpleBaseline configs feed
BGR with ImageNet mean/std, the stacked hourglass RGB in [0, 1]. Rather than teach the data pipeline about
networks, the model converts posecal's form into its network's own with one per-channel affine map (and a
channel swap), so `forward_pose` sees exactly what the network was trained on.
"""
from __future__ import annotations

import torch
from torch import nn

from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD  # what to_tensor applies

CHANNEL_ORDERS = ("rgb", "bgr")


def is_posecal_convention(channels: str, mean, std) -> bool:
    return channels == "rgb" and tuple(mean) == IMAGENET_MEAN and tuple(std) == IMAGENET_STD


class InputConvention(nn.Module):
    """posecal input x (RGB, (v/255 - IMAGENET_MEAN) / IMAGENET_STD) -> the network's (channels, mean, std).

    With v the 0..255 pixel value of channel c in the network's order, the network expects
    (v/255 - mean[c]) / std[c]; mean and std are in units of 1/255 of the pixel range, as in the reference
    configs. The buffers are not persistent: they follow from the model config, so model files keep their keys.
    """

    def __init__(self, channels: str = "rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if channels not in CHANNEL_ORDERS:
            raise ValueError(f"channel order {channels!r} (expected one of {', '.join(CHANNEL_ORDERS)})")
        order = [2, 1, 0] if channels == "bgr" else [0, 1, 2]
        src_mean = torch.tensor(IMAGENET_MEAN)[order]
        src_std = torch.tensor(IMAGENET_STD)[order]
        mean, std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.channels, self.order = channels, order
        self.register_buffer("scale", (src_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((src_mean - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == "bgr":
            x = x.flip(1)
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
