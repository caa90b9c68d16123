"""Clinical data through training and evaluation: attach raw records, fit or reload statistics.

Raw records ride on the dataset dicts (``record["clinical"]``); the mapper turns them into
tensors with a :class:`ClinicalFeaturizer` whose statistics come from the training split
only. Training writes them to ``OUTPUT_DIR/clinical_stats.json`` (and into every
checkpoint); evaluation and inference reload them unchanged. A multi-process run fits them
once, in process 0, and every process uses that state.
"""
import functools
import hashlib
import json
import logging
import os

import torch

from detectron2.data import DatasetCatalog
from detectron2.utils import comm

from cxr_det.data.clinical.features import ClinicalFeaturizer
from cxr_det.data.clinical.tables import attach_clinical, load_clinical_table

logger = logging.getLogger(__name__)

STATS_FILE_NAME = "clinical_stats.json"
CHECKPOINT_KEY = "clinical_featurizer"


# Datasets whose MIMIC-IV-ED join is made for the loaded records' own images: a MIMIC-CXR
# label split is a part of a 377k-image metadata table, so joining (and caching) the whole
# table for it would be wasted; REFLACX joins its few thousand images once and caches them.
_JOIN_PER_LOAD = ("mimic_cxr",)


@functools.lru_cache(maxsize=8)
def _table(source, dataset, root, window_days):
    return load_clinical_table(source, dataset, root=root, window_days=window_days)


def with_clinical(load_fn, cfg, dataset, root):
    """Wrap a registrar's load function so that its records carry ``clinical`` raw records.

    ``dataset``: ``"reflacx"``, ``"vindr"`` or ``"mimic_cxr"`` (see
    :func:`~cxr_det.data.clinical.tables.load_clinical_table` for the sources each takes).
    For ``mimic_cxr`` with the ``mimic-iv-ed`` source the join is made, at each load, for
    the dicom_ids of the loaded records only; the other tables are loaded once per
    (source, dataset, root, window) and cached.
    """
    source = cfg.CXR.CLINICAL.SOURCE
    window = cfg.CXR.CLINICAL.MATCH_WINDOW_DAYS
    root = str(root) if root else None

    def load():
        records = load_fn()
        if dataset in _JOIN_PER_LOAD and source == "mimic-iv-ed":
            keys = list(dict.fromkeys(str(r["dicom_id"]) for r in records))
            table, key = load_clinical_table(source, dataset, root=root, window_days=window, keys=keys)
        else:
            table, key = _table(source, dataset, root, window)
        attach_clinical(records, table, key=key)
        return records

    return load


def _checkpoint_state(weights):
    if weights and os.path.isfile(weights) and weights.endswith(".pth"):
        return torch.load(weights, map_location="cpu", weights_only=True, mmap=True).get(CHECKPOINT_KEY)
    return None


def load_featurizer(cfg):
    """The fitted featurizer for a config, from (first found) ``CXR.CLINICAL.STATS_FILE``, the
    checkpoint ``MODEL.WEIGHTS`` itself (the statistics it was trained with), or
    ``clinical_stats.json`` beside it.

    Raises:
        FileNotFoundError: none of them holds statistics.
    """
    looked = []
    if cfg.CXR.CLINICAL.STATS_FILE:
        if os.path.isfile(cfg.CXR.CLINICAL.STATS_FILE):
            return ClinicalFeaturizer.load(cfg.CXR.CLINICAL.STATS_FILE)
        looked.append(cfg.CXR.CLINICAL.STATS_FILE)
    weights = cfg.MODEL.WEIGHTS
    state = _checkpoint_state(weights)
    if state:
        featurizer = ClinicalFeaturizer.from_config(cfg)
        featurizer.load_state_dict(state)
        return featurizer
    if weights and os.path.isfile(weights):
        beside = os.path.join(os.path.dirname(weights), STATS_FILE_NAME)
        looked += [f"{weights} (no {CHECKPOINT_KEY})", beside]
        if os.path.isfile(beside):
            return ClinicalFeaturizer.load(beside)
    raise FileNotFoundError(
        "CXR.CLINICAL.ENABLED needs the training split's clinical statistics: set "
        f"CXR.CLINICAL.STATS_FILE (looked at {looked or 'nothing'}), or "
        "load MODEL.WEIGHTS from a checkpoint written by a clinical training run"
    )


