"""TopDownEstimator = backbone + heads, by plain composition."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posecal.codec.heatmap_torch import flip_back
from posecal.codec.movenet import decode_crops, merge_flip
from posecal.errors import PosecalInputError
from posecal.models.backbones import EfficientNetLite, load_imagenet
from posecal.models.backbones.hourglass import StackedHeatmapsHead, StackedHourglass
from posecal.models.backbones.hrnet import HRNet, FinalLayerHead
from posecal.models.backbones.movenet import MoveNet, MoveNetHeatmaps, MoveNetOutput, load_movenet
from posecal.models.backbones.resnet import DeconvHead, ResNet
from posecal.models.config import MOVENET_VARIANTS, STAGED_VARIANTS
from posecal.models.heads import HeatmapHead, OksHead, OpksHead, VisibilityHead, heatmap_statistics
from posecal.models.outputs import HEAD_OUTPUTS, HEATMAP_OUTPUT, LOOK_CACHE, MOVENET_OUTPUTS
from posecal.models.input_convention import InputConvention, is_posecal_convention
from posecal.models.trust import TrustNet
from posecal.models.trust.network import TrustLook
from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class PoseOutput:
    heatmaps: torch.Tensor                 # (N, K, H/4, W/4)
    feature: torch.Tensor                  # shared pose feature F (N, C, H/4, W/4)
    oks: torch.Tensor | None = None        # (N,) predicted pose OKS
    opks_logits: torch.Tensor | None = None  # (N, K) sigmoid -> predicted OPKS per keypoint
    vis_logits: torch.Tensor | None = None   # (N, K, classes) visibility logits
    intermediate_heatmaps: tuple = ()        # earlier stacks' heatmaps (stacked hourglass), supervised in training
    movenet: MoveNetOutput | None = None     # a MoveNet backbone's raw outputs (for its centre-guided decode;
                                             # with flip test, 2N: the crops', then their mirrors')


def output_names(model: "TopDownEstimator") -> list[str]:
    """The outputs `runtime_outputs` gives for this model, in order."""
    return ([HEATMAP_OUTPUT] + (list(HEAD_OUTPUTS) if model.has_quality_heads else [])
            + (list(MOVENET_OUTPUTS) if model.is_movenet else []))


def runtime_outputs(model: "TopDownEstimator", images: torch.Tensor, flip_test: bool) -> dict[str, torch.Tensor]:
    """The model on posecal crops -> its outputs by name (output_names). One function for the PyTorch backend
    and the ONNX export, so both give the same arrays."""
    return named_outputs(model(images, flip_test=flip_test))


def named_outputs(out: PoseOutput) -> dict[str, torch.Tensor]:
    """A forward pass's outputs by name (posecal.models.outputs): flip-merged heatmaps, the trust or quality
    heads' logits, and a MoveNet model's keypoints by its centre-guided decode (merged over the flip test)."""
    named = {HEATMAP_OUTPUT: out.heatmaps}
    if out.oks is not None:
        named |= dict(zip(HEAD_OUTPUTS, (out.oks, out.opks_logits, out.vis_logits)))
    if out.movenet is not None:
        m = out.movenet
        named |= dict(zip(MOVENET_OUTPUTS, decode_crops(m.center, m.regress, m.heatmap, m.offset,
                                                        out.heatmaps.shape[0])))
    return named


def can_stage(model: "TopDownEstimator") -> bool:
    """A model whose crop can be posed in two stages (look_outputs, then refine_outputs): a MoveNet network judged
    by a trust model, whose own look at the crop does not depend on the keypoints it judges. Whether it is posed so
    is models.config.stages_crops's rule (stages_by_default)."""
    return model.is_movenet and model.trust is not None


def stages_by_default(model: "TopDownEstimator") -> bool:
    """models.config.stages_crops's rule, read off a built model (the PyTorch runner has no config)."""
    return can_stage(model) and model.backbone.config.variant in STAGED_VARIANTS


