"""``train_net``'s set-up, apart from the trainer (as detectron2's ``engine/defaults.py``):
set-up checks everything that can be checked before a model is built.
"""
import argparse
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from cxr_det.config import get_cxr_cfg
from cxr_det.data.clinical.pipeline import prepare_clinical
from cxr_det.data.datasets.builtin import DATASET_FOLDERS, cxr_dataset_names, register_from_config
from cxr_det.data.datasets.common import dataset_root
from cxr_det.engine.classification_setup import (
    classification_records_have_labels,
    is_classifier,
    prepare_classification,
)
from cxr_det.engine.launch import BACKENDS
from cxr_det.engine.machine import adapt_to_machine
from cxr_det.utils.atomic import atomic_write_text
from cxr_det.engine.run_config import inference_config
from cxr_det.engine.run_folder import set_aside_previous_run
from cxr_det.modeling.fusion import fusion_enabled
from cxr_det.modeling.meta_arch import ClinicalFusionMixin

__all__ = [
    "argument_parser",
    "setup",
    "check_datasets",
    "check_num_classes",
    "check_fusion_architecture",
    "class_head_key",
    "DatasetCheckError",
]

logger = logging.getLogger(__name__)


def argument_parser(epilog=None) -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` plus ``--run`` (evaluate a trained run) and
    ``--dist-backend`` (:func:`cxr_det.engine.launch.launch`: with gloo, ``--num-gpus N``
    is N CPU processes per machine)."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        "--dist-backend", default="auto", choices=BACKENDS,
        help="with --num-gpus N > 1 or --num-machines > 1: nccl (one process per GPU), gloo (N processes per "
        "machine; CPU training), auto (nccl where CUDA is available, else gloo)",
    )
    parser.add_argument(
        "--run", default="", metavar="OUTPUT_DIR|CHECKPOINT",
        help="with --eval-only: the training run (its folder or a .pth) to evaluate; the model is built from "
        "the config recorded in the checkpoint (--config-file optional; KEY VALUE overrides allowed)",
    )
    return parser


def setup(args):
    """``train_net``'s set-up, everything that can fail before a model is built.

    Training: the config from ``--config-file`` and opts; an earlier run's files in
    ``OUTPUT_DIR`` set aside unless ``--resume``; logging; datasets registered and checked;
    clinical statistics fitted on ``DATASETS.TRAIN``; ``OUTPUT_DIR/config.yaml`` written.
    ``--eval-only``: the config from the run (``--run``, or ``MODEL.WEIGHTS``; see
    :func:`cxr_det.engine.run_config.inference_config`); its logs and config record go to
    ``OUTPUT_DIR/inference/`` so the training run's ``config.yaml`` stays as it was.

    With several processes call it in each: process 0 sets the earlier run aside, fits the
    clinical statistics and writes the files; the others wait for it where they need its
    files and use the same statistics.

    Raises:
        RunConfigError, DatasetCheckError, ValueError: with the key, name or path at fault.
    """
    run = getattr(args, "run", "")
    user_keys = [str(k) for k in list(args.opts)[0::2]]
    if args.eval_only:
        cfg = inference_config(run, args.config_file, args.opts)
        if run and "OUTPUT_DIR" not in user_keys:
            cfg.OUTPUT_DIR = run if os.path.isdir(run) else os.path.dirname(os.path.abspath(run))
    else:
        if run:
            raise ValueError("--run is for --eval-only; to continue a training run use --resume with its config")
        cfg = adapt_to_machine(get_cxr_cfg(args.config_file, args.opts))
    moved = None
    if not args.eval_only and not args.resume:
        if comm.is_main_process():
            moved = set_aside_previous_run(cfg.OUTPUT_DIR)
        comm.synchronize()  # the other processes open their logs in OUTPUT_DIR once it is clear
    if args.eval_only:
        record = cfg.clone()
        record.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "inference")
        default_setup(record, args)
        log_dir = record.OUTPUT_DIR
    else:
        default_setup(cfg, args)
        log_dir = cfg.OUTPUT_DIR
    setup_logger(output=log_dir, distributed_rank=comm.get_rank(), name="cxr_det", abbrev_name="cxr")
    if moved:
        logging.getLogger(__name__).warning(
            f"OUTPUT_DIR {cfg.OUTPUT_DIR} held an earlier run; its files were moved to {moved} "
            "(use --resume to continue a run instead)"
        )
    if not args.eval_only and cfg.SOLVER.WARMUP_ITERS >= cfg.SOLVER.MAX_ITER > 0:
        logging.getLogger(__name__).warning(
            f"SOLVER.WARMUP_ITERS {cfg.SOLVER.WARMUP_ITERS} >= SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: the learning "
            f"rate never reaches SOLVER.BASE_LR {cfg.SOLVER.BASE_LR}")
    register_from_config(cfg)
    check_datasets(cfg, training=not args.eval_only)
    if is_classifier(cfg):
        prepare_classification(cfg, training=not args.eval_only)
    else:
        check_num_classes(cfg)
    check_fusion_architecture(cfg)
    if cfg.CXR.CLINICAL.ENABLED:
        prepare_clinical(cfg, training=not args.eval_only)
    if comm.is_main_process():
        atomic_write_text(os.path.join(log_dir, "config.yaml"), cfg.dump())
    cfg.freeze()
    return cfg


class DatasetCheckError(ValueError):
    """A dataset named in ``DATASETS`` is unknown, has no files, or cannot be used as asked."""


def _root_hint(cfg) -> str:
    root = dataset_root(cfg.CXR.DATASET_ROOT or None)
    how = (
        "CXR.DATASET_ROOT" if cfg.CXR.DATASET_ROOT else
        "$CXR_DATASETS" if os.environ.get("CXR_DATASETS") else "the default ./datasets (no CXR_DATASETS set)"
    )
    return root, how


def check_datasets(cfg, training: bool = True):
    """Check ``DATASETS.TRAIN`` and ``DATASETS.TEST`` before any model is built.

    - every name is registered (unknown names list this project's datasets); evaluation
      (``training`` False) needs only ``DATASETS.TEST``;
    - cxr_det datasets have their dataset root (``CXR.DATASET_ROOT`` / ``$CXR_DATASETS`` /
      ``./datasets``) and the dataset's folder in it;
    - every test set loads and has labels (ground-truth annotations) to evaluate against.

    Raises:
        DatasetCheckError: naming the dataset, the root and what it must contain.
    """
    names = (list(cfg.DATASETS.TRAIN) if training else []) + list(cfg.DATASETS.TEST)
    ours = cxr_dataset_names()
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise DatasetCheckError(
                f"dataset {name!r} (in DATASETS.{'TRAIN' if name in cfg.DATASETS.TRAIN else 'TEST'}) is not registered. "
                f"cxr_det's datasets: {', '.join(ours)}; others ({len(registered) - len(ours)} names, e.g. detectron2's "
                "COCO/LVIS) are in detectron2.data.DatasetCatalog.list()"
            )
    root, how = _root_hint(cfg)
    for name in names:
        family = MetadataCatalog.get(name).get("dataset")
        if name not in ours or family not in DATASET_FOLDERS:
            continue
        if not root.is_dir():
            raise DatasetCheckError(
                f"dataset root {root} (from {how}) does not exist. It must hold the datasets as shipped: "
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in DATASET_FOLDERS.items())
                + " (see datasets/README.md)"
            )
        if not any((root / folder).is_dir() for folder in DATASET_FOLDERS[family]):
            nested = sorted(str(p.parent) for folder in DATASET_FOLDERS[family] for p in root.glob(f"*/{folder}"))
            hint = f"; did you mean CXR_DATASETS={nested[0]}?" if nested else ""
            raise DatasetCheckError(
                f"dataset {name}: {root} (from {how}) has no {' or '.join(DATASET_FOLDERS[family])} folder; "
                f"it holds {sorted(p.name for p in root.iterdir())[:12]}{hint} (see datasets/README.md)"
            )
    for name in cfg.DATASETS.TEST:
        try:
            records = DatasetCatalog.get(name)
        except Exception as e:  # noqa: BLE001 - reported with the dataset's name, before training
            raise DatasetCheckError(f"DATASETS.TEST {name}: cannot be loaded for evaluation: {e}") from e
        if not records:
            raise DatasetCheckError(f"DATASETS.TEST {name}: holds no images")
        if classification_records_have_labels(records):
            continue
        if not any("annotations" in r for r in records):
            raise DatasetCheckError(
                f"DATASETS.TEST {name}: its {len(records)} images carry no labels (no 'annotations', 'labels' or "
                "'label'), so there is "
                "nothing to evaluate against"
            )


def _meta_architecture(cfg):
    """The class ``MODEL.META_ARCHITECTURE`` names in detectron2's registry."""
    return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)


def check_fusion_architecture(cfg):
    """Fail early when ``CXR.FUSION`` asks for fusion from a meta-architecture that has none
    (it would otherwise be ignored silently and an image-only model trained)."""
    if not fusion_enabled(cfg):
        return
    if is_classifier(cfg):
        if cfg.CXR.FUSION.ROI:
            raise ValueError("CXR.FUSION.ROI fuses into R-CNN box-head features; an image classifier has none: "
                             "use CXR.FUSION.POOLED (concatenation to the pooled features) or SPATIAL")
        return
    if cfg.CXR.FUSION.POOLED:
        raise ValueError(f"CXR.FUSION.POOLED is for image classifiers; {cfg.MODEL.META_ARCHITECTURE} is a detector "
                         "(use CXR.FUSION.ROI or SPATIAL)")
    if not issubclass(_meta_architecture(cfg), ClinicalFusionMixin):
        raise ValueError(
            f"CXR.FUSION is set (SPATIAL {cfg.CXR.FUSION.SPATIAL!r}, ROI {cfg.CXR.FUSION.ROI}) but "
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} does not fuse clinical data; "
            "use ClinicalGeneralizedRCNN, ClinicalRetinaNet or ClinicalImageClassifier"
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
