from .mobilenet import MobileNetV3, build_mobilenetv3_backbone, build_mobilenetv3_fpn_backbone

__all__ = ["MobileNetV3", "build_mobilenetv3_backbone", "build_mobilenetv3_fpn_backbone"]
