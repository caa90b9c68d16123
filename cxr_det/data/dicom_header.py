"""Opening chest X-ray DICOMs and reading their header, without decoding the pixels.

:func:`open_dicom` is the one way a DICOM is opened (from a path or from memory, see
:mod:`cxr_det.data.image_source`), turning every failure into a :class:`DicomReadError` that
names the file; files without the PS3.10 preamble/``DICM``/file meta are read anyway, with a
``no_file_meta`` note. :func:`read_dicom_header` parses the tags the project uses (PS3.3
C.7.1.1 Patient: Age String as PS3.5 6.2 VR "AS", Patient's Sex; C.7.6.3 Image Pixel;
C.11.2 VOI window; C.11.1 modality rescale), and :func:`dicom_size` the image size only.
Pixels are decoded by :func:`cxr_det.data.dicom.read_dicom`.
"""
import io
import logging
import re
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.image_source import add_note, is_in_memory, memory_bytes, source_label
from cxr_det.data.values import parse_number

__all__ = [
    "DicomReadError",
    "open_dicom",
    "read_dicom_header",
    "dicom_size",
    "parse_patient_age",
]

logger = logging.getLogger(__name__)

# Days per year and weeks per year (Gregorian average), for DICOM Age Strings.
_DAYS_PER_YEAR = 365.2425
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / _DAYS_PER_YEAR, "D": 1.0 / _DAYS_PER_YEAR}
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)


class DicomReadError(DatasetFormatError):
    """A DICOM file is missing, is not DICOM, or has no decodable pixel data."""


def _implied_transfer_syntax(ds):
    """Transfer syntax of a dataset read without file meta, from the encoding pydicom detected."""
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def open_dicom(path, *, allow_no_file_meta=True, notes=None, name=None, **kwargs) -> pydicom.FileDataset:
    """``pydicom.dcmread`` with every failure turned into a :class:`DicomReadError` naming the file.

    ``path``: a file, or the file's content in memory (:func:`is_in_memory`; read from
    memory, never written to disk), then named ``name`` in messages (:func:`source_label`).

    A file without the 128-byte preamble, the ``DICM`` prefix or the File Meta Information
    group (PS3.10 7.1) is read with ``force=True`` when ``allow_no_file_meta`` (the
    transfer syntax is then the uncompressed one pydicom detects, recorded in
    ``file_meta``), with a ``no_file_meta`` note; it must then hold Rows and Columns, else
    it is not taken for DICOM. With ``allow_no_file_meta=False`` it raises.
    """
    label = source_label(path, name)
    if is_in_memory(path):
        data = memory_bytes(path)
        if not data:
            raise DicomReadError(f"{label}: empty file, not a DICOM")

        def read(**options):
            return pydicom.dcmread(io.BytesIO(data), **options)
    else:
        if not Path(path).is_file():
            raise DicomReadError(f"{label}: DICOM file not found")

        def read(**options):
            return pydicom.dcmread(str(path), **options)
    try:
        return read(**kwargs)
    except pydicom.errors.InvalidDicomError as e:
        if not allow_no_file_meta:
            raise DicomReadError(
                f"{label}: not a DICOM file ({e}); files without the DICOM preamble/'DICM'/file meta "
                "are rejected because allow_no_file_meta=False"
            ) from e
        first_error = e
    except Exception as e:  # truncated or corrupt files fail in many ways inside pydicom
        raise DicomReadError(f"{label}: cannot be read as DICOM ({type(e).__name__}: {e})") from e
    try:
        ds = read(force=True, **kwargs)
    except Exception as e:
        raise DicomReadError(f"{label}: not a DICOM file ({first_error}; forced read failed: {e})") from e
    if "Rows" not in ds or "Columns" not in ds:
        raise DicomReadError(
            f"{label}: not a DICOM file ({first_error}; read without file meta it has no Rows/Columns)"
        )
    syntax = _implied_transfer_syntax(ds)
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise DicomReadError(
            f"{label}: no DICOM file meta, and its pixel data is encapsulated (compressed), so its "
            "transfer syntax is unknown; rewrite it with a file meta header (e.g. gdcmconv)"
        )
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    add_note(
        notes,
        "no_file_meta",
        f"{label}: no DICOM preamble/'DICM'/file meta; read anyway as {syntax.name} "
        "(pass allow_no_file_meta=False to reject such files)",
        logger,
    )
    return ds


def _tag(ds, keyword, path, name=None, notes=None):
    """``ds.get(keyword)``, or None when the element's bytes cannot be decoded as its VR.

    pydicom decodes an element when it is first read, so a file that opened fine can still
    hold a ``Rows`` of 3 bytes for VR US, or a ``WindowCenter`` of ``"a\\b"`` for VR DS;
    such a tag reads as missing, with a ``bad_tag`` note naming the file (``path``, or
    ``name`` for a file in memory) and the tag.
    """
    try:
        return ds.get(keyword)
    except Exception as e:  # BytesLengthException, ValueError, struct.error, UnicodeDecodeError, ...
        add_note(
            notes,
            "bad_tag",
            f"{source_label(path, name)}: tag {keyword} cannot be decoded ({type(e).__name__}: {e}); read as missing",
            logger,
        )
        return None