def state_digest(featurizer) -> str:
    """SHA-256 (hex) of a fitted featurizer's :meth:`~ClinicalFeaturizer.state_dict` as sorted
    JSON: equal digests mean equal statistics (logged by every process, so that a
    multi-process run shows they all use the same)."""
    return hashlib.sha256(json.dumps(featurizer.state_dict(), sort_keys=True).encode()).hexdigest()


def _fit_and_save(cfg, path):
    featurizer = ClinicalFeaturizer.from_config(cfg)
    records = [r.get("clinical") for name in cfg.DATASETS.TRAIN for r in DatasetCatalog.get(name)]
    featurizer.fit(records, dataset="+".join(cfg.DATASETS.TRAIN))
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    featurizer.save(path)
    logger.info(f"clinical statistics of {list(cfg.DATASETS.TRAIN)} written to {path}")
    return featurizer


def _fit_on_main_process(cfg, path):
    """Fit and write the statistics in process 0 only; the others receive the same state
    (detectron2's ``comm.all_gather``, which also waits for the file to be written) and
    check that they see the file (the mappers load it: ``OUTPUT_DIR`` must be shared by
    every machine). An error in process 0 is raised in every process, so none waits for it."""
    if comm.get_world_size() == 1:
        return _fit_and_save(cfg, path)
    featurizer = failure = message = None
    if comm.is_main_process():
        try:
            featurizer = _fit_and_save(cfg, path)
            message = (featurizer.state_dict(), None)
        except Exception as e:  # noqa: BLE001 - shared with the other processes, then re-raised
            failure = e
            message = (None, f"{type(e).__name__}: {e}")
    state, error = comm.all_gather(message)[0]
    if failure is not None:
        raise failure
    if error is not None:
        raise RuntimeError(f"fitting the clinical statistics failed in process 0: {error}")
    if featurizer is None:
        featurizer = ClinicalFeaturizer.from_config(cfg).load_state_dict(state)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"process {comm.get_rank()} does not see {path}, written by process 0: OUTPUT_DIR must be on a "
                "filesystem shared by every machine of a multi-machine run"
            )
    return featurizer


def prepare_clinical(cfg, training):
    """Fit (training, no STATS_FILE) or reload the statistics; fill STATS_FILE and
    CATEGORICAL_SIZES in the (unfrozen) config. Returns the featurizer.

    With several processes (:mod:`detectron2.utils.comm`) the statistics are fitted and
    written once, by process 0; every process then uses that state and logs its
    :func:`state_digest`. Call it in every process.
    """
    if training and not cfg.CXR.CLINICAL.STATS_FILE:
        if not cfg.DATASETS.TRAIN:
            raise ValueError("CXR.CLINICAL.ENABLED: DATASETS.TRAIN is empty, so there is nothing to fit statistics on")
        path = os.path.join(cfg.OUTPUT_DIR, STATS_FILE_NAME)
        featurizer = _fit_on_main_process(cfg, path)
        cfg.CXR.CLINICAL.STATS_FILE = path
    else:
        featurizer = load_featurizer(cfg)
    logger.info(f"clinical statistics sha256 {state_digest(featurizer)} in process {comm.get_rank()} "
                f"of {comm.get_world_size()}")
    cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [int(n) for n in featurizer.categorical_cardinalities]
    for name in cfg.DATASETS.TEST:
        featurizer.transform_many([r.get("clinical") for r in DatasetCatalog.get(name)], dataset=name)
    return featurizer


def clinical_tensors(featurizer, raw):
    """The model's ``clinical`` input for one image (``raw`` None: no record at all)."""
    numeric, missing, categorical = featurizer.transform(raw)
    return {
        "numeric": torch.as_tensor(numeric, dtype=torch.float32),
        "missing": torch.as_tensor(missing, dtype=torch.float32),
        "categorical": torch.as_tensor(categorical, dtype=torch.int64),
    }
