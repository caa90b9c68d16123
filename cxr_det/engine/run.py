"""A trained run describes itself: its checkpoints carry what is needed to rebuild the model.

Every checkpoint of a training run holds, under ``"cxr_run"``, a :class:`RunRecord`: the full
config (YAML), the class names, the clinical features and embedding sizes, and the image frame
the boxes are expressed in (the VinDr PNG cache or the original images). The same record is
written to ``OUTPUT_DIR/run.json``. The clinical statistics travel beside it (``clinical_featurizer``).

:func:`inference_config` builds the config for ``--eval-only``, ``predict.py``, the
visualizers and the web service from a run folder or a checkpoint, optionally with a
repository config (whose model-defining keys must agree with the run's, and are taken from
it) and ``KEY VALUE`` overrides (an override of a model-defining key that contradicts the
checkpoint is an error).

The training-side helpers keep one run per ``OUTPUT_DIR``: :func:`set_aside_previous_run`
moves an earlier run's files aside when a new run starts without ``--resume``, and
:func:`truncate_metrics` drops the lines an interrupted run wrote past the checkpoint it is
resumed from.
"""
import fnmatch
import json
import logging
import os
import shutil
import time
from typing import List, Optional, Sequence

import torch

from detectron2.config import CfgNode

import cxr_det
from cxr_det.config import get_cxr_cfg
from cxr_det.engine.machine import adapt_to_device, adapt_to_machine
from cxr_det.data.datasets.common import DATASET_ROOT_ENV, dataset_root

__all__ = [
    "RUN_RECORD_KEY",
    "RUN_FILE",
    "RunRecord",
    "RunConfigError",
    "find_checkpoint",
    "read_run_record",
    "inference_config",
    "model_defining_keys",
    "read_run_file",
    "find_run_file",
    "check_image_frame",
    "class_names_of",
    "set_aside_previous_run",
    "truncate_metrics",
]

logger = logging.getLogger(__name__)

RUN_RECORD_KEY = "cxr_run"
RUN_FILE = "run.json"
# A run folder's checkpoint, in order of preference: the best by CXR.TRAIN.BEST_METRIC, the
# final one, then whatever ``last_checkpoint`` names (an interrupted run).
CHECKPOINT_PREFERENCE = ("model_best.pth", "model_final.pth")
# Files of a training run in OUTPUT_DIR (set aside together when a new run starts there).
RUN_FILE_PATTERNS = (
    "model_*.pth", "model_*.json", "last_checkpoint", "metrics.json", "events.out.tfevents.*",
    "clinical_stats.json", RUN_FILE, "config.yaml", "training_*.png", "inference", "log.txt",
)


class RunConfigError(ValueError):
    """A run folder, checkpoint or config that cannot give the model asked for."""


