from .coco import CXRCOCOEvaluator

__all__ = ["CXRCOCOEvaluator"]
