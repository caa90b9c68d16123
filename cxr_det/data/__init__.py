"""Data: dataset registrars, image reading (PNG/JPEG/DICOM), the dataset mappers (detection and
image-level classification), augmentations, the classification loaders and imbalance samplers.

Importing this package registers nothing. Register the datasets explicitly, once per
process and configuration::

    from cxr_det.data import register_from_config
    register_from_config(cfg)          # every dataset's splits with cfg.CXR's options

(detection ``reflacx_*``, ``vindr_*``; classification ``chexpert_*``, ``mimic_cxr_*``,
``vindr_labels_*``, and ``folder_*`` when ``CXR.IMAGE_FOLDER.NAME`` is set), or
:func:`register_cxr_datasets` for the defaults (root ``$CXR_DATASETS``) or a selection of
datasets. A name means one set of options (see :mod:`cxr_det.data.datasets.builtin`);
:func:`unregister_cxr_datasets` removes them.
"""
from cxr_det.data.datasets.builtin import (
    DATASETS,
    DatasetRegistrationError,
    cxr_dataset_names,
    dataset_options,
    register_cxr_datasets,
    register_from_config,
    unregister_cxr_datasets,
)
from cxr_det.data.classification_loader import build_classification_test_loader, build_classification_train_loader
from cxr_det.data.classification_mapper import ClassificationDatasetMapper
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.data.samplers import ClassBalancedSampler, image_repeat_factors

__all__ = [
    "CXRDatasetMapper",
    "ClassificationDatasetMapper",
    "ClassBalancedSampler",
    "image_repeat_factors",
    "build_classification_train_loader",
    "build_classification_test_loader",
    "DATASETS",
    "DatasetRegistrationError",
    "cxr_dataset_names",
    "dataset_options",
    "register_cxr_datasets",
    "register_from_config",
    "unregister_cxr_datasets",
]