# --------------------------------------------------------------------------- the record


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def model_defining_keys(cfg) -> List[str]:
    """Config keys (dotted) that shape the model's parameters or its inputs' meaning.

    They must be equal between training and inference: ``MODEL.*`` except ``MODEL.WEIGHTS``,
    ``MODEL.DEVICE`` and the test-time keys ending in ``_TEST``; ``INPUT.FORMAT``;
    ``CXR.FUSION.*``; ``CXR.MOBILENET.*`` except ``PRETRAINED``; the clinical feature set
    (``CXR.CLINICAL.ENABLED/NUMERIC/CATEGORICAL/CATEGORICAL_SIZES``); the class sets
    (``CXR.REFLACX.CLASSES``, ``CXR.VINDR.CLASSES``).
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
                     "CXR.CLINICAL.CATEGORICAL_SIZES"):
            keys.append(key)
    return keys


def _same(a, b) -> bool:
    norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
    return norm(a) == norm(b)


class RunRecord:
    """What a checkpoint must carry to rebuild its model and read its outputs.

    A checkpointable (``state_dict`` / ``load_state_dict``) registered on the trainer's
    checkpointer, so that it is saved into every checkpoint under :data:`RUN_RECORD_KEY`.

    Fields: ``config`` (the full training config, YAML text), ``class_names`` (list of C
    str, index = category id), ``clinical`` (``enabled``, ``source``, ``numeric``,
    ``categorical``, ``categorical_sizes``), ``image_frame`` (``vindr_image_cache``: the PNG
    cache folder boxes of VinDr datasets are expressed in, "" = the DICOM grid;
    ``reflacx_image_source``), ``datasets`` (train / test names), ``dataset_root`` (the
    resolved root the run read its datasets from), ``cxr_det_version``.
    """

    def __init__(self, cfg=None, class_names: Sequence[str] = ()):
        self.state = {}
        if cfg is not None:
            self.state = {
                "format": 1,
                "cxr_det_version": cxr_det.__version__,
                "config": cfg.dump(),
                "class_names": [str(c) for c in class_names],
                "clinical": {
                    "enabled": bool(cfg.CXR.CLINICAL.ENABLED),
                    "source": cfg.CXR.CLINICAL.SOURCE,
                    "numeric": list(cfg.CXR.CLINICAL.NUMERIC),
                    "categorical": list(cfg.CXR.CLINICAL.CATEGORICAL),
                    "categorical_sizes": [int(n) for n in cfg.CXR.CLINICAL.CATEGORICAL_SIZES],
                },
                "image_frame": {
                    "vindr_image_cache": cfg.CXR.VINDR.IMAGE_CACHE,
                    "reflacx_image_source": cfg.CXR.REFLACX.IMAGE_SOURCE,
                },
                "datasets": {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST)},
                "dataset_root": str(dataset_root(cfg.CXR.DATASET_ROOT or None).resolve()),
            }

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict):
        self.state = dict(state)

    def save(self, output_dir: str) -> str:
        """Write ``output_dir/run.json`` (the record with the config as text); returns the path."""
        path = os.path.join(output_dir, RUN_FILE)
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.state, f, indent=2)
        return path

    def config(self) -> CfgNode:
        """The training config as a full cxr_det config (unfrozen)."""
        cfg = get_cxr_cfg()
        cfg.merge_from_other_cfg(CfgNode.load_cfg(self.state["config"]))
        return cfg


def find_checkpoint(path: str) -> str:
    """The checkpoint a ``--run`` argument names.

    Args:
        path: a ``.pth`` file, or a training ``OUTPUT_DIR``; in a folder, ``model_best.pth``,
            else ``model_final.pth``, else the file ``last_checkpoint`` names.

    Raises:
        RunConfigError: the path does not exist or the folder holds no checkpoint.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise RunConfigError(f"--run {path}: no such checkpoint file or run folder")
    for name in CHECKPOINT_PREFERENCE:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    tag = os.path.join(path, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            candidate = os.path.join(path, f.read().strip())
        if os.path.isfile(candidate):
            return candidate
    raise RunConfigError(
        f"--run {path}: no checkpoint in this folder (looked for {', '.join(CHECKPOINT_PREFERENCE)} and "
        "last_checkpoint); is it a training OUTPUT_DIR?"
    )


def read_run_record(checkpoint: str) -> Optional[RunRecord]:
    """The :class:`RunRecord` inside a ``.pth`` checkpoint, or None (older or foreign files).

    Raises:
        RunConfigError: the file is not a readable torch checkpoint.
    """
    if not checkpoint.endswith(".pth") or not os.path.isfile(checkpoint):
        return None
    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise RunConfigError(f"{checkpoint}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    state = data.get(RUN_RECORD_KEY) if isinstance(data, dict) else None
    if not state:
        return None
    record = RunRecord()
    record.load_state_dict(state)
    return record


def read_run_file(path: str) -> RunRecord:
    """The :class:`RunRecord` of ``path`` (a run folder, its ``run.json``, or a checkpoint).

    Raises:
        RunConfigError: no record there.
    """
    if os.path.isdir(path):
        path = os.path.join(path, RUN_FILE)
    if path.endswith(".pth"):
        record = read_run_record(path)
        if record is None:
            raise RunConfigError(f"{path}: the checkpoint carries no run record")
        return record
    if not os.path.isfile(path):
        raise RunConfigError(f"{path}: no run record ({RUN_FILE} is written by tools/train_net.py into OUTPUT_DIR)")
    with open(path) as f:
        state = json.load(f)
    record = RunRecord()
    record.load_state_dict(state)
    return record


def find_run_file(path: str, levels: int = 3) -> Optional[str]:
    """The ``run.json`` in the folder of ``path`` or up to ``levels`` folders above it (the
    evaluator writes ``OUTPUT_DIR/inference/<dataset>/...``), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(levels + 1):
        candidate = os.path.join(folder, RUN_FILE)
        if os.path.isfile(candidate):
            return candidate
        folder = os.path.dirname(folder)
    return None


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
    head = "RETINANET" if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE else "ROI_HEADS"
    logger.warning("no class names in the checkpoint or the datasets; using 'class <i>'")
    return [f"class {i}" for i in range(cfg.MODEL[head].NUM_CLASSES)]


def _set(cfg, dotted: str, value):
    node = cfg
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


# --------------------------------------------------------------------------- one run per folder


def _run_files(output_dir: str) -> List[str]:
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        name for name in os.listdir(output_dir) if any(fnmatch.fnmatch(name, p) for p in RUN_FILE_PATTERNS)
    )


def set_aside_previous_run(output_dir: str) -> Optional[str]:
    """Move an earlier run's files out of the way before a new run (not ``--resume``) starts.

    Checkpoints, ``last_checkpoint``, ``metrics.json``, TensorBoard events, inference
    outputs, records, curves and ``log.txt`` move to ``output_dir/previous_runs/<YYYYmmdd-HHMMSS>/``
    (call it before the logger opens ``log.txt``), so the new run's log, metrics,
    ``model_final.pth`` and ``--resume`` never mix with the old one's.

    Returns:
        the folder the files went to, or None when there was nothing to move.
    """
    names = _run_files(output_dir)
    if not names:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(output_dir, "previous_runs", stamp)
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(output_dir, "previous_runs", f"{stamp}-{suffix}")
    os.makedirs(target)
    for name in names:
        shutil.move(os.path.join(output_dir, name), os.path.join(target, name))
    return target


def truncate_metrics(metrics_file: str, start_iter: int) -> int:
    """Drop the lines of ``metrics.json`` at or past ``start_iter`` (an interrupted run's tail).

    Lines without an ``iteration`` and unparseable lines are kept. Returns the number dropped.
    """
    if not os.path.isfile(metrics_file):
        return 0
    kept, dropped = [], 0
    with open(metrics_file) as f:
        for line in f:
            try:
                it = json.loads(line).get("iteration")
            except (json.JSONDecodeError, AttributeError):
                it = None
            if it is not None and int(it) >= start_iter:
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        with open(metrics_file, "w") as f:
            f.writelines(kept)
    return dropped