def look_outputs(model: "TopDownEstimator", images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The look, a staged crop's first stage: one pose pass on the crops (no mirror), the trust model's look and
    its judgement of those keypoints, by name: the no-flip graph's outputs (runtime_outputs(images, False)), plus
    the trust look (LOOK_CACHE) that refine_outputs reuses. Why two stages: the person policy decides who is a
    person on looks, so a candidate it rejects never pays for the mirror pass (posecal/inference/pipeline.py)."""
    out = model.pose_from_crops(images)
    m = out.movenet
    xy, scores = decode_crops(m.center, m.regress, m.heatmap, m.offset, images.shape[0])
    look = model.trust.look(images)
    t = model.trust.judge(look, xy.to(images.dtype), scores.to(images.dtype))
    named = {HEATMAP_OUTPUT: out.heatmaps, **dict(zip(HEAD_OUTPUTS, (t.oks, t.opks_logits, t.vis_logits))),
             **dict(zip(MOVENET_OUTPUTS, (xy, scores)))}
    return named | dict(zip(LOOK_CACHE, (look.feature, look.heatmaps, look.peak, look.peak_xy, look.context)))


def refine_outputs(model: "TopDownEstimator", images: torch.Tensor, heatmaps: torch.Tensor, xy: torch.Tensor,
                   scores: torch.Tensor, *cache: torch.Tensor) -> dict[str, torch.Tensor]:
    """The refinement, a staged crop's second stage: the mirror's pose pass merged with the look's (heatmaps, xy
    and scores as look_outputs gave them) and judged again from the look's cached trust look (LOOK_CACHE, in its
    order): the flip graph's outputs (runtime_outputs(images, True)) for a fraction of its cost."""
    n = images.shape[0]
    mirror = model.pose_from_crops(torch.flip(images, dims=[3]))
    m = mirror.movenet
    xy_m, scores_m = decode_crops(m.center, m.regress, m.heatmap, m.offset, n)
    merged, merged_scores = merge_flip(xy, scores, xy_m, scores_m, m.heatmap.shape[-1] * 4)
    look = TrustLook(*cache, crop_hw=tuple(images.shape[-2:]))
    t = model.trust.judge(look, merged.to(images.dtype), merged_scores.to(images.dtype))
    return {HEATMAP_OUTPUT: 0.5 * (heatmaps + flip_back(mirror.heatmaps)),
            **dict(zip(HEAD_OUTPUTS, (t.oks, t.opks_logits, t.vis_logits))),
            **dict(zip(MOVENET_OUTPUTS, (merged, merged_scores)))}


