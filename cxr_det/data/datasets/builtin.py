"""Registration of cxr_det's datasets in detectron2's catalogs, explicitly.

Detection: ``reflacx_{train,val,test,all}`` and ``vindr_{train,val,test,all}``.
Classification (image-level labels): ``chexpert_{train,val,valid,all}``,
``mimic_cxr_{train,val,test,all}``, ``vindr_labels_{train,val,test,all}`` and, when
``CXR.IMAGE_FOLDER.NAME`` names a folder of classes, ``folder_{train,val,test,all}``. Each
dataset has its own splits (:data:`DATASET_SPLITS`; CheXpert's ``valid`` is the official
``valid.csv``, its ``val`` a patient-level split of ``train.csv``). Names are fixed, as
detectron2's ``builtin.py`` names COCO's. Nothing is registered at import: a tool or script
calls :func:`register_from_config` (what ``tools/train_net.py`` does) or
:func:`register_cxr_datasets` (defaults), and no file is read until a split is requested (the
folder of classes lists its class folders, when present, for ``thing_classes``), so a dataset
whose files are absent registers and fails only when loaded.

A registered name means one thing. Its content is fully determined by the options it was
registered with (dataset root, the registrar's options from ``cfg.CXR.<DATASET>``, clinical
source), recorded in its metadata as ``cxr_options`` with a short fingerprint
``cxr_options_key`` (caches such as the evaluator's COCO ground truth are keyed on it).
Registering a name again with the same options does nothing; with other options it raises
:class:`DatasetRegistrationError` naming what differs. To switch options within one process
(a notebook comparing reader modes or uncertainty policies), call
:func:`unregister_cxr_datasets` first.
"""
import hashlib
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data.clinical.pipeline import with_clinical
from cxr_det.data.datasets.chexpert import CHEXPERT_SPLITS, register_chexpert
from cxr_det.data.datasets.common import dataset_root
from cxr_det.data.datasets.image_folder import register_image_folder
from cxr_det.data.datasets.mimic_cxr_labels import register_mimic_cxr_labels
from cxr_det.data.datasets.observation_labels import UNCERTAINTY_POLICIES, resolve_label_set
from cxr_det.data.datasets.reflacx import register_reflacx
from cxr_det.data.datasets.vindr import register_vindr
from cxr_det.data.datasets.vindr_image_labels import register_vindr_image_labels
from cxr_det.formats import READER_MODES, SPLITS, resolve_reader_mode
from cxr_det.formats.chexpert_format import CHEXPERT_DIR, CHEXPERT_LABEL_SETS, CHEXPERT_OBSERVATIONS
from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_JPG_DIR, MIMIC_CXR_OBSERVATIONS
from cxr_det.formats.vindr_format import VINDR_DIR

__all__ = [
    "DATASETS",
    "DETECTION_DATASETS",
    "CLASSIFICATION_DATASETS",
    "DATASET_SPLITS",
    "CONFIG_NODES",
    "DATASET_FOLDERS",
    "REGISTRAR_KEYS",
    "CLINICAL_JOINED",
    "DatasetRegistrationError",
    "cxr_dataset_names",
    "dataset_options",
    "options_key",
    "register_cxr_datasets",
    "register_from_config",
    "uncertainty_by_label",
    "unregister_cxr_datasets",
]

