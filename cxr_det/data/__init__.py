"""Data: dataset registrars, image reading (PNG/JPEG/DICOM), mapper, augmentations.

Importing this package registers ``reflacx_*`` and ``vindr_*`` under ``$CXR_DATASETS`` with
default options (nothing is read until a split is requested).
"""
from cxr_det.data.datasets.builtin import register_all_defaults, register_from_config
from cxr_det.data.mapper import CXRDatasetMapper

register_all_defaults()

__all__ = ["CXRDatasetMapper", "register_from_config"]
