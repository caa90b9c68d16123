"""Synthetic chest X-ray datasets written in the real datasets' on-disk formats.

:func:`make_reflacx` writes REFLACX with its MIMIC-CXR-JPG images and MIMIC-IV-ED /
MIMIC-IV clinical tables; :func:`make_vindr` writes VinDr-CXR DICOMs and annotations in
the PhysioNet or Kaggle layout. For image-level classification,
:func:`~.chexpert_writer.make_chexpert` writes CheXpert v1.0,
:func:`~.mimic_labels_writer.make_mimic_cxr_labels` the MIMIC-CXR-JPG label tables (with
MIMIC-IV-ED / MIMIC-IV tables to join), and :mod:`.image_label_writers` VinDr-CXR image
labels and folders of classes; their images show their findings, except Atelectasis, which
depends on the patient's age alone (:mod:`.finding_labels`), so that the benefit of
clinical data is measurable. All are deterministic in their seed, so tests and the demos
run on files shaped exactly like the credentialed originals.

Not imported by ``cxr_det`` or ``cxr_det.data``: only the tests, ``tools/make_synthetic.py``
and the demo need it. Modules:

* :mod:`.dataset_writer`: files under a dataset root, byte-stable (gzipped) CSV tables,
  the marker that makes a folder safe to overwrite;
* :mod:`.reflacx_writer`, :mod:`.mimic_writer`, :mod:`.vindr_writer`: what each format's
  files hold; :mod:`.dicom_writer`: DICOM encoding;
* :mod:`.anatomy` (background, anatomy, shape primitives), :mod:`.painters` and
  :mod:`.lung_painters` (one painter per lesion pattern), :mod:`.render` (painter tables,
  composition);
* :mod:`.finding_labels` (which observations a synthetic study has, the clinical-only label)
  and :mod:`.finding_painters` (the CheXpert observations drawn on an image);
  :mod:`.chexpert_writer`, :mod:`.mimic_labels_writer`, :mod:`.image_label_writers`.
"""
from cxr_det.synthetic.anatomy import render_background
from cxr_det.synthetic.dicom_writer import write_dicom
from cxr_det.synthetic.reflacx_writer import make_reflacx
from cxr_det.synthetic.render import (
    PAINTERS,
    REFLACX_CLASS_PAINTERS,
    VINDR_CLASS_PAINTERS,
    render_image,
)
from cxr_det.synthetic.vindr_writer import make_vindr

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
