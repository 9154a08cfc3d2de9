"""TrustNet: pose quality, keypoint quality and visibility of a *base* estimator's keypoints, from the crop.

Why: heads that read only the base network's features inherit its blindness (MoveNet's feature knows nothing of
occlusion or of where the picture ends). The trust model has its own pose network (EfficientNet-Lite0 + heatmap
head, from posecal's `lite0`, trained with truncation, occluders and visibility labels), and for each base keypoint
reads its own features and 17 heatmaps there, how far its own heatmap of that type peaks from it and how high, where
the keypoint lies in the crop, the base model's score where there is one (`has_score`), and the keypoint's type,
plus a summary of the crop. A small MLP per keypoint (shared over types) gives the OPKS and visibility logits; the
pose head pools the keypoints' hidden states into the pose OKS.

Base keypoints arrive in the pixels of the crop passed in (any size; the graph resizes it), so one network serves
MoveNet's crops, square crops of another estimator's boxes (`posecal calibrate --images`) and ONNX export alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from posecal.models.backbones import EfficientNetLite
from posecal.models.config import TRUST_INPUT  # noqa: F401 - re-exported: TrustNet's default input side
from posecal.models.heads import HeatmapHead

TRUST_INPUT_MULTIPLE = 32  # a trust input side must be a multiple of the backbone's stride 32
FEATURE_STRIDE = 4
CONTEXT_CHANNELS = 64


@dataclass
class TrustOutput:
    oks: torch.Tensor           # (N,) predicted pose OKS
    opks_logits: torch.Tensor   # (N, K)
    vis_logits: torch.Tensor    # (N, K, classes)


@dataclass
class TrustLook:
    """What the trust model's own pose network sees in a batch of crops, before any keypoint is judged."""
    feature: torch.Tensor       # (N, C, S/4, S/4) stride-4 feature (S: the model's input_size; 48 at 192)
    heatmaps: torch.Tensor      # (N, K, S/4, S/4) its own heatmaps
    peak: torch.Tensor          # (N, K) each heatmap's peak value
    peak_xy: torch.Tensor       # (N, K, 2) where it peaks, trust-input pixels (edges)
    context: torch.Tensor       # (N, CONTEXT_CHANNELS) summary of the crop
    crop_hw: tuple[int, int]    # the size of the crops judged keypoints are given in


