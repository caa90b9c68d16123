"""The config that rebuilds a trained run's model, from the record in its checkpoint.

:func:`inference_config` builds the config for ``--eval-only``, ``predict.py``, the
visualizers and the web service from a run folder or a checkpoint, optionally with a
repository config (whose model-defining keys must agree with the run's, and are taken from
it) and ``KEY VALUE`` overrides (an override of a model-defining key that contradicts the
checkpoint is an error). :func:`results_config` does the same for files a run wrote
(``coco_instances_results.json``), refusing a config that reads images in another frame.
"""
import logging
import os
from typing import List, Sequence

from detectron2.config import CfgNode

from cxr_det.config import get_cxr_cfg
from cxr_det.data.datasets.common import DATASET_ROOT_ENV
from cxr_det.engine.machine import adapt_to_device, adapt_to_machine
from cxr_det.engine.run import RunConfigError, RunRecord, find_run_file, read_run_file, read_run_record
from cxr_det.engine.run_folder import find_checkpoint

__all__ = [
    "inference_config",
    "results_config",
    "model_defining_keys",
    "check_image_frame",
    "class_names_of",
]

logger = logging.getLogger(__name__)


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


# Keys of CXR.CLASSIFIER read by training only (the loss, its weights, the starting weights).
CLASSIFIER_TRAINING_KEYS = tuple(f"CXR.CLASSIFIER.{k}" for k in (
    "LOSS", "FOCAL_GAMMA", "FOCAL_ALPHA", "POS_WEIGHT", "POS_WEIGHT_VALUES", "CLASS_WEIGHT",
    "CLASS_WEIGHT_VALUES", "LABEL_SMOOTHING", "TORCHVISION.WEIGHTS"))
# The label sets of the classification datasets (what a classifier's outputs mean).
CLASSIFICATION_LABEL_KEYS = ("CXR.CHEXPERT.LABELS", "CXR.MIMIC_CXR.LABELS", "CXR.VINDR_LABELS.LABELS",
                             "CXR.VINDR_LABELS.TASK", "CXR.IMAGE_FOLDER.CLASSES")


def model_defining_keys(cfg) -> List[str]:
    """Config keys (dotted) that shape the model's parameters or its inputs' meaning.

    They must be equal between training and inference: ``MODEL.*`` except ``MODEL.WEIGHTS``,
    ``MODEL.DEVICE`` and the test-time keys ending in ``_TEST``; ``INPUT.FORMAT``;
    ``CXR.FUSION.*``; ``CXR.MOBILENET.*`` except ``PRETRAINED``; the clinical feature set
    (``CXR.CLINICAL.ENABLED/NUMERIC/CATEGORICAL/CATEGORICAL_SIZES``); the class sets
    (``CXR.REFLACX.CLASSES``, ``CXR.VINDR.CLASSES``, and the label sets of the classification
    datasets); the classifier's ``CXR.CLASSIFIER.*`` except what only training reads (the
    loss and its weights, the pretrained weights to start from: :data:`CLASSIFIER_TRAINING_KEYS`).
    """
    keys = []
    for key in _flatten(cfg):
        if key.startswith("MODEL."):
            if key in ("MODEL.WEIGHTS", "MODEL.DEVICE") or key.endswith("_TEST"):
                continue
            keys.append(key)
        elif key in ("INPUT.FORMAT", "CXR.REFLACX.CLASSES", "CXR.VINDR.CLASSES") or key.startswith("CXR.FUSION."):
            keys.append(key)
        elif key.startswith("CXR.MOBILENET.") and key != "CXR.MOBILENET.PRETRAINED":
            keys.append(key)
        elif key in ("CXR.CLINICAL.ENABLED", "CXR.CLINICAL.NUMERIC", "CXR.CLINICAL.CATEGORICAL",
                     "CXR.CLINICAL.CATEGORICAL_SIZES") or key in CLASSIFICATION_LABEL_KEYS:
            keys.append(key)
        elif key.startswith("CXR.CLASSIFIER.") and key not in CLASSIFIER_TRAINING_KEYS:
            keys.append(key)
    return keys


