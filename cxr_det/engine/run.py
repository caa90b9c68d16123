"""A trained run describes itself: the record its checkpoints carry to rebuild the model.

Every checkpoint of a training run holds, under ``"cxr_run"`` (:data:`RUN_RECORD_KEY`), a
:class:`RunRecord`: the full config (YAML), the class names, the clinical features and
embedding sizes, and the image frame the boxes are expressed in (the VinDr PNG cache or the
original images). The same record is written to ``OUTPUT_DIR/run.json`` (:data:`RUN_FILE`).
The clinical statistics travel beside it (``clinical_featurizer``).

Related modules: :mod:`cxr_det.engine.run_config` builds the config of a trained model from
its record (``--eval-only``, ``predict.py``, the visualizers, the web service);
:mod:`cxr_det.engine.run_folder` finds a run folder's checkpoint and keeps one run per
``OUTPUT_DIR``.
"""
import json
import os
from typing import Optional, Sequence

import torch

from detectron2.config import CfgNode

import cxr_det
from cxr_det.config import get_cxr_cfg
from cxr_det.data.datasets.common import dataset_root
from cxr_det.utils.atomic import atomic_write_json

__all__ = [
    "RUN_RECORD_KEY",
    "RUN_FILE",
    "RunRecord",
    "RunConfigError",
    "read_run_record",
    "read_run_file",
    "find_run_file",
]

RUN_RECORD_KEY = "cxr_run"
RUN_FILE = "run.json"


class RunConfigError(ValueError):
    """A run folder, checkpoint or config that cannot give the model asked for."""


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
        """The record (a copy of the top level), saved into checkpoints."""
        return dict(self.state)

    def load_state_dict(self, state: dict):
        """Take the record of a loaded checkpoint (or ``run.json``)."""
        self.state = dict(state)

    def save(self, output_dir: str) -> str:
        """Write ``output_dir/run.json`` (the record with the config as text) atomically;
        returns the path."""
        return atomic_write_json(os.path.join(output_dir, RUN_FILE), self.state, indent=2)

    def config(self) -> CfgNode:
        """The training config as a full cxr_det config (unfrozen)."""
        cfg = get_cxr_cfg()
        cfg.merge_from_other_cfg(CfgNode.load_cfg(self.state["config"]))
        return cfg


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
