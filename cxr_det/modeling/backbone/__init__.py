from .mobilenet import MobileNetV3, build_mobilenetv3_backbone, build_mobilenetv3_fpn_backbone
from .torchvision_classifier import TorchvisionClassifierBackbone, build_torchvision_classifier_backbone

__all__ = [
    "MobileNetV3",
    "TorchvisionClassifierBackbone",
    "build_mobilenetv3_backbone",
    "build_mobilenetv3_fpn_backbone",
    "build_torchvision_classifier_backbone",
]
