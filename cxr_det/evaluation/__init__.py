"""Evaluation: COCO with per-class AP50, and the chest X-ray protocols in one pass."""
from .coco import CXRCOCOEvaluator
from .core import EvalOptions, evaluate_detections
from .cxr_evaluator import CXRDetectionEvaluator, add_cxr_eval_config

__all__ = ["CXRCOCOEvaluator", "CXRDetectionEvaluator", "EvalOptions", "add_cxr_eval_config", "evaluate_detections"]
