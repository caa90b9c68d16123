"""Adapting a config to the machine that runs it: no CUDA, no pretrained weights.

Configs in ``configs/`` are written for GPUs and ImageNet-initialised backbones, as
detectron2's are. :func:`adapt_to_machine` lets the same file train and predict on a CPU
machine that cannot download weights; each change is logged once as a warning. Tools that
build a model call it after :func:`cxr_det.config.get_cxr_cfg`; tools that only read data
do not, so they stay quiet about devices.
"""
import logging

import torch

from cxr_det.modeling.scratch import adapt_for_scratch

__all__ = ["adapt_to_device", "adapt_to_machine"]

logger = logging.getLogger(__name__)


def adapt_to_device(cfg):
    """Run a GPU config on a machine without CUDA: ``MODEL.DEVICE`` cpu, AMP off (it asserts
    CUDA). Changes ``cfg`` in place and returns it."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but CUDA is not available: using cpu")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        logger.warning("SOLVER.AMP.ENABLED needs CUDA; mixed precision turned off on cpu")
        cfg.SOLVER.AMP.ENABLED = False
    return cfg


def adapt_to_machine(cfg):
    """:func:`cxr_det.modeling.scratch.adapt_for_scratch` (no pretrained weights: a ResNet that
    trains from scratch, one warning), then :func:`adapt_to_device`. Changes ``cfg`` in place
    and returns it."""
    adapt_for_scratch(cfg)
    return adapt_to_device(cfg)
