"""Training, set-up and run lifecycle: the trainer, ``train_net``'s set-up, strict checkpoints,
self-describing runs, interrupt and resume, and single-image inference."""
from cxr_det.config import get_cxr_cfg

from .checkpoint import CheckpointMismatchError, CXRCheckpointer
from .defaults import DatasetCheckError, argument_parser, check_datasets, class_head_key, setup
from .machine import adapt_to_device, adapt_to_machine
from .interrupt import TrainingInterrupted
from .run import RunConfigError, RunRecord, find_checkpoint, inference_config
from .trainer import Trainer

__all__ = [
    "Trainer",
    "adapt_to_device",
    "adapt_to_machine",
    "argument_parser",
    "check_datasets",
    "class_head_key",
    "get_cxr_cfg",
    "inference_config",
    "find_checkpoint",
    "setup",
    "CheckpointMismatchError",
    "CXRCheckpointer",
    "DatasetCheckError",
    "RunConfigError",
    "RunRecord",
    "TrainingInterrupted",
]