class TopDownEstimator(nn.Module):
    """Backbone -> heatmap head; the quality heads read F plus the (detached) heatmaps.

    The heatmaps tell the quality heads how peaked each keypoint's evidence is; detaching them keeps the
    quality losses from bending the heatmaps themselves. The heads run at stride 8 (2x2 max-pool of the
    stride-4 map), which keeps their cost a few percent of the pose network's, and also get each keypoint's
    heatmap peak and spread computed at full resolution.
    """

    def __init__(self, backbone: nn.Module, heatmap_head: nn.Module, oks_head: OksHead | None = None,
                 opks_head: OpksHead | None = None, visibility_head: VisibilityHead | None = None,
                 input_convention: InputConvention | None = None, trust: TrustNet | None = None):
        super().__init__()
        self.backbone = backbone
        self.heatmap_head = heatmap_head
        self.oks_head = oks_head
        self.opks_head = opks_head
        self.visibility_head = visibility_head
        self.input_convention = input_convention   # None: the network takes posecal's input as it is
        # The trust model (posecal/models/trust): quality and visibility of the decoded keypoints from its own
        # look at the crop, in place of heads on the pose feature (MoveNet models).
        self.trust = trust

    @property
    def has_quality_heads(self) -> bool:
        return self.oks_head is not None or self.trust is not None

    @property
    def is_movenet(self) -> bool:
        """A MoveNet backbone: its outputs carry the raw centre, regression and offset maps (PoseOutput.movenet)."""
        return isinstance(self.backbone, MoveNet)

    def forward(self, images: torch.Tensor, flip_test: bool = False) -> PoseOutput:
        """images: posecal crops (posecal.data.topdown.to_tensor). flip_test: heatmaps are the mean of the
        crop's and its mirror's (one batch of 2N), and the quality heads read those merged heatmaps, whose peaks
        and spreads also show where the two passes disagree."""
        out = self.forward_flip_test(images) if flip_test else self.pose_from_crops(images)
        if self.trust is not None:
            return self.forward_trust(images, out)
        return self.forward_heads(out) if self.has_quality_heads else out

    def forward_trust(self, images: torch.Tensor, out: PoseOutput) -> PoseOutput:
        """The trust model on the crops and the keypoints as the model reports them (MoveNet's centre-guided
        decode, merged over the flip test), with MoveNet's keypoint scores."""
        m = out.movenet
        xy, scores = decode_crops(m.center.detach(), m.regress.detach(), m.heatmap.detach(), m.offset.detach(),
                                  images.shape[0])
        t = self.trust.judge(self.trust.look(images), xy.to(images.dtype), scores.to(images.dtype))
        out.oks, out.opks_logits, out.vis_logits = t.oks, t.opks_logits, t.vis_logits
        return out

    def forward_flip_test(self, images: torch.Tensor) -> PoseOutput:
        n = images.shape[0]
        both = self.pose_from_crops(torch.cat([images, torch.flip(images, dims=[3])]))
        merged = 0.5 * (both.heatmaps[:n] + flip_back(both.heatmaps[n:]))
        return PoseOutput(heatmaps=merged, feature=both.feature[:n], movenet=both.movenet)

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """posecal crops -> the input convention the pose network was trained with (see input_convention.py)."""
        return images if self.input_convention is None else self.input_convention(images)

    def pose_from_crops(self, images: torch.Tensor) -> PoseOutput:
        """forward_pose on posecal crops (the frozen part in strategy S3)."""
        return self.forward_pose(self.network_input(images))

    def forward_pose(self, x: torch.Tensor) -> PoseOutput:
        """Backbone and heatmap head on the network's own input (NCHW, already in its convention): for an
        imported checkpoint, the tensor the official code feeds its network, giving its heatmaps."""
        pyramid = self.backbone.forward_pyramid(x)
        heatmaps, feature, intermediate = self.heatmap_head(pyramid)
        return PoseOutput(heatmaps=heatmaps, feature=feature, intermediate_heatmaps=intermediate,
                          movenet=pyramid if isinstance(pyramid, MoveNetOutput) else None)

    def forward_heads(self, out: PoseOutput) -> PoseOutput:
        heatmaps = out.heatmaps.detach()
        x = torch.nn.functional.max_pool2d(torch.cat([out.feature, heatmaps], 1), 2)
        stats = heatmap_statistics(heatmaps)
        out.oks = self.oks_head(x, stats)
        out.opks_logits = self.opks_head(x, stats)
        out.vis_logits = self.visibility_head(x, stats)
        return out


# model.backbone -> the family's size parameter. Four explicit tables: each family is built by its own code.
EFFICIENTNET_VARIANTS = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}
RESNET_DEPTHS = {"resnet18": 18, "resnet50": 50, "resnet101": 101, "resnet152": 152}
HRNET_WIDTHS = {"hrnet_w32": 32, "hrnet_w48": 48}
HOURGLASS_STACKS = {"hourglass_2": 2, "hourglass_8": 8}
# MoveNet SinglePose (ported from Google's TF.js graph): a whole COCO-trained pose network, whose input the model
# config fixes (posecal.models.config.network_input).
BACKBONES = (*EFFICIENTNET_VARIANTS, *RESNET_DEPTHS, *HRNET_WIDTHS, *HOURGLASS_STACKS, *MOVENET_VARIANTS)
STRIDE32_BACKBONES = tuple(RESNET_DEPTHS)   # their deconvolutions reach stride 4 only from an exact stride 32


