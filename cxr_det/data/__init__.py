"""Data: dataset registrars, image reading (PNG/JPEG/DICOM), the dataset mapper and
augmentations.

Importing this package registers nothing. Register the datasets explicitly, once per
process and configuration::

    from cxr_det.data import register_from_config
    register_from_config(cfg)          # reflacx_* and vindr_* with cfg.CXR's options

or :func:`register_cxr_datasets` for the defaults (root ``$CXR_DATASETS``). A name means one
set of options (see :mod:`cxr_det.data.datasets.builtin`); :func:`unregister_cxr_datasets`
removes them.
"""
from cxr_det.data.datasets.builtin import (
    DatasetRegistrationError,
    cxr_dataset_names,
    register_cxr_datasets,
    register_from_config,
    unregister_cxr_datasets,
)
from cxr_det.data.mapper import CXRDatasetMapper

__all__ = [
    "CXRDatasetMapper",
    "DatasetRegistrationError",
    "cxr_dataset_names",
    "register_cxr_datasets",
    "register_from_config",
    "unregister_cxr_datasets",
]