def _same(a, b) -> bool:
    norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
    return norm(a) == norm(b)


def check_image_frame(cfg, record: RunRecord, source: str):
    """Raise when ``cfg`` reads images in another frame than the run's outputs are in.

    Boxes written by a run (``coco_instances_results.json``) are in the pixels of the images
    its datasets gave: the VinDr PNG cache (``CXR.VINDR.IMAGE_CACHE``) is a scaled frame.

    Raises:
        RunConfigError: naming the key and both values, and the fix.
    """
    frame = record.state.get("image_frame", {})
    recorded = frame.get("vindr_image_cache")
    if recorded is not None and recorded != cfg.CXR.VINDR.IMAGE_CACHE:
        raise RunConfigError(
            f"{source} holds boxes in the frame of CXR.VINDR.IMAGE_CACHE {recorded!r} (the run's), but the images "
            f"would be read with {cfg.CXR.VINDR.IMAGE_CACHE!r}: boxes would be drawn at the wrong scale. "
            f"Pass --run <OUTPUT_DIR> or CXR.VINDR.IMAGE_CACHE {recorded!r}"
        )


def _opts_keys(opts) -> List[str]:
    return [str(k) for k in list(opts)[0::2]]


def inference_config(run: str = "", config_file: str = "", opts: Sequence[str] = ()) -> CfgNode:
    """The config to build a trained model for evaluation or prediction (unfrozen).

    The checkpoint is ``run`` (a run folder or ``.pth``), else ``MODEL.WEIGHTS`` from
    ``opts`` or ``config_file``. With a :class:`RunRecord` in the checkpoint:

    - without ``config_file`` the run's own config is used;
    - with ``config_file`` its keys are used, except the model-defining keys
      (:func:`model_defining_keys`), which are taken from the run (the differences are logged);
    - ``opts`` are applied last; an override of a model-defining key that differs from the
      run's value raises (the weights could not load into that model).

    Checkpoints without a record (written elsewhere) use ``config_file`` and ``opts`` as
    given; strict loading then checks that the model fits. ``MODEL.WEIGHTS`` is set to the
    checkpoint, pretrained-backbone downloads are turned off (``CXR.MOBILENET.PRETRAINED``),
    and the clinical statistics are read from the checkpoint (``CXR.CLINICAL.STATS_FILE``
    cleared unless given in ``opts``).

    Raises:
        RunConfigError: no checkpoint given or found; a contradicting override; a record-less
            checkpoint without ``config_file``.
    """
    opts = [str(o) for o in opts]
    if len(opts) % 2:
        raise RunConfigError(f"config overrides must be KEY VALUE pairs; got an odd number: {opts}")
    user_keys = _opts_keys(opts)
    if run:
        checkpoint = find_checkpoint(run)
        logger.info(f"model weights: {checkpoint}")
    else:
        checkpoint = get_cxr_cfg(config_file or None, opts).MODEL.WEIGHTS
    if not checkpoint:
        raise RunConfigError(
            "no trained weights: give --run OUTPUT_DIR (or a checkpoint .pth), or MODEL.WEIGHTS <checkpoint>. "
            "Prediction or evaluation with a randomly initialised model is refused."
        )
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise RunConfigError(f"MODEL.WEIGHTS {checkpoint}: file not found")
    loading = ["MODEL.WEIGHTS", checkpoint, "CXR.MOBILENET.PRETRAINED", "False"]
    if "CXR.CLINICAL.STATS_FILE" not in user_keys:
        loading += ["CXR.CLINICAL.STATS_FILE", ""]
    record = read_run_record(checkpoint)
    if record is None:
        if not config_file:
            raise RunConfigError(
                f"{checkpoint} carries no run record (written by another tool or an older cxr_det); "
                "give the config it was trained with (--config-file)"
            )
        return adapt_to_machine(get_cxr_cfg(config_file, opts + loading))

    trained = record.config()
    theirs = _flatten(trained)
    model_keys = model_defining_keys(trained)
    if config_file:
        cfg = get_cxr_cfg(config_file)
        ours = _flatten(cfg)
        taken = []
        for key in model_keys:
            if key in ours and not _same(ours[key], theirs[key]):
                taken.append(f"{key}: {ours[key]!r} -> {theirs[key]!r}")
                _set(cfg, key, theirs[key])
        if taken:
            logger.info(f"{len(taken)} model key(s) taken from the run in {checkpoint}: " + "; ".join(taken))
    else:
        cfg = trained
    cfg.merge_from_list(opts)
    mine = _flatten(cfg)
    clashes = [
        f"{key} {mine[key]!r} (the run trained with {theirs[key]!r})"
        for key in model_keys if key in user_keys and not _same(mine[key], theirs[key])
    ]
    if clashes:
        raise RunConfigError(
            f"{checkpoint} was trained with other values of model-defining keys than given: "
            + "; ".join(clashes) + ". Its weights cannot load into that model; drop the override(s)."
        )
    cfg.merge_from_list(loading)
    recorded_root = record.state.get("dataset_root")
    if (not cfg.CXR.DATASET_ROOT and not os.environ.get(DATASET_ROOT_ENV) and recorded_root
            and os.path.isdir(recorded_root)):
        cfg.CXR.DATASET_ROOT = recorded_root
        logger.info(f"dataset root: {recorded_root} (the run's; set {DATASET_ROOT_ENV} or CXR.DATASET_ROOT to change it)")
    return adapt_to_device(cfg)