DETECTION_DATASETS = ("reflacx", "vindr")
CLASSIFICATION_DATASETS = ("chexpert", "mimic_cxr", "vindr_labels", "folder")
DATASETS = DETECTION_DATASETS + CLASSIFICATION_DATASETS
# The splits of each dataset: the names are <dataset>_<split>; "all" is the union of the others.
DATASET_SPLITS = {
    "reflacx": SPLITS,
    "vindr": SPLITS,
    "chexpert": CHEXPERT_SPLITS,
    "mimic_cxr": SPLITS,
    "vindr_labels": SPLITS,
    "folder": SPLITS,
}
# The config node of each dataset: cfg.CXR.<node>.
CONFIG_NODES = {
    "reflacx": "REFLACX",
    "vindr": "VINDR",
    "chexpert": "CHEXPERT",
    "mimic_cxr": "MIMIC_CXR",
    "vindr_labels": "VINDR_LABELS",
    "folder": "IMAGE_FOLDER",
}
# The folders a dataset needs under the dataset root (any one of those listed), as shipped.
# The folder of classes is the one CXR.IMAGE_FOLDER.NAME names.
DATASET_FOLDERS = {
    "reflacx": ("reflacx",),
    "vindr": (VINDR_DIR,),
    "chexpert": (CHEXPERT_DIR,),
    "mimic_cxr": (MIMIC_CXR_JPG_DIR,),
    "vindr_labels": (VINDR_DIR,),
}
# The registrar's keyword arguments and the keys of cfg.CXR.<node> they come from; the
# classification values are then translated (_TRANSLATE: label-set names, per-label
# uncertainty policies, 0 studies = no limit).
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
    "chexpert": dict(
        labels="LABELS",
        uncertainty="UNCERTAINTY",
        views="VIEWS",
        max_studies_per_patient="MAX_STUDIES_PER_PATIENT",
        val_fraction="VAL_FRACTION",
        seed="SPLIT_SEED",
    ),
    "mimic_cxr": dict(
        labeler="LABELER",
        labels="LABELS",
        uncertainty="UNCERTAINTY",
        views="VIEWS",
        max_studies_per_patient="MAX_STUDIES_PER_PATIENT",
    ),
    "vindr_labels": dict(task="TASK", labels="LABELS", readers="READERS", val_fraction="VAL_FRACTION"),
    "folder": dict(
        folder="NAME", classes="CLASSES", val_fraction="VAL_FRACTION", test_fraction="TEST_FRACTION", seed="SPLIT_SEED"
    ),
}
# Datasets whose records take their clinical record from CXR.CLINICAL.SOURCE (a join or a
# CSV). The others carry their own whatever the config says: CheXpert its Sex/Age columns,
# VinDr-CXR image labels the DICOM header's PatientAge/PatientSex, a folder of classes none.
CLINICAL_JOINED = ("reflacx", "vindr", "mimic_cxr")


class DatasetRegistrationError(ValueError):
    """A dataset name is already registered with other options (the message says which)."""


def _register_folder(name, root, split, folder, **options):
    register_image_folder(name, root, folder=folder, split=split, **options)


_REGISTER = {
    "reflacx": register_reflacx,
    "vindr": register_vindr,
    "chexpert": register_chexpert,
    "mimic_cxr": register_mimic_cxr_labels,
    "vindr_labels": register_vindr_image_labels,
    "folder": _register_folder,
}


def _check_datasets(datasets):
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; cxr_det registers {list(DATASETS)}")


def _folder_named(cfg) -> bool:
    return bool(str(cfg.CXR.IMAGE_FOLDER.NAME).strip())


def _names(datasets):
    return [f"{dataset}_{split}" for dataset in datasets for split in DATASET_SPLITS[dataset]]


def cxr_dataset_names(cfg=None, datasets=None):
    """The names :func:`register_cxr_datasets` registers for ``cfg`` and ``datasets``
    (default every dataset of :data:`DATASETS`): ``<dataset>_<split>`` for each split of
    :data:`DATASET_SPLITS`, in that order. ``folder_*`` only when ``CXR.IMAGE_FOLDER.NAME``
    is set (``cfg`` None: the defaults, where it is not), so 20 names by default."""
    datasets = DATASETS if datasets is None else tuple(datasets)
    _check_datasets(datasets)
    if cfg is None or not _folder_named(cfg):
        datasets = tuple(d for d in datasets if d != "folder")
    return _names(datasets)


def _label_set(value, observations, key, dataset):
    """``(registrar option, label names)``: a one-element list naming a set of
    :data:`CHEXPERT_LABEL_SETS` (or ``"all"``) becomes that name, any other list stays a list."""
    labels = [value] if isinstance(value, str) else [str(v) for v in value]
    option = labels[0] if len(labels) == 1 and (labels[0] in CHEXPERT_LABEL_SETS or labels[0] == "all") else labels
    try:
        return option, resolve_label_set(option, observations, dataset)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from e


