"""Training, set-up and run lifecycle: the trainer, ``train_net``'s set-up, strict checkpoints,
self-describing runs, interrupt and resume, and single-image inference.

Modules: ``trainer`` (Trainer), ``evaluators`` (evaluator by the dataset's
``evaluator_type``), ``defaults`` / ``machine`` (set-up), ``checkpoint``, ``run`` (the run
record), ``run_config`` (a trained run's config), ``run_folder`` (checkpoints, one run per
folder), ``hooks`` / ``metric_hooks`` / ``validation_loss`` (training control),
``interrupt``, ``predictor`` / ``inference`` / ``predict_files`` (prediction),
``classification_setup`` / ``classification_predict`` (image classifiers), ``launch``
(multi-process training: detectron2's on GPUs, gloo processes on CPU), ``sweep`` (grids of
runs, locally or as SLURM job arrays through submitit).
"""
from cxr_det.config import get_cxr_cfg

from .checkpoint import CheckpointMismatchError, CXRCheckpointer, UnreadableCheckpointError
from .evaluators import register_evaluator_type
from .defaults import DatasetCheckError, argument_parser, check_datasets, class_head_key, setup
from .machine import adapt_to_device, adapt_to_machine
from .interrupt import TrainingInterrupted
from .launch import launch
from .run import RunConfigError, RunRecord
from .run_config import inference_config
from .run_folder import find_checkpoint
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
    "register_evaluator_type",
    "find_checkpoint",
    "setup",
    "CheckpointMismatchError",
    "CXRCheckpointer",
    "DatasetCheckError",
    "RunConfigError",
    "RunRecord",
    "TrainingInterrupted",
    "UnreadableCheckpointError",
    "launch",
]
