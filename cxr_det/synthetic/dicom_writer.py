"""Write a valid, deterministic grayscale DICOM file from a uint16 array (pydicom).

The files look like the digital radiographs of VinDr-CXR and MIMIC-CXR: a DX image with a
file meta header, 16-bit allocation (or 8) and a chosen BitsStored, MONOCHROME1 or
MONOCHROME2, optional RescaleSlope/Intercept, WindowCenter/Width, a VOI LUT Sequence,
PixelSpacing and patient tags. By default the transfer syntax is Explicit VR Little
Endian; :data:`WRITABLE_TRANSFER_SYNTAXES` lists the others it can write, and which
encoder writes each. ``file_meta=False`` writes a bare dataset without preamble, ``DICM``
or file meta (as some old PACS exports do). UIDs derive from ``uid_key``.
"""
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = ["DX_FOR_PRESENTATION", "WRITABLE_TRANSFER_SYNTAXES", "write_dicom", "encode_display"]

#: Transfer syntax UID -> the encoder that writes it: pydicom itself (uncompressed,
#: deflate, RLE), pydicom's pyjpegls plugin (JPEG-LS), its pylibjpeg-openjpeg plugin
#: (JPEG 2000), or GDCM's ImageChangeTransferSyntax (the JPEG family, for which pydicom
#: 3.0 has no encoder).
WRITABLE_TRANSFER_SYNTAXES = {
    _uid.ImplicitVRLittleEndian: "pydicom",
    _uid.ExplicitVRLittleEndian: "pydicom",
    _uid.ExplicitVRBigEndian: "pydicom",
    _uid.DeflatedExplicitVRLittleEndian: "pydicom",
    _uid.RLELossless: "pydicom",
    _uid.JPEGLSLossless: "pyjpegls",
    _uid.JPEGLSNearLossless: "pyjpegls",
    _uid.JPEG2000Lossless: "pylibjpeg",
    _uid.JPEG2000: "pylibjpeg",
    _uid.JPEGBaseline8Bit: "gdcm",
    _uid.JPEGExtended12Bit: "gdcm",
    _uid.JPEGLossless: "gdcm",
    _uid.JPEGLosslessSV1: "gdcm",
}
_UNCOMPRESSED = (
    _uid.ImplicitVRLittleEndian,
    _uid.ExplicitVRLittleEndian,
    _uid.ExplicitVRBigEndian,
    _uid.DeflatedExplicitVRLittleEndian,
)
# Lossy settings: JPEG-LS near-lossless error bound; JPEG 2000 compression ratio.
_PYDICOM_COMPRESS_OPTIONS = {
    _uid.JPEGLSNearLossless: {"jls_error": 2},
    _uid.JPEG2000: {"j2k_cr": [5]},
}

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
    voi_lut=None,
    transfer_syntax=ExplicitVRLittleEndian,
    bits_allocated=16,
    file_meta=True,
    extra_tags=None,
    **tags,
):
    """Write ``pixels`` (2-D uint16, values < 2**bits_stored) as a DX DICOM at ``path``.

    ``window``: (center, width) in modality units, or None for no VOI tags.
    ``rescale``: (slope, intercept), or None for no rescale tags.
    ``pixel_spacing``: mm per pixel (float or (row, col) pair). ``patient_age`` is a DICOM
    age string such as ``"065Y"``; ``None`` leaves a tag out. ``extra_tags`` / ``tags``:
    more DICOM keyword -> value pairs (``WindowCenter=[2048, 500]``).
    ``voi_lut``: ``(first_mapped, bits_per_entry, entries)`` for a one-item VOI LUT Sequence
    (PS3.3 C.11.2.1.1; LUT Data written as US). ``transfer_syntax``: a key of
    :data:`WRITABLE_TRANSFER_SYNTAXES` (JPEG Baseline needs ``bits_allocated=8``).
    ``bits_allocated``: 16, or 8 for ``bits_stored`` <= 8. ``file_meta=False``: no preamble,
    ``DICM`` or file meta group (uncompressed syntaxes only). Returns the path written.
    Raises ValueError for inputs it cannot write, RuntimeError when an encoder fails.
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
    bits_allocated = int(bits_allocated)
    if bits_allocated not in (8, 16) or bits_stored > bits_allocated:
        raise ValueError(f"write_dicom: bits_allocated must be 8 or 16 and >= bits_stored, got {bits_allocated}")
    transfer_syntax = _uid.UID(str(transfer_syntax))
    if transfer_syntax not in WRITABLE_TRANSFER_SYNTAXES:
        raise ValueError(
            f"write_dicom: cannot write transfer syntax {transfer_syntax} ({transfer_syntax.name}); "
            f"writable: {sorted(WRITABLE_TRANSFER_SYNTAXES)}"
        )
    if not file_meta and transfer_syntax not in (_uid.ImplicitVRLittleEndian, _uid.ExplicitVRLittleEndian):
        raise ValueError("write_dicom: file_meta=False needs an uncompressed little-endian transfer syntax")
    pixels = np.ascontiguousarray(pixels, dtype="<u2" if bits_allocated == 16 else "u1")

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
    ds.BitsAllocated = bits_allocated
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
    if voi_lut is not None:
        first_mapped, bits_per_entry, entries = voi_lut
        item = Dataset()
        item.add_new(0x00283002, "US", [len(entries) % 65536, int(first_mapped), int(bits_per_entry)])
        item.add_new(0x00283006, "US", [int(v) for v in entries])
        ds.VOILUTSequence = Sequence([item])
    for keyword, value in {**(extra_tags or {}), **tags}.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = WRITABLE_TRANSFER_SYNTAXES[transfer_syntax]
    if not file_meta:
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(
            str(path), ds, implicit_vr=transfer_syntax == _uid.ImplicitVRLittleEndian,
            little_endian=True, enforce_file_format=False,
        )
    elif transfer_syntax in _UNCOMPRESSED:
        meta.TransferSyntaxUID = transfer_syntax
        if transfer_syntax == _uid.ExplicitVRBigEndian:
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
            pydicom.dcmwrite(str(path), ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
        else:
            ds.save_as(str(path), enforce_file_format=True)
    elif encoder == "gdcm":
        ds.save_as(str(path), enforce_file_format=True)
        _gdcm_transcode(path, transfer_syntax)
    else:
        ds.compress(transfer_syntax, pixels, encoding_plugin=encoder, **_PYDICOM_COMPRESS_OPTIONS.get(transfer_syntax, {}))
        ds.save_as(str(path), enforce_file_format=True)
    return path


def _gdcm_transcode(path, transfer_syntax):
    """Rewrite the uncompressed file at ``path`` in a JPEG transfer syntax with GDCM."""
    import gdcm  # python-gdcm, an install requirement

    target = {
        _uid.JPEGBaseline8Bit: gdcm.TransferSyntax.JPEGBaselineProcess1,
        _uid.JPEGExtended12Bit: gdcm.TransferSyntax.JPEGExtendedProcess2_4,
        _uid.JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14,
        _uid.JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
    }[transfer_syntax]
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"write_dicom: GDCM cannot read back {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(target))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"write_dicom: GDCM cannot encode {path} as {transfer_syntax.name}")
    tmp = Path(path).with_name(Path(path).name + ".partial")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(tmp))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"write_dicom: GDCM cannot write {tmp}")
    os.replace(tmp, path)
