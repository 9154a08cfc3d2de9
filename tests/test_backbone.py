"""The ImageNet weights are right when the backbone, loaded strictly, recognises real photographs."""
import cv2
import numpy as np
import pytest
import torch

from posecal.models.efficientnet_lite import (IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite0, imagenet_state_dict,
                                              load_imagenet)
from posecal.models.estimator import build_estimator

skimage_data = pytest.importorskip("skimage.data")


def test_every_key_loads_strictly():
    state = imagenet_state_dict()
    model = EfficientNetLite0(with_classifier=True)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(state)


@pytest.mark.parametrize("photo, classes", [("chelsea", {281, 282, 285}),   # tabby / tiger cat / Egyptian cat
                                            ("coffee", {967, 968})])         # espresso / cup
def test_imagenet_weights_classify_real_photos(photo, classes):
    model = EfficientNetLite0(with_classifier=True)
    load_imagenet(model)
    img = cv2.resize(getattr(skimage_data, photo)(), (224, 224)).astype(np.float32) / 255
    x = torch.from_numpy(((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        top1 = int(model.eval().classify(x).argmax())
    assert top1 in classes


def test_estimator_output_shapes_for_odd_input_sizes():
    model = build_estimator(imagenet=False).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 192, 144))
    assert out.heatmaps.shape == (2, 17, 48, 36)
    assert out.feature.shape == (2, 64, 48, 36)