def _first(value):
    """First item of a multi-valued DICOM element (or the value itself)."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def _float_or_none(value):
    """The (first) value of a DS/IS tag as a finite float, or None (missing, text, NaN, inf)."""
    return parse_number(_first(value))[0]


def _int_or_none(value):
    """The (first) value of a US/IS tag (Rows, BitsStored) as an int, or None when ``int()``
    rejects it. Not :func:`~cxr_det.data.values.parse_number`: a count is an integer, and
    ``int()`` keeps the header reader's behaviour for text such as ``"2.5"`` (None)."""
    value = _first(value)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an IS/DS of inf
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
    """Patient's Sex (0010,0040) as ``"M"``, ``"F"`` or ``"O"`` (case and spaces ignored), else None."""
    value = (str(value).strip().upper() if value is not None else "")
    return value if value in ("M", "F", "O") else None


def read_dicom_header(path, *, allow_no_file_meta=True, notes=None, name=None) -> dict:
    """Header fields of a DICOM without decoding its pixels.

    Returns ``rows``, ``columns``, ``photometric``, ``bits_stored``, ``pixel_spacing``
    ((row, column) mm, from PixelSpacing, else ImagerPixelSpacing, else None; positive),
    ``patient_age_years`` (float or None), ``patient_sex`` ("M"/"F"/"O" or None),
    ``window_center``/``window_width`` (first values or None), ``rescale_slope``/
    ``rescale_intercept`` (or None), and the raw strings ``patient_age_raw``,
    ``patient_sex_raw``, ``transfer_syntax``. A tag whose bytes cannot be decoded as its VR
    reads as missing (None), with a ``bad_tag`` note. Raises :class:`DicomReadError`; a file
    without file meta is read as in :func:`read_dicom` (``allow_no_file_meta``, ``notes``).
    ``path`` may be the file's content in memory, named ``name`` (as in :func:`read_dicom`).
    """
    ds = open_dicom(path, stop_before_pixels=True, allow_no_file_meta=allow_no_file_meta, notes=notes, name=name)

    def tag(keyword):
        return _tag(ds, keyword, path, name, notes)

    spacing = tag("PixelSpacing") or tag("ImagerPixelSpacing")
    try:
        spacing = tuple(parse_number(v)[0] for v in spacing) if spacing else None
    except TypeError:  # a single number, not a pair
        spacing = None
    if spacing is not None and (len(spacing) != 2 or not all(v is not None and v > 0 for v in spacing)):
        spacing = None
    age_raw = tag("PatientAge")
    sex_raw = tag("PatientSex")
    meta = getattr(ds, "file_meta", None)
    syntax = _tag(meta, "TransferSyntaxUID", path, name, notes) if meta is not None else None
    return {
        "rows": _int_or_none(tag("Rows")),
        "columns": _int_or_none(tag("Columns")),
        "photometric": str(tag("PhotometricInterpretation") or "").strip() or None,
        "bits_stored": _int_or_none(tag("BitsStored")),
        "pixel_spacing": spacing,
        "patient_age_years": parse_patient_age(age_raw),
        "patient_sex": _parse_sex(sex_raw),
        "window_center": _float_or_none(tag("WindowCenter")),
        "window_width": _float_or_none(tag("WindowWidth")),
        "rescale_slope": _float_or_none(tag("RescaleSlope")),
        "rescale_intercept": _float_or_none(tag("RescaleIntercept")),
        "patient_age_raw": None if age_raw is None else str(age_raw),
        "patient_sex_raw": None if sex_raw is None else str(sex_raw),
        "transfer_syntax": None if syntax is None else str(syntax),
    }


def dicom_size(path, *, allow_no_file_meta=True, notes=None, name=None):
    """``(height, width)`` of a DICOM image from its Rows/Columns tags (pixels not read).

    Raises :class:`DicomReadError` (naming the file and the tags) when Rows or Columns is
    missing, undecodable or not a positive integer; files without file meta, and files in
    memory (``name``), as in :func:`read_dicom`.
    """
    ds = open_dicom(path, stop_before_pixels=True, allow_no_file_meta=allow_no_file_meta, notes=notes, name=name)
    rows, cols = _int_or_none(_tag(ds, "Rows", path, name, notes)), _int_or_none(_tag(ds, "Columns", path, name, notes))
    if not rows or not cols or rows < 0 or cols < 0:
        raise DicomReadError(f"{source_label(path, name)}: Rows/Columns tags missing or invalid ({rows!r}, {cols!r})")
    return rows, cols