def uncertainty_by_label(default, exceptions, labels, node="CXR.CHEXPERT"):
    """``{label: policy}`` for every name of ``labels``: ``default`` (``<node>.UNCERTAINTY``)
    except where ``exceptions`` (``<node>.UNCERTAINTY_BY_LABEL``, strings
    ``"<label>:<policy>"`` such as ``"Atelectasis:ones"``) says otherwise.

    Policies are those of :data:`~.observation_labels.UNCERTAINTY_POLICIES` (the CheXpert
    paper's U-Zeros, U-Ones, U-Ignore as ``zeros``, ``ones``, ``ignore``; any case).

    Raises:
        ValueError: naming the config key, for an unknown default policy, an entry without
            ``:`` or with an empty side, a label not in ``labels``, an unknown policy, or a
            label given twice.
    """
    valid = list(UNCERTAINTY_POLICIES)
    default_policy = str(default).strip().lower()
    if default_policy not in UNCERTAINTY_POLICIES:
        raise ValueError(f"{node}.UNCERTAINTY: unknown uncertainty policy {default!r}; valid: {valid}")
    policy = {name: default_policy for name in labels}
    given = set()
    for entry in exceptions:
        label, sep, value = str(entry).rpartition(":")
        label, value = label.strip(), value.strip().lower()
        if not sep or not label or not value:
            raise ValueError(
                f"{node}.UNCERTAINTY_BY_LABEL: entry {entry!r} is not '<label>:<policy>' (e.g. 'Atelectasis:ones')"
            )
        if label not in policy:
            raise ValueError(
                f"{node}.UNCERTAINTY_BY_LABEL: entry {entry!r}: label {label!r} is not in the label set {list(labels)}"
            )
        if value not in UNCERTAINTY_POLICIES:
            raise ValueError(f"{node}.UNCERTAINTY_BY_LABEL: entry {entry!r}: unknown policy {value!r}; valid: {valid}")
        if label in given:
            raise ValueError(f"{node}.UNCERTAINTY_BY_LABEL: label {label!r} is given more than once")
        given.add(label)
        policy[label] = value
    return policy


def _max_studies(value, key):
    n = int(value)
    if n < 0:
        raise ValueError(f"{key}: must be >= 0 (0 keeps every study), got {value!r}")
    return n or None


def _observation_options(registrar, node, key, observations, dataset):
    """CheXpert / MIMIC-CXR: label set, per-label uncertainty, studies per patient."""
    registrar["labels"], names = _label_set(registrar["labels"], observations, f"{key}.LABELS", dataset)
    exceptions = list(node.UNCERTAINTY_BY_LABEL)
    registrar["uncertainty"] = uncertainty_by_label(registrar["uncertainty"], exceptions, names, key)
    studies = registrar["max_studies_per_patient"]
    registrar["max_studies_per_patient"] = _max_studies(studies, f"{key}.MAX_STUDIES_PER_PATIENT")
    registrar["views"] = str(registrar["views"])
    return registrar


def _chexpert(registrar, node, key):
    registrar = _observation_options(registrar, node, key, CHEXPERT_OBSERVATIONS, "CheXpert")
    return {**registrar, "val_fraction": float(registrar["val_fraction"]), "seed": int(registrar["seed"])}


def _mimic_cxr(registrar, node, key):
    registrar = _observation_options(registrar, node, key, MIMIC_CXR_OBSERVATIONS, "MIMIC-CXR")
    return {**registrar, "labeler": str(registrar["labeler"])}


def _vindr_labels(registrar, node, key):
    labels = [str(x) for x in registrar["labels"]]
    return {**registrar, "labels": labels or None, "val_fraction": float(registrar["val_fraction"])}


def _folder(registrar, node, key):
    folder = str(registrar["folder"]).strip()
    if not folder:
        raise ValueError(f"{key}.NAME is empty: name the folder of classes under the dataset root to register folder_*")
    classes = [str(c) for c in registrar["classes"]]
    return {
        **registrar,
        "folder": folder,
        "classes": classes or None,
        "val_fraction": float(registrar["val_fraction"]),
        "test_fraction": float(registrar["test_fraction"]),
        "seed": int(registrar["seed"]),
    }


def _detection(dataset):
    def translate(registrar, node, key):
        registrar["classes"] = list(registrar["classes"])
        # an earlier name of a reader mode means the same content: warned about and replaced
        # here (the registrar checks that the dataset implements the mode)
        registrar["readers"] = resolve_reader_mode(registrar["readers"], dataset, READER_MODES, reader_ids_allowed=True)
        return registrar

    return translate


_TRANSLATE = {
    "reflacx": _detection("reflacx"),
    "vindr": _detection("vindr"),
    "chexpert": _chexpert,
    "mimic_cxr": _mimic_cxr,
    "vindr_labels": _vindr_labels,
    "folder": _folder,
}


