"""Registration of the REFLACX and VinDr-CXR splits in detectron2's catalogs, explicitly.

Names are ``reflacx_{train,val,test,all}`` and ``vindr_{train,val,test,all}``, as detectron2's
``builtin.py`` names COCO's. Nothing is registered at import: a tool or script calls
:func:`register_from_config` (what ``tools/train_net.py`` does) or
:func:`register_cxr_datasets` (defaults), and nothing is read until a split is requested.

A registered name means one thing. Its content is fully determined by the options it was
registered with (dataset root, class set, reader mode, fusion IoU, certainty, image source or
cache, validation fraction, clinical source), recorded in its metadata as ``cxr_options`` with
a short fingerprint ``cxr_options_key`` (caches such as the evaluator's COCO ground truth are
keyed on it). Registering a name again with the same options does nothing; with other options
it raises :class:`DatasetRegistrationError` naming what differs. To switch options within one
process (a notebook comparing reader modes), call :func:`unregister_cxr_datasets` first.
"""
import hashlib
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data.clinical.pipeline import with_clinical
from cxr_det.data.datasets.common import dataset_root
from cxr_det.data.datasets.reflacx import register_reflacx
from cxr_det.data.datasets.vindr import register_vindr
from cxr_det.formats import READER_MODES, SPLITS, resolve_reader_mode

__all__ = [
    "DATASETS",
    "DATASET_FOLDERS",
    "REGISTRAR_KEYS",
    "DatasetRegistrationError",
    "cxr_dataset_names",
    "dataset_options",
    "options_key",
    "register_cxr_datasets",
    "register_from_config",
    "unregister_cxr_datasets",
]

DATASETS = ("reflacx", "vindr")
# The folders a dataset needs under the dataset root (any one of those listed), as shipped.
DATASET_FOLDERS = {
    "reflacx": ("reflacx",),
    "vindr": ("vindr-cxr",),
}
_REGISTER = {"reflacx": register_reflacx, "vindr": register_vindr}
# The registrar's keyword arguments and the keys of cfg.CXR.<DATASET> they come from.
REGISTRAR_KEYS = {
    "reflacx": dict(
        classes="CLASSES",
        readers="READERS",
        fuse_iou="FUSE_IOU",
        min_certainty="MIN_CERTAINTY",
        drop_discarded_eye_tracking="DROP_DISCARDED_EYE_TRACKING",
        image_source="IMAGE_SOURCE",
    ),
    "vindr": dict(
        classes="CLASSES", readers="READERS", fuse_iou="FUSE_IOU", image_cache="IMAGE_CACHE", val_fraction="VAL_FRACTION"
    ),
}


class DatasetRegistrationError(ValueError):
    """A dataset name is already registered with other options (the message says which)."""


def cxr_dataset_names():
    """The dataset names cxr_det registers: ``<dataset>_<split>``, a list of 8 strings."""
    return [f"{dataset}_{split}" for dataset in DATASETS for split in SPLITS]


def dataset_options(cfg, dataset):
    """The options that determine what ``<dataset>_<split>`` holds under ``cfg``: a JSON-able
    dict with the resolved dataset root (absolute path), the registrar's keyword arguments
    (``registrar``; a deprecated reader mode name replaced by the current one, with a
    DeprecationWarning) and the clinical record source (``clinical``; None when
    ``CXR.CLINICAL.ENABLED`` is off).

    Raises:
        ValueError: ``dataset`` is not one of :data:`DATASETS`.
    """
    if dataset not in REGISTRAR_KEYS:
        raise ValueError(f"unknown dataset {dataset!r}; cxr_det registers {list(DATASETS)}")
    node = cfg.CXR[dataset.upper()]
    registrar = {arg: node[key] for arg, key in REGISTRAR_KEYS[dataset].items()}
    registrar["classes"] = list(registrar["classes"])
    # an earlier name of a reader mode means the same content: warned about and replaced here
    # (the registrar checks that the dataset implements the mode)
    registrar["readers"] = resolve_reader_mode(registrar["readers"], dataset, READER_MODES, reader_ids_allowed=True)
    clinical = None
    if cfg.CXR.CLINICAL.ENABLED:
        clinical = dict(source=cfg.CXR.CLINICAL.SOURCE, match_window_days=int(cfg.CXR.CLINICAL.MATCH_WINDOW_DAYS))
    root = os.path.abspath(str(dataset_root(cfg.CXR.DATASET_ROOT or None)))
    return {"root": root, "registrar": registrar, "clinical": clinical}


def options_key(options):
    """A 12-hex-digit fingerprint of ``options`` (sha1 of their canonical JSON)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _differences(old, new, prefix=""):
    """``key: old -> new`` lines for every leaf where two option dicts differ."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def _register_split(dataset, split, options, cfg):
    name = f"{dataset}_{split}"
    key = options_key(options)
    if name in DatasetCatalog.list():
        registered = MetadataCatalog.get(name).get("cxr_options")
        if registered == options:
            return name
        if registered is None:
            raise DatasetRegistrationError(
                f"dataset {name!r} is already registered by other code; cxr_det will not replace it "
                "(remove it from DatasetCatalog and MetadataCatalog first)"
            )
        changes = "; ".join(_differences(registered, options))
        raise DatasetRegistrationError(
            f"dataset {name!r} is already registered in this process with other options ({changes}). "
            "A dataset name means one set of options: call cxr_det.data.unregister_cxr_datasets() before "
            "registering with new ones"
        )
    _REGISTER[dataset](name, options["root"], split, **options["registrar"])
    if options["clinical"] is not None:
        load = DatasetCatalog[name]
        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, with_clinical(load, cfg, dataset, options["root"]))
    MetadataCatalog.get(name).set(cxr_options=options, cxr_options_key=key)
    return name


def register_cxr_datasets(cfg=None, datasets=DATASETS):
    """Register every split of ``datasets`` with the options of ``cfg`` (cxr_det's defaults
    when None: the root is ``$CXR_DATASETS``, else ``./datasets``). Returns the names.

    Idempotent for equal options. Raises :class:`DatasetRegistrationError` when a name is
    already registered with other options, and the registrars' ValueError / TypeError for an
    invalid option (unknown class, reader mode, split).
    """
    cfg = cfg if cfg is not None else get_cxr_cfg()
    names = []
    for dataset in datasets:
        options = dataset_options(cfg, dataset)
        names += [_register_split(dataset, split, options, cfg) for split in SPLITS]
    return names


def register_from_config(cfg):
    """Register every split with the dataset root and options of ``cfg.CXR`` (what
    ``tools/train_net.py`` does before building loaders); see :func:`register_cxr_datasets`.
    With ``CXR.CLINICAL.ENABLED`` each record also carries its raw clinical record."""
    return register_cxr_datasets(cfg)


def unregister_cxr_datasets():
    """Remove every name of :func:`cxr_dataset_names` from detectron2's catalogs (a no-op for
    names not registered); returns the names removed."""
    removed = []
    for name in cxr_dataset_names():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            removed.append(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
    return removed