def pose_network(backbone: str, num_keypoints: int, head_widths, imagenet: bool) -> tuple[nn.Module, nn.Module]:
    """(backbone, heatmap head) of the family named by model.backbone."""
    if backbone in EFFICIENTNET_VARIANTS:
        net = EfficientNetLite(EFFICIENTNET_VARIANTS[backbone])
        if imagenet:
            load_imagenet(net)
        return net, HeatmapHead(net.PYRAMID_CHANNELS, tuple(head_widths), num_keypoints)
    if backbone in MOVENET_VARIANTS:
        # `imagenet` means "the backbone's shipped weights": for MoveNet, the whole COCO-trained network
        net = load_movenet(MOVENET_VARIANTS[backbone]).train() if imagenet else MoveNet(MOVENET_VARIANTS[backbone])
        return net, MoveNetHeatmaps(net.config)
    if backbone not in BACKBONES:
        raise PosecalInputError(f"model.backbone: unknown backbone {backbone!r} "
                                f"(expected one of {', '.join(BACKBONES)})")
    if imagenet:
        raise PosecalInputError(f"model.imagenet: posecal ships no ImageNet weights for {backbone}; set "
                                "model.imagenet: false and start from an imported checkpoint "
                                "(posecal import-weights, then init_from) or from scratch")
    if backbone in RESNET_DEPTHS:
        net = ResNet(RESNET_DEPTHS[backbone])
        return net, DeconvHead(net.PYRAMID_CHANNELS[-1], num_keypoints)
    if backbone in HRNET_WIDTHS:
        net = HRNet(HRNET_WIDTHS[backbone])
        return net, FinalLayerHead(net.PYRAMID_CHANNELS[-1], num_keypoints)
    net = StackedHourglass(HOURGLASS_STACKS[backbone], num_keypoints)
    return net, StackedHeatmapsHead(net.PYRAMID_CHANNELS[-1])


def build_estimator(head_widths=(128, 128, 64), num_keypoints: int = 17, imagenet: bool = True,
                    quality_heads: bool = False, visibility_classes: int = 3, head_hidden: int = 256,
                    backbone: str = "efficientnet_lite0", input_channels: str = "rgb",
                    input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD, trust: bool = False) -> TopDownEstimator:
    """head_widths apply to the EfficientNet head only; the other families carry their published heads.
    input_channels/mean/std: the network's input convention (posecal's own needs no conversion).
    trust: the quality outputs come from the trust model (MoveNet backbones only) instead of heads."""
    net, head = pose_network(backbone, num_keypoints, head_widths, imagenet)
    convention = (None if is_posecal_convention(input_channels, input_mean, input_std)
                  else InputConvention(input_channels, input_mean, input_std))
    if not quality_heads:
        return TopDownEstimator(net, head, input_convention=convention)
    if trust:
        if backbone not in MOVENET_VARIANTS:
            raise PosecalInputError(f"model.trust: the trust model reads MoveNet's decoded keypoints; "
                                    f"{backbone} has quality heads of its own (set model.trust: false)")
        return TopDownEstimator(net, head, input_convention=convention,
                                trust=TrustNet(num_keypoints, visibility_classes))
    c, s = head.feature_channels + num_keypoints, 2 * num_keypoints
    return TopDownEstimator(net, head, OksHead(c, head_hidden, s), OpksHead(c, num_keypoints, head_hidden, s),
                            VisibilityHead(c, num_keypoints, visibility_classes, hidden=head_hidden,
                                           stats_features=s), input_convention=convention)