class TrustNet(nn.Module):
    def __init__(self, num_keypoints: int = 17, visibility_classes: int = 3, hidden: int = 192,
                 head_widths=(128, 128, 64), input_size: int = TRUST_INPUT):
        """input_size: the square side the crops are resized to inside the graph (192: the shipped trust models;
        256: MoveNet Thunder's own crops, no resize). The weights do not depend on it, so a model trained at one
        size loads at another; the model config records it (ModelConfig.trust_input)."""
        super().__init__()
        k = num_keypoints
        self.num_keypoints = k
        self.input_size = check_trust_input(input_size)
        self.backbone = EfficientNetLite(0)
        self.heatmap_head = HeatmapHead(self.backbone.PYRAMID_CHANNELS, tuple(head_widths), k)
        c = self.heatmap_head.feature_channels
        self.context = nn.Sequential(nn.Linear(head_widths[0], CONTEXT_CHANNELS), nn.ReLU(inplace=True))
        per_point = c + k + 2 + 3 + 2 + k + CONTEXT_CHANNELS
        self.point_mlp = nn.Sequential(nn.Linear(per_point, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.opks_out = nn.Linear(hidden, 1)
        self.vis_out = nn.Linear(hidden, visibility_classes)
        self.pose_mlp = nn.Sequential(nn.Linear(2 * hidden + CONTEXT_CHANNELS, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, 1))
        self.register_buffer("type_codes", torch.eye(k), persistent=False)

    def train(self, mode: bool = True) -> "TrustNet":
        """BatchNorm statistics stay those of the pose network it starts from: a trust batch is small and
        skewed (augmented crops of one data set), so batch statistics would move them for the worse."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def frozen_prefix(self) -> list[nn.Parameter]:
        """The stem and the blocks up to stride 16: general image features, kept as trained; training the
        stride-32 stage, the heatmap head and the MLPs costs about half of training it all on a CPU."""
        last = self.backbone.PYRAMID_BLOCKS[2]
        mods = [self.backbone._conv_stem, self.backbone._bn0, *self.backbone._blocks[: last + 1]]
        return [p for m in mods for p in m.parameters()]

    def own_pose(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crops at input_size -> (stride-4 feature, heatmaps, stride-16 feature) of its own pose network."""
        f4, f8, f16, f32 = self.backbone.forward_pyramid(crops)
        head = self.heatmap_head
        x16 = head.up16(head.reduce(f32), f16)
        feature = head.up4(head.up8(x16, f8), f4)
        return feature, head.final(feature), x16

    def look(self, images: torch.Tensor) -> TrustLook:
        """Its own look at the crops (posecal-normalised, any size: resized to input_size here), computed once
        and read at any number of keypoint sets by `judge`."""
        h, w = images.shape[-2:]
        side = self.input_size
        if (h, w) != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        feature, heatmaps, x16 = self.own_pose(images)
        hm = heatmaps.flatten(2)                              # (N, K, h*w)
        peak, idx = hm.max(-1)
        mw = heatmaps.shape[-1]
        peak_xy = torch.stack([(idx % mw).float(), torch.div(idx, mw, rounding_mode="floor").float()], -1)
        peak_xy = (peak_xy + 0.5) * FEATURE_STRIDE            # pixel edges of the cell centre
        return TrustLook(feature, heatmaps, peak, peak_xy, self.context(x16.mean((2, 3))), (h, w))

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor | None = None
                ) -> TrustOutput:
        """images (N, 3, H, W): posecal-normalised crops; keypoints (N, K, 2): the base model's keypoints in
        those crops' pixels (integer = pixel centre); scores (N, K): the base model's keypoint scores in [0, 1],
        NaN for a person whose base gives none, or None when none does."""
        return self.judge(self.look(images), keypoints, scores)

    def judge(self, look: TrustLook, keypoints: torch.Tensor, scores: torch.Tensor | None = None) -> TrustOutput:
        """The trust outputs of one keypoint set (crop pixels of the crops `look` saw; scores as in forward)."""
        n, k = keypoints.shape[:2]
        h, w = look.crop_hw
        side = self.input_size
        scale = torch.tensor([side / w, side / h], dtype=keypoints.dtype, device=keypoints.device)
        pts = (keypoints + 0.5) * scale                       # pixel edges, in trust-input pixels
        grid = pts / side * 2 - 1                             # grid_sample's [-1, 1], align_corners=False
        sample = lambda m: F.grid_sample(m, grid[:, :, None, :], mode="bilinear", padding_mode="zeros",  # noqa: E731
                                         align_corners=False)[..., 0].transpose(1, 2)   # (N, K, C)
        feat_at, maps_at = sample(look.feature), sample(look.heatmaps)
        gap = torch.linalg.vector_norm(pts - look.peak_xy, dim=-1, keepdim=True) / side
        inside = ((grid.abs() <= 1).all(-1, keepdim=True)).float()
        if scores is None:
            score_in = torch.zeros(n, k, 2, dtype=pts.dtype, device=pts.device)
        else:
            known = ~torch.isnan(scores)
            s = torch.where(known, scores, torch.full_like(scores, 0.5)).clamp(1e-4, 1 - 1e-4)
            score_in = torch.stack([torch.log(s / (1 - s)), torch.ones_like(s)], -1) * known[..., None].to(pts.dtype)
        ctx = look.context                                    # (N, 64)
        x = torch.cat([feat_at, maps_at, look.peak[..., None], gap, grid.clamp(-2, 2), inside, score_in,
                       self.type_codes[None].expand(n, k, k), ctx[:, None].expand(n, k, ctx.shape[-1])], -1)
        hidden = self.point_mlp(x)
        pooled = torch.cat([hidden.mean(1), hidden.amax(1), ctx], -1)
        oks = torch.sigmoid(self.pose_mlp(pooled)[:, 0])
        return TrustOutput(oks=oks, opks_logits=self.opks_out(hidden)[..., 0], vis_logits=self.vis_out(hidden))


def check_trust_input(side) -> int:
    """A trust input side as an int: positive and a multiple of 32 (ValueError otherwise)."""
    if isinstance(side, bool) or int(side) != side or side <= 0 or int(side) % TRUST_INPUT_MULTIPLE:
        raise ValueError(f"trust input size {side!r}: a positive multiple of {TRUST_INPUT_MULTIPLE} (e.g. 192, 256)")
    return int(side)


def init_from_pose_model(trust: TrustNet, state_dict: dict) -> int:
    """Copy a posecal EfficientNet-Lite0 model's backbone and heatmap head (a model file's state_dict, e.g. the
    shipped `lite0` model's) into the trust model's own pose network. Returns the number of tensors copied."""
    own = trust.state_dict()
    copied = {k: v.float() for k, v in state_dict.items()
              if k.startswith(("backbone.", "heatmap_head.")) and k in own and own[k].shape == v.shape}
    if not copied:
        raise ValueError("no backbone/heatmap_head tensors match the trust model's pose network")
    trust.load_state_dict(copied, strict=False)
    return len(copied)
