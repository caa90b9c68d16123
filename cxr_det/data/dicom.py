"""Reading chest X-ray DICOMs: display-correct 8-bit pixels and cheap header look-ups.

The display pipeline is the one the DICOM standard prescribes for grayscale images:
modality LUT / rescale slope and intercept, then the VOI LUT or window (both done by
pydicom), then inversion of MONOCHROME1 so that bone is always bright, then a linear map
onto 0..255.
(Writing DICOMs, for tests and synthetic data: :mod:`cxr_det.data.synthetic.dicom_writer`.)
"""
import logging
import re
from pathlib import Path

import numpy as np
import pydicom

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pragma: no cover - pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

from cxr_det.data.datasets.common import DatasetFormatError

__all__ = [
    "DicomReadError",
    "read_dicom",
    "read_dicom_header",
    "dicom_size",
    "parse_patient_age",
]

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Days per year and weeks per year (Gregorian average), for DICOM Age Strings.
_DAYS_PER_YEAR = 365.2425
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / _DAYS_PER_YEAR, "D": 1.0 / _DAYS_PER_YEAR}
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)


class DicomReadError(DatasetFormatError):
    """A DICOM file is missing, is not DICOM, or has no decodable pixel data."""


def _open(path, **kwargs) -> pydicom.FileDataset:
    """``pydicom.dcmread`` with every failure turned into a :class:`DicomReadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DicomReadError(f"{path}: DICOM file not found")
    try:
        return pydicom.dcmread(str(path), **kwargs)
    except pydicom.errors.InvalidDicomError as e:
        raise DicomReadError(f"{path}: not a DICOM file ({e})") from e
    except Exception as e:  # truncated or corrupt files fail in many ways inside pydicom
        raise DicomReadError(f"{path}: cannot be read as DICOM ({type(e).__name__}: {e})") from e


def _first(value):
    """First item of a multi-valued DICOM element (or the value itself)."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def _float_or_none(value):
    value = _first(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _int_or_none(value):
    value = _first(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_patient_age(value):
    """A DICOM Age String (``065Y``, ``040M``, ``003W``, ``010D``) in years, or None.

    A bare number (``65``, seen in some exports) is read as years. Missing, empty or
    otherwise garbled values give None; ``000Y`` gives 0.0 (it is left to callers to treat
    it as unknown).
    """
    if value is None:
        return None
    match = _AGE_RE.match(str(value))
    if not match:
        return None
    number, unit = match.groups()
    return int(number) * _AGE_UNIT_YEARS[(unit or "Y").upper()]


def _parse_sex(value):
    value = (str(value).strip().upper() if value is not None else "")
    return value if value in ("M", "F", "O") else None


def read_dicom_header(path) -> dict:
    """Header fields of a DICOM without decoding its pixels.

    Returns ``rows``, ``columns``, ``photometric``, ``bits_stored``, ``pixel_spacing``
    ((row, column) mm, from PixelSpacing, else ImagerPixelSpacing, else None),
    ``patient_age_years`` (float or None), ``patient_sex`` ("M"/"F"/"O" or None),
    ``window_center``/``window_width`` (first values or None), ``rescale_slope``/
    ``rescale_intercept`` (or None), and the raw strings ``patient_age_raw``,
    ``patient_sex_raw``, ``transfer_syntax``. Raises :class:`DicomReadError`.
    """
    ds = _open(path, stop_before_pixels=True)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing = tuple(float(v) for v in spacing) if spacing else None
    except (TypeError, ValueError):
        spacing = None
    age_raw = ds.get("PatientAge")
    sex_raw = ds.get("PatientSex")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return {
        "rows": _int_or_none(ds.get("Rows")),
        "columns": _int_or_none(ds.get("Columns")),
        "photometric": str(ds.get("PhotometricInterpretation", "")).strip() or None,
        "bits_stored": _int_or_none(ds.get("BitsStored")),
        "pixel_spacing": spacing,
        "patient_age_years": parse_patient_age(age_raw),
        "patient_sex": _parse_sex(sex_raw),
        "window_center": _float_or_none(ds.get("WindowCenter")),
        "window_width": _float_or_none(ds.get("WindowWidth")),
        "rescale_slope": _float_or_none(ds.get("RescaleSlope")),
        "rescale_intercept": _float_or_none(ds.get("RescaleIntercept")),
        "patient_age_raw": None if age_raw is None else str(age_raw),
        "patient_sex_raw": None if sex_raw is None else str(sex_raw),
        "transfer_syntax": None if syntax is None else str(syntax),
    }


def dicom_size(path):
    """``(height, width)`` of a DICOM image from its Rows/Columns tags (pixels not read)."""
    ds = _open(path, stop_before_pixels=True)
    rows, cols = _int_or_none(ds.get("Rows")), _int_or_none(ds.get("Columns"))
    if not rows or not cols:
        raise DicomReadError(f"{path}: Rows/Columns tags missing or invalid ({rows!r}, {cols!r})")
    return rows, cols


def _voi_output_range(ds):
    """(low, high) of what ``apply_voi_lut`` can output for ``ds``, used to map onto 0..255.

    Probing with the LUT's whole input domain (VOI LUT) or with values far outside any
    window (windowing) gives the display range chosen by the file, so an image that does
    not fill its window keeps its intended brightness.
    """
    lut_seq = ds.get("VOILUTSequence")
    if lut_seq and lut_seq[0].get("LUTDescriptor") is not None and lut_seq[0].get("LUTData") is not None:
        entries, first_map = int(lut_seq[0].LUTDescriptor[0]) or 2**16, int(lut_seq[0].LUTDescriptor[1])
        probe = np.arange(first_map, first_map + entries, dtype=np.int64)
    else:
        probe = np.array([-1e15, 1e15])
    with np.errstate(over="ignore"):
        out = np.asarray(apply_voi_lut(probe, ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _has_voi(ds) -> bool:
    lut_seq = ds.get("VOILUTSequence")
    has_lut = bool(lut_seq) and lut_seq[0].get("LUTData") is not None
    return has_lut or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None)


def read_dicom(path) -> np.ndarray:
    """Decode a grayscale DICOM into a display-correct ``uint8`` HxW array.

    Steps: modality LUT or RescaleSlope/Intercept; the VOI LUT, else the first
    WindowCenter/WindowWidth pair (a file without either, or whose window is invalid, is
    min-max scaled); MONOCHROME1 inverted; linear map onto 0..255 (rounded).
    Raises :class:`DicomReadError` naming the file when it is missing, not DICOM, has no
    pixel data, cannot be decoded (e.g. a compressed transfer syntax without its
    decoder installed) or is not a single-frame grayscale image.
    """
    ds = _open(path)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise DicomReadError(f"{path}: DICOM has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(
            f"{path}: unsupported PhotometricInterpretation {photometric or '(missing)'!r}; "
            "only grayscale MONOCHROME1/MONOCHROME2 images are supported"
        )
    try:
        pixels = ds.pixel_array
    except Exception as e:  # missing decoder plugins, truncated pixel data, bad tags
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DicomReadError(
            f"{path}: cannot decode pixel data (transfer syntax {syntax}; {type(e).__name__}: {e})"
        ) from e
    if pixels.ndim != 2:
        raise DicomReadError(f"{path}: expected a single-frame 2-D image, got pixel array of shape {pixels.shape}")

    values = apply_modality_lut(pixels, ds)
    low = high = None
    if _has_voi(ds):
        try:
            if ds.get("VOILUTSequence") and values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
                values = values.astype(np.int64)  # VOI LUTs index by integer values
            windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
            low, high = _voi_output_range(ds)
            values = windowed
        except Exception as e:  # an invalid window (width < 1, empty tag) falls back to min-max
            logger.warning("%s: VOI LUT/window not applicable (%s); using the pixel range instead", path, e)
            low = high = None
    values = np.asarray(values, dtype=np.float64)
    if low is None:
        low, high = float(values.min()), float(values.max())
    if high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
