"""Synthetic chest X-ray datasets written in the real datasets' on-disk formats.

:func:`make_reflacx` writes REFLACX with its MIMIC-CXR-JPG images and MIMIC-IV-ED /
MIMIC-IV clinical tables; :func:`make_vindr` writes VinDr-CXR DICOMs and annotations in
the PhysioNet or Kaggle layout. Both are deterministic in their seed, so tests and the
demo run on files shaped exactly like the credentialed originals.
"""
from cxr_det.data.synthetic.dicom_writer import write_dicom
from cxr_det.data.synthetic.reflacx import make_reflacx
from cxr_det.data.synthetic.render import (
    PAINTERS,
    REFLACX_CLASS_PAINTERS,
    VINDR_CLASS_PAINTERS,
    render_background,
    render_image,
)
from cxr_det.data.synthetic.vindr import make_vindr

__all__ = [
    "make_reflacx",
    "make_vindr",
    "write_dicom",
    "render_image",
    "render_background",
    "PAINTERS",
    "REFLACX_CLASS_PAINTERS",
    "VINDR_CLASS_PAINTERS",
]
