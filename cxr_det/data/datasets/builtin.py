"""Register REFLACX and VinDr-CXR splits under the dataset root, like detectron2's builtin.py.

Names: ``reflacx_{train,val,test,all}`` and ``vindr_{train,val,test,all}``. They are
registered with default options when :mod:`cxr_det.data` is imported (nothing is read
until a split is requested), and re-registered from ``cfg.CXR`` by
:func:`register_from_config`, so class set and reader mode are chosen in the YAML while
the dataset names stay the standard ones.
"""
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.common import dataset_root
from cxr_det.data.datasets.reflacx import register_reflacx
from cxr_det.data.datasets.vindr import register_vindr

SPLITS = ("train", "val", "test", "all")
DATASETS = ("reflacx", "vindr")
# The folders a dataset needs under the dataset root (any one of those listed), as shipped.
DATASET_FOLDERS = {
    "reflacx": ("reflacx",),
    "vindr": ("vindr-cxr",),
}


def cxr_dataset_names():
    """The dataset names cxr_det registers: ``<dataset>_<split>``."""
    return [f"{dataset}_{split}" for dataset in DATASETS for split in SPLITS]


def _unregister(name):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


def _register_splits(dataset, register, root, options):
    root = dataset_root(root)
    for split in SPLITS:
        name = f"{dataset}_{split}"
        _unregister(name)
        register(name, root, split, **options)


def register_reflacx_splits(root=None, **options):
    _register_splits("reflacx", register_reflacx, root, options)


def register_vindr_splits(root=None, **options):
    _register_splits("vindr", register_vindr, root, options)


def reflacx_options(cfg):
    c = cfg.CXR.REFLACX
    return dict(
        classes=list(c.CLASSES),
        readers=c.READERS,
        fuse_iou=c.FUSE_IOU,
        min_certainty=c.MIN_CERTAINTY,
        drop_discarded_eye_tracking=c.DROP_DISCARDED_EYE_TRACKING,
        image_source=c.IMAGE_SOURCE,
    )


def vindr_options(cfg):
    c = cfg.CXR.VINDR
    return dict(
        classes=list(c.CLASSES),
        readers=c.READERS,
        fuse_iou=c.FUSE_IOU,
        image_cache=c.IMAGE_CACHE,
        val_fraction=c.VAL_FRACTION,
    )


def register_from_config(cfg):
    """(Re-)register every split with the dataset root and options of ``cfg.CXR``.

    With ``CXR.CLINICAL.ENABLED`` each record also carries its raw clinical record.
    """
    root = cfg.CXR.DATASET_ROOT or None
    register_reflacx_splits(root, **reflacx_options(cfg))
    register_vindr_splits(root, **vindr_options(cfg))
    if cfg.CXR.CLINICAL.ENABLED:
        from cxr_det.data.clinical.pipeline import with_clinical

        for dataset in ("reflacx", "vindr"):
            for split in SPLITS:
                name = f"{dataset}_{split}"
                load = DatasetCatalog[name]
                DatasetCatalog.remove(name)
                DatasetCatalog.register(name, with_clinical(load, cfg, dataset, dataset_root(root)))


def register_all_defaults():
    register_reflacx_splits()
    register_vindr_splits()