def class_names_of(cfg) -> List[str]:
    """The class names of the model ``cfg`` builds: from the run record in ``MODEL.WEIGHTS``,
    else from the metadata of ``DATASETS.TEST`` / ``TRAIN`` (registered from ``cfg``), else
    ``"class <i>"`` with a warning."""
    record = read_run_record(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else None
    if record is not None and record.state.get("class_names"):
        return list(record.state["class_names"])
    from detectron2.data import MetadataCatalog

    from cxr_det.data.datasets.builtin import register_from_config

    register_from_config(cfg)
    for name in tuple(cfg.DATASETS.TEST) + tuple(cfg.DATASETS.TRAIN):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes:
            return list(classes)
    logger.warning("no class names in the checkpoint or the datasets; using 'class <i>'")
    if cfg.CXR.CLASSIFIER.NUM_CLASSES and "Classifier" in cfg.MODEL.META_ARCHITECTURE:
        return [f"class {i}" for i in range(cfg.CXR.CLASSIFIER.NUM_CLASSES)]
    head = "RETINANET" if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE else "ROI_HEADS"
    return [f"class {i}" for i in range(cfg.MODEL[head].NUM_CLASSES)]


def results_config(results_file: str, run: str = "", config_file: str = "", opts: Sequence[str] = ()) -> CfgNode:
    """The config whose datasets a run's results file (``coco_instances_results.json``) is for.

    The record comes from ``run`` (a run folder, its ``run.json`` or a checkpoint), else from
    the ``run.json`` found in the folder of ``results_file`` or up to three above it
    (:func:`~cxr_det.engine.run.find_run_file`). With a record and no ``config_file`` the
    run's own config is used; otherwise ``config_file`` (or the defaults). ``opts``
    (``KEY VALUE`` pairs) are merged last. The config is unfrozen and not adapted to the
    machine (no model is built from it).

    Raises:
        RunConfigError: ``run`` holds no record; the config would read the images in another
            frame than the run's boxes are in (:func:`check_image_frame`).
    """
    run_file = run or find_run_file(results_file)
    record = read_run_file(run_file) if run_file else None
    if record is not None and not config_file:
        cfg = record.config()
        cfg.merge_from_list(list(opts))
    else:
        cfg = get_cxr_cfg(config_file or None, list(opts))
    if record is not None:
        check_image_frame(cfg, record, results_file)
    return cfg

def _set(cfg, dotted: str, value):
    node = cfg
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
