"""Evaluation: COCO with per-class AP50, and the chest X-ray protocols in one pass."""
from .coco import CXRCOCOEvaluator
from .core import EvalOptions, evaluate_detections
from .cxr_evaluator import CXRDetectionEvaluator

__all__ = ["CXRCOCOEvaluator", "CXRDetectionEvaluator", "EvalOptions", "evaluate_detections"]
