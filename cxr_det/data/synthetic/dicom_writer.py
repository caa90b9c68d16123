"""Write a valid, deterministic grayscale DICOM file from a uint16 array (pydicom).

The files look like the digital radiographs of VinDr-CXR and MIMIC-CXR: a DX image in
Explicit VR Little Endian with a file meta header, 16-bit allocation and a chosen
BitsStored, MONOCHROME1 or MONOCHROME2, optional RescaleSlope/Intercept,
WindowCenter/Width, PixelSpacing and patient tags. UIDs derive from ``uid_key`` so the
same inputs always give the same bytes.
"""
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = ["DX_FOR_PRESENTATION", "write_dicom", "encode_display"]

# Digital X-Ray Image Storage - For Presentation.
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def _ds(value):
    """A DICOM Decimal String (max 16 characters) for a number."""
    text = f"{float(value):.6g}"
    return text[:16]


def encode_display(display, bits_stored, photometric="MONOCHROME2", low=0.05, high=0.9):
    """Map a display image (float in [0,1], 1 = bright) onto stored integer pixel values.

    The body occupies ``low..high`` of the stored range. MONOCHROME1 stores the inverted
    values, so a viewer that inverts MONOCHROME1 shows the original image. Returns a
    uint16 array and the stored (min, max) of the mapping, for choosing a window.
    """
    max_value = (1 << int(bits_stored)) - 1
    lo, hi = low * max_value, high * max_value
    stored = lo + np.clip(display, 0.0, 1.0) * (hi - lo)
    if photometric == "MONOCHROME1":
        stored = max_value - stored
        lo, hi = max_value - hi, max_value - lo
    return np.clip(np.rint(stored), 0, max_value).astype(np.uint16), (lo, hi)


def write_dicom(
    path,
    pixels,
    *,
    bits_stored=16,
    photometric="MONOCHROME2",
    uid_key="",
    window=None,
    rescale=None,
    pixel_spacing=None,
    patient_id=None,
    patient_age=None,
    patient_sex=None,
    view_position=None,
    extra_tags=None,
    **tags,
):
    """Write ``pixels`` (2-D uint16, values < 2**bits_stored) as a DX DICOM at ``path``.

    ``window``: (center, width) in modality units, or None for no VOI tags.
    ``rescale``: (slope, intercept), or None for no rescale tags.
    ``pixel_spacing``: mm per pixel (float or (row, col) pair). ``patient_age`` is a DICOM
    age string such as ``"065Y"``; ``None`` leaves a tag out. ``extra_tags`` / ``tags``:
    more DICOM keyword -> value pairs (``WindowCenter=[2048, 500]``). Returns the path written.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"write_dicom: pixels must be 2-D, got shape {pixels.shape}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"write_dicom: unsupported photometric interpretation {photometric!r}")
    bits_stored = int(bits_stored)
    if not 1 <= bits_stored <= 16:
        raise ValueError(f"write_dicom: bits_stored must be in 1..16, got {bits_stored}")
    if pixels.size and int(pixels.max()) >= (1 << bits_stored):
        raise ValueError(f"write_dicom: pixel values exceed {bits_stored} stored bits")
    pixels = np.ascontiguousarray(pixels, dtype="<u2")

    key = str(uid_key or Path(path).stem)
    sop_uid = generate_uid(entropy_srcs=[key, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[key, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[key, "series"])
    ds.Modality = "DX"
    ds.PatientID = patient_id if patient_id is not None else key[:16]
    if patient_age is not None:
        ds.PatientAge = patient_age
    if patient_sex is not None:
        ds.PatientSex = patient_sex
    if view_position is not None:
        ds.ViewPosition = view_position
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if pixel_spacing is not None:
        sp = pixel_spacing if isinstance(pixel_spacing, (tuple, list)) else (pixel_spacing, pixel_spacing)
        ds.PixelSpacing = [_ds(sp[0]), _ds(sp[1])]
    if rescale is not None:
        ds.RescaleSlope = _ds(rescale[0])
        ds.RescaleIntercept = _ds(rescale[1])
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = _ds(window[0])
        ds.WindowWidth = _ds(window[1])
    for keyword, value in {**(extra_tags or {}), **tags}.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except TypeError:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
    return path