def dataset_options(cfg, dataset):
    """The options that determine what ``<dataset>_<split>`` holds under ``cfg``: a JSON-able
    dict with the resolved dataset root (absolute path), the registrar's keyword arguments
    (``registrar``, from ``cfg.CXR.<node>`` by :data:`REGISTRAR_KEYS`) and the clinical
    record source (``clinical``).

    Translations: a deprecated reader mode name is replaced by the current one (with a
    DeprecationWarning); ``LABELS`` ``["competition5"]`` (a one-element list naming a set)
    becomes ``"competition5"``, another list stays a list; ``UNCERTAINTY`` and
    ``UNCERTAINTY_BY_LABEL`` become ``{label: policy}`` for every label;
    ``MAX_STUDIES_PER_PATIENT`` 0 becomes None; ``SPLIT_SEED`` is the ``seed``; VinDr and
    folder ``LABELS`` / ``CLASSES`` ``[]`` become None (the registrar's default).

    ``clinical`` is ``{"source", "match_window_days"}`` for the datasets of
    :data:`CLINICAL_JOINED` when ``CXR.CLINICAL.ENABLED``, else None; the other datasets'
    records carry their own clinical record whatever the config says.

    Raises:
        ValueError: ``dataset`` is not one of :data:`DATASETS`; an option the translation
            checks is invalid (the message names the config key); ``folder`` without
            ``CXR.IMAGE_FOLDER.NAME``.
    """
    _check_datasets([dataset])
    key = f"CXR.{CONFIG_NODES[dataset]}"
    node = cfg.CXR[CONFIG_NODES[dataset]]
    registrar = {arg: node[name] for arg, name in REGISTRAR_KEYS[dataset].items()}
    registrar = _TRANSLATE[dataset](registrar, node, key)
    clinical = None
    if cfg.CXR.CLINICAL.ENABLED and dataset in CLINICAL_JOINED:
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


def _already_registered(name, options):
    """True when ``name`` holds these options; False when free; raises when it holds others."""
    if name not in DatasetCatalog.list():
        return False
    registered = MetadataCatalog.get(name).get("cxr_options")
    if registered == options:
        return True
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


def _register_split(dataset, split, options, cfg):
    name = f"{dataset}_{split}"
    if _already_registered(name, options):
        return name
    _REGISTER[dataset](name, options["root"], split, **options["registrar"])
    if options["clinical"] is not None:
        load = DatasetCatalog[name]
        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, with_clinical(load, cfg, dataset, options["root"]))
    MetadataCatalog.get(name).set(cxr_options=options, cxr_options_key=options_key(options))
    return name


def register_cxr_datasets(cfg=None, datasets=None):
    """Register every split of ``datasets`` with the options of ``cfg`` (cxr_det's defaults
    when None: the root is ``$CXR_DATASETS``, else ``./datasets``). Returns the names.

    ``datasets``: names of :data:`DATASETS`; default all of them, the folder of classes only
    when ``CXR.IMAGE_FOLDER.NAME`` is set (asking for ``"folder"`` without it is an error).
    Nothing is read from disk. Every option is translated and every name checked before any
    is registered, and the names of a call a registrar refuses are removed again, so a
    refused call registers nothing.

    Idempotent for equal options. Raises :class:`DatasetRegistrationError` when a name is
    already registered with other options, ValueError for an unknown dataset or an invalid
    config value (naming the key), and the registrars' ValueError / TypeError for an invalid
    option (unknown class, reader mode, view, labeler, task), prefixed with the config node
    (``CXR.CHEXPERT: ...``).
    """
    cfg = cfg if cfg is not None else get_cxr_cfg()
    if datasets is None:
        datasets = tuple(d for d in DATASETS if d != "folder" or _folder_named(cfg))
    datasets = tuple(datasets)
    _check_datasets(datasets)
    options = {dataset: dataset_options(cfg, dataset) for dataset in datasets}
    fresh = [
        f"{d}_{split}" for d in datasets for split in DATASET_SPLITS[d]
        if not _already_registered(f"{d}_{split}", options[d])
    ]
    names, dataset = [], None
    try:
        for dataset in datasets:
            names += [_register_split(dataset, split, options[dataset], cfg) for split in DATASET_SPLITS[dataset]]
    except (ValueError, TypeError) as e:  # a registrar refused an option: undo this call's names
        for name in fresh:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            if name in MetadataCatalog.list():
                MetadataCatalog.remove(name)
        if type(e) in (ValueError, TypeError):
            raise type(e)(f"CXR.{CONFIG_NODES[dataset]}: {e}") from e
        raise
    return names


def register_from_config(cfg):
    """Register every split with the dataset root and options of ``cfg.CXR`` (what
    ``tools/train_net.py`` does before building loaders); see :func:`register_cxr_datasets`.
    With ``CXR.CLINICAL.ENABLED`` each REFLACX, VinDr-CXR and MIMIC-CXR record also carries
    its raw clinical record from ``CXR.CLINICAL.SOURCE`` (the other datasets' records carry
    their own)."""
    return register_cxr_datasets(cfg)


def unregister_cxr_datasets():
    """Remove every name cxr_det may register (``folder_*`` included) from detectron2's
    catalogs (a no-op for names not registered); returns the names removed."""
    removed = []
    for name in _names(DATASETS):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            removed.append(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
    return removed
