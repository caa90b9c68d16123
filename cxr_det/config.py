"""Config keys of cxr_det, all under ``cfg.CXR`` (see :func:`add_cxr_config`)."""
import logging

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from cxr_det.data.clinical.config import add_clinical_config
from cxr_det.data.datasets.labels import MDF_NET_CLASSES, VINDR_KAGGLE_CLASSES
from cxr_det.evaluation.cxr_evaluator import add_cxr_eval_config


def add_cxr_config(cfg):
    """Add cxr_det's keys to a detectron2 config; call before ``merge_from_file``."""
    _C = cfg
    _C.CXR = CN()
    # Root holding reflacx/, mimic-cxr-jpg/, vindr-cxr/ ... as shipped. Empty: $CXR_DATASETS, else ./datasets.
    _C.CXR.DATASET_ROOT = ""

    _C.CXR.REFLACX = CN()
    # Lesion labels to detect (phase-2/3 names; phase-1 names are mapped). ["all"]: every lesion label.
    _C.CXR.REFLACX.CLASSES = list(MDF_NET_CLASSES)
    # "reading": a record per reading; "pooled": a record per image with every reader's
    # ellipses (MDF-Net); "fused": a record per image, overlapping same-class ellipses merged.
    _C.CXR.REFLACX.READERS = "pooled"
    # In "fused" mode, same-class ellipses of different readings whose boxes overlap by at
    # least this IoU are merged into one.
    _C.CXR.REFLACX.FUSE_IOU = 0.3
    # Keep ellipses whose certainty is at least this: 1 Unlikely, 2 Less likely, 3 Possibly,
    # 4 Suspicious for / Probably, 5 Consistent with; 0 keeps all. Default 0 as MDF-Net (every
    # ellipse, whatever its certainty); the REFLACX authors count >= 3 ("Possibly") as present.
    # Annotations per certainty are logged at the first load of each registered split.
    _C.CXR.REFLACX.MIN_CERTAINTY = 0
    # Drop readings whose eye-tracking data was discarded (their ellipses are valid).
    _C.CXR.REFLACX.DROP_DISCARDED_EYE_TRACKING = False
    # Image source: "jpg" (MIMIC-CXR-JPG), "dicom" (MIMIC-CXR), "auto" (JPG if present, else DICOM).
    _C.CXR.REFLACX.IMAGE_SOURCE = "auto"

    _C.CXR.VINDR = CN()
    # Lesion classes (VinDr class names); default the 14 Kaggle lesion classes.
    _C.CXR.VINDR.CLASSES = list(VINDR_KAGGLE_CLASSES)
    # "all": every radiologist's boxes; "fused": weighted boxes fusion per class of boxes of
    # different radiologists (a radiologist's own boxes are never merged); or one rad_id, e.g.
    # "R9". In every mode exact duplicate rows are dropped and counted.
    _C.CXR.VINDR.READERS = "all"
    # IoU above which boxes of the same class by different radiologists are fused in "fused" mode.
    _C.CXR.VINDR.FUSE_IOU = 0.5
    # Folder written by tools/prepare_vindr.py (8-bit PNGs and their scales); empty: decode the DICOMs.
    _C.CXR.VINDR.IMAGE_CACHE = ""
    # Fraction of the labelled training images held out as "val" (by a hash of image_id).
    _C.CXR.VINDR.VAL_FRACTION = 0.2

    _C.CXR.INPUT = CN()
    # albumentations transforms applied in training after reading the image, before
    # detectron2's augmentations: a list of {"name": <albumentations class>, <kwarg>: value}.
    _C.CXR.INPUT.ALBUMENTATIONS = []
    # How pixel values become 8 bits (cxr_det.data.image_io, docs/images.md), for every image
    # read (training, evaluation, predict.py): "auto" (DICOM VOI LUT / window, else the full
    # stored range; 8-bit images as stored), "minmax" (full range, ignoring the window) or
    # "percentile" (window between PERCENTILES of the values; the only rule that clips).
    _C.CXR.INPUT.SCALING = "auto"
    # Low and high percentiles (0..100) of the "percentile" rule.
    _C.CXR.INPUT.PERCENTILES = [0.5, 99.5]
    # Read DICOMs that lack the preamble / DICM / file meta group (pydicom force=True), with a
    # note in the log; False rejects them (an error naming the file).
    _C.CXR.INPUT.ALLOW_NO_FILE_META = True

    _C.CXR.MOBILENET = CN()
    # torchvision MobileNetV3 variant: "small" or "large".
    _C.CXR.MOBILENET.VARIANT = "small"
    # Load torchvision's ImageNet weights (needs network access to the weights).
    _C.CXR.MOBILENET.PRETRAINED = False
    # Stages returned by build_mobilenetv3_backbone (the FPN builder uses MODEL.FPN.IN_FEATURES).
    _C.CXR.MOBILENET.OUT_FEATURES = ["res3", "res4", "res5"]

    add_clinical_config(cfg)  # cfg.CXR.CLINICAL
    from cxr_det.modeling.config import add_fusion_config  # here: it loads cxr_det.modeling

    add_fusion_config(cfg)  # cfg.CXR.FUSION
    add_cxr_eval_config(cfg)  # cfg.TEST.CXR_EVAL
    from cxr_det.engine.config import add_training_control_config  # here: cxr_det.engine imports this module

    add_training_control_config(cfg)  # cfg.CXR.TRAIN
    return cfg


logger = logging.getLogger(__name__)


def get_cxr_cfg(config_file=None, opts=(), *, builds_model=True):
    """A config with cxr_det's keys, merged from ``config_file`` and ``opts``; not frozen.

    Args:
        config_file: YAML path (``_BASE_`` allowed), or None for the defaults.
        opts: ``[KEY, VALUE, ...]`` overrides, applied after the file.
        builds_model: adapt the config to this machine (:func:`adapt_to_device`) and to
            missing pretrained weights (:func:`cxr_det.modeling.scratch.adapt_for_scratch`). Tools
            that only read data pass False, so they stay quiet about devices.
    """
    cfg = get_cfg()
    add_cxr_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if builds_model:
        from cxr_det.modeling.scratch import adapt_for_scratch  # here, as add_cxr_config: it loads cxr_det.modeling

        adapt_for_scratch(cfg)  # no pretrained weights: a ResNet that trains from scratch (one warning)
        adapt_to_device(cfg)
    return cfg


def adapt_to_device(cfg):
    """Run a GPU config on a machine without CUDA: CPU device, AMP off (it asserts CUDA)."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but CUDA is not available: using cpu")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        logger.warning("SOLVER.AMP.ENABLED needs CUDA; mixed precision turned off on cpu")
        cfg.SOLVER.AMP.ENABLED = False
    return cfg
