"""Read chest X-ray images (PNG, JPEG or DICOM) into the array layout a detectron2 model expects."""
from pathlib import Path

import numpy as np

from detectron2.data import detection_utils

DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom(path) -> bool:
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def gray_to_format(gray: np.ndarray, image_format: str) -> np.ndarray:
    """A uint8 HxW grayscale image as HxWxC in detectron2's ``INPUT.FORMAT`` ("BGR", "RGB", "L")."""
    if image_format == "L":
        return gray[:, :, None]
    if image_format in ("BGR", "RGB"):
        return np.repeat(gray[:, :, None], 3, axis=2)
    raise ValueError(f"INPUT.FORMAT {image_format!r} is not supported for chest X-rays; use BGR, RGB or L")


def read_image(path, image_format: str = "BGR") -> np.ndarray:
    """Read an image file as uint8 HxWxC in ``image_format``.

    DICOMs are decoded display-correct (rescale, VOI LUT / window, MONOCHROME1 inverted) by
    :func:`cxr_det.data.dicom.read_dicom`; other files by detectron2's reader (EXIF-aware).
    """
    if is_dicom(path):
        from cxr_det.data.dicom import read_dicom

        return gray_to_format(read_dicom(path), image_format)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    return detection_utils.read_image(str(path), format=image_format)
