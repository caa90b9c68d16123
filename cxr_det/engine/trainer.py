"""The detectron2 trainer and config set-up for chest X-ray datasets."""
import logging
import os

import torch
from fvcore.nn import parameter_count_table

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import verify_results
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from cxr_det.config import add_cxr_config
from cxr_det.data.clinical.pipeline import CHECKPOINT_KEY, load_featurizer, prepare_clinical
from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.engine.hooks import EarlyStop, add_training_control_hooks
from cxr_det.evaluation import CXRDetectionEvaluator
from cxr_det.modeling.config import fusion_enabled
from cxr_det.modeling.meta_arch import ClinicalFusionMixin

logger = logging.getLogger(__name__)


def get_cxr_cfg(config_file=None, opts=()):
    """A config with cxr_det's keys, merged from ``config_file`` and ``opts``; not frozen."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
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


def setup(args):
    """``train_net``'s set-up: config from ``--config-file`` and opts, logging, dataset
    registration, and (with clinical data) the training split's clinical statistics."""
    cfg = get_cxr_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cxr_det", abbrev_name="cxr")
    register_from_config(cfg)
    check_num_classes(cfg)
    check_fusion_architecture(cfg)
    if cfg.CXR.CLINICAL.ENABLED:
        prepare_clinical(cfg, training=not args.eval_only)
        if comm.is_main_process():
            with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                f.write(cfg.dump())
    cfg.freeze()
    return cfg


def _meta_architecture(cfg):
    """The class ``MODEL.META_ARCHITECTURE`` names in detectron2's registry."""
    return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)


def check_fusion_architecture(cfg):
    """Fail early when ``CXR.FUSION`` asks for fusion from a meta-architecture that has none
    (it would otherwise be ignored silently and an image-only model trained)."""
    if fusion_enabled(cfg) and not issubclass(_meta_architecture(cfg), ClinicalFusionMixin):
        raise ValueError(
            f"CXR.FUSION is set (SPATIAL {cfg.CXR.FUSION.SPATIAL!r}, ROI {cfg.CXR.FUSION.ROI}) but "
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} does not fuse clinical data; "
            "use ClinicalGeneralizedRCNN or ClinicalRetinaNet"
        )


def class_head_key(cfg) -> str:
    """The config node holding the model's ``NUM_CLASSES``: ``"RETINANET"`` for RetinaNet and its
    subclasses, else ``"ROI_HEADS"``."""
    return "RETINANET" if issubclass(_meta_architecture(cfg), RetinaNet) else "ROI_HEADS"


def check_num_classes(cfg):
    """Fail early when the model's class count differs from the datasets' class list."""
    head = class_head_key(cfg)
    expected = cfg.MODEL[head].NUM_CLASSES
    for name in tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != expected:
            raise ValueError(
                f"MODEL.{head}.NUM_CLASSES is {expected} but dataset {name} has {len(classes)} classes "
                f"{list(classes)}; set MODEL.{head}.NUM_CLASSES {len(classes)}"
            )


class Trainer(DefaultTrainer):
    """DefaultTrainer with the chest X-ray mapper (PNG/JPEG/DICOM, albumentations) and the
    chest X-ray evaluator (COCO, VinBigData, IoBB, FROC, image-level; ``TEST.CXR_EVAL``)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.CXR.CLINICAL.ENABLED:
            # The statistics travel in every checkpoint, next to the weights they belong to.
            self.checkpointer.checkpointables[CHECKPOINT_KEY] = load_featurizer(cfg)

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        logger.info("Parameters per module:\n" + parameter_count_table(model, max_depth=3))
        return model

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return CXRDetectionEvaluator(dataset_name, cfg=cfg, output_dir=output_folder)

    def build_hooks(self):
        """detectron2's hooks plus validation loss, best checkpoint, plateau LR, early stop, curves."""
        cfg = self.cfg

        def val_loader():  # keeps annotations; test-time resize, no random augmentation
            mapper = CXRDatasetMapper(
                cfg, is_train=True, augmentations=utils.build_augmentation(cfg, is_train=False), albumentations=None
            )
            return build_detection_test_loader(cfg, cfg.DATASETS.TEST[0], mapper=mapper)

        return add_training_control_hooks(super().build_hooks(), cfg, self.checkpointer, val_data_loader=val_loader)

    def train(self):
        try:
            return super().train()
        except EarlyStop as stop:
            logger.info(f"Training stopped early: {stop}")
            if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
                verify_results(self.cfg, self._last_eval_results)
            return getattr(self, "_last_eval_results", None)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=CXRDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=CXRDatasetMapper(cfg, is_train=False))
