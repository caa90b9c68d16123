"""Reading chest X-ray DICOMs: display-correct 8-bit pixels and cheap header look-ups.

The display pipeline is the one the DICOM standard prescribes for grayscale images
(PS3.3 C.11 "Look Up Tables and Presentation States"): the Modality LUT or Rescale
Slope/Intercept (C.11.1), then the VOI LUT Sequence or the Window Center/Width (C.11.2),
then inversion of MONOCHROME1 (C.7.6.3.1.2) so that bone is always bright, then a linear
map of the display range onto 0..255 (:func:`scale_to_uint8`, the one rule shared with
16-bit PNG/TIFF in :mod:`cxr_det.data.image_io`). ``docs/images.md`` states the rule and
the decoder installed for each transfer syntax.

Irregular but readable files are read, never silently: each departure from the normal path
(a file without preamble/``DICM``/file meta, an invalid window, a decoder fallback) is
logged and appended as a :class:`ReadNote` to the caller's ``notes`` list, so that tools
can count and report them.

This module decodes pixels. Opening a file (from disk or memory) and reading its header
tags is :mod:`cxr_det.data.dicom_header`; the in-memory sources and the read notes are
:mod:`cxr_det.data.image_source`. Their public names are importable from here too.
(Writing DICOMs, for tests and synthetic data: :mod:`cxr_det.synthetic.dicom_writer`.)
"""
import logging

import numpy as np
from pydicom.uid import JPEGExtended12Bit

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_windowing
except ImportError:  # pragma: no cover - pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_windowing

from cxr_det.data.dicom_header import DicomReadError, dicom_size, open_dicom, parse_patient_age, read_dicom_header
from cxr_det.data.image_source import ReadNote, add_note, is_in_memory, memory_bytes, source_label

__all__ = [
    "DicomReadError",
    "ReadNote",
    "is_in_memory",
    "memory_bytes",
    "source_label",
    "SCALINGS",
    "DEFAULT_PERCENTILES",
    "read_dicom",
    "read_dicom_header",
    "dicom_size",
    "parse_patient_age",
    "apply_voi_lut_sequence",
    "intensity_range",
    "scale_to_uint8",
]

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


#: Intensity rules (see :func:`intensity_range`): "auto" uses a DICOM's own VOI LUT or
#: window when it has one, else the full range of its values; "minmax" always the full
#: range; "percentile" a window between two percentiles of the values.
SCALINGS = ("auto", "minmax", "percentile")
DEFAULT_PERCENTILES = (0.5, 99.5)


# ---------------------------------------------------------------------------------------
# Intensity: the one rule that maps any grayscale values onto 8 bits


def intensity_range(values, scaling="minmax", percentiles=DEFAULT_PERCENTILES):
    """``(low, high)`` of ``values`` to map onto 0..255: the full range or a percentile window.

    ``scaling`` "minmax" (or "auto", for images without a VOI of their own) gives the min and
    max of the values, so no value is clipped; "percentile" gives the ``percentiles``
    (two numbers in 0..100, low < high) of the values (numpy's linear interpolation), and
    values outside it are clipped by :func:`scale_to_uint8` (an explicit choice of the caller).
    Raises ValueError for an unknown rule, bad percentiles or an empty array.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"intensity scaling must be one of {SCALINGS}, got {scaling!r}")
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError("intensity_range: empty image")
    if scaling == "percentile":
        lo_p, hi_p = (float(p) for p in percentiles)
        if not 0.0 <= lo_p < hi_p <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {tuple(percentiles)!r}")
        low, high = np.percentile(values, [lo_p, hi_p])
        return float(low), float(high)
    return float(values.min()), float(values.max())


def scale_to_uint8(values, low, high, *, invert=False) -> np.ndarray:
    """Map ``[low, high]`` linearly onto ``0..255`` (rounded half to even), ``uint8`` of ``values``' shape.

    ``round((v - low) * 255 / (high - low))``; values outside ``[low, high]`` become 0 or
    255 (only possible when the range is a window narrower than the data: a DICOM VOI or
    a percentile window). ``high == low`` (a flat image) gives 0. ``invert`` (MONOCHROME1,
    PS3.3 C.7.6.3.1.2) maps ``low`` to 255 and ``high`` to 0.
    """
    values = np.asarray(values, dtype=np.float64)
    low, high = float(low), float(high)
    if high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    if invert:
        scaled = 255.0 - scaled
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# VOI LUT (PS3.3 C.11.2)


def _lut_item_array(item, ds, nr_entries):
    """LUT Data of a LUT item as an int64 array (US list or OW bytes, either byte order)."""
    elem = item["LUTData"]
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        little = True
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if syntax is not None:
            little = syntax.is_little_endian
        data = np.frombuffer(bytes(value), dtype="<u2" if little else ">u2")
    elif isinstance(value, (int, np.integer)):
        data = np.array([value])
    else:
        data = np.asarray(list(value))
    data = data.astype(np.int64)
    if data.size < nr_entries:
        raise ValueError(f"VOI LUT Data has {data.size} entries but its LUT Descriptor declares {nr_entries}")
    return data[:nr_entries]


def apply_voi_lut_sequence(values, ds, index=0):
    """Apply item ``index`` of the VOI LUT Sequence (0028,3010) to modality values.

    PS3.3 C.11.2.1.1: LUT Descriptor = (number of entries, 0 meaning 65536; first value
    mapped, US or SS; bits per entry); an input below the first mapped value takes the
    first entry, one above the last mapped value the last entry. Non-integer inputs (from a
    rescale) are rounded to the nearest integer first. Indices are computed in int64 and
    clipped to the LUT length, so a LUT of more than 256 entries with 8-bit output is
    indexed correctly (pydicom 3.0's ``apply_voi`` builds uint8 indices for 8-bit LUTs and
    wraps: stored 2048 of a 4096-entry ramp came out as 0 instead of 128).

    Returns ``(output, (lut_min, lut_max))``: int64 array of ``values``' shape, and the
    range of the LUT's entries, the display range used by :func:`read_dicom`.
    Raises ValueError for a malformed LUT item.
    """
    item = ds.VOILUTSequence[index]
    descriptor = [int(v) for v in item.LUTDescriptor]
    if len(descriptor) != 3:
        raise ValueError(f"LUT Descriptor must have 3 values, got {descriptor}")
    nr_entries, first_map, _bits = descriptor
    nr_entries = nr_entries or 2**16
    if first_map >= 2**15 and int(ds.get("PixelRepresentation", 0)) == 1:
        first_map -= 2**16  # an SS first-mapped value read as US
    lut = _lut_item_array(item, ds, nr_entries)
    index_array = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64) - first_map
    np.clip(index_array, 0, nr_entries - 1, out=index_array)
    return lut[index_array], (int(lut.min()), int(lut.max()))


def _window_output_range(ds):
    """(low, high) that pydicom's windowing can output for ``ds`` (its display range).

    Probing with values far outside any window gives the range chosen by the file, so an
    image that does not fill its window keeps its intended brightness.
    """
    with np.errstate(over="ignore"):
        out = np.asarray(apply_windowing(np.array([-1e15, 1e15]), ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _apply_voi(values, ds, path, notes):
    """VOI LUT Sequence, else Window Center/Width (first pair), else None: ``(values, (low, high))``."""
    try:
        if ds.get("VOILUTSequence"):
            out, display_range = apply_voi_lut_sequence(values, ds)
            return out.astype(np.float64), display_range
        if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
            out = np.asarray(apply_windowing(values, ds), dtype=np.float64)
            return out, _window_output_range(ds)
    except Exception as e:  # an invalid window (width < 1, empty tag) or LUT: full range instead
        add_note(notes, "invalid_voi", f"{path}: VOI LUT/window not applicable ({e}); using the full range of the pixel values instead", logger)
    return None


# ---------------------------------------------------------------------------------------
# Pixel decoding


def _decode_with_gdcm(path, ds):
    """Pixel data of a single-frame grayscale file decoded by GDCM directly (outside pydicom)."""
    import gdcm  # python-gdcm, an install requirement

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError("GDCM could not read the file")
    image = reader.GetImage()
    pixel_format = image.GetPixelFormat()
    dtype = {
        (8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16,
    }.get((pixel_format.GetBitsAllocated(), pixel_format.GetPixelRepresentation()))
    if dtype is None:
        raise RuntimeError(f"unsupported GDCM pixel format {pixel_format}")
    buffer = image.GetBuffer().encode("utf-8", errors="surrogateescape")
    pixels = np.frombuffer(buffer, dtype=np.dtype(dtype).newbyteorder("<"))
    rows, cols = int(ds.Rows), int(ds.Columns)
    if pixels.size != rows * cols:
        raise RuntimeError(f"GDCM returned {pixels.size} pixels for a {rows}x{cols} image")
    return pixels.reshape(rows, cols)


def _pydicom_decodes_jpeg12():
    """Whether a pydicom plugin other than GDCM/Pillow (which refuse 12-bit samples) can decode 12-bit JPEG Extended."""
    try:
        from pydicom.pixels.decoders.base import get_decoder
    except ImportError:  # pragma: no cover - pydicom 2.x
        return True
    return bool(set(get_decoder(JPEGExtended12Bit).available_plugins) - {"gdcm", "pillow"})


def _decode(path, ds, notes, label=None):
    """``ds.pixel_array``; JPEG Extended with 12-bit samples, which pydicom 3.0 refuses to hand
    to GDCM, is decoded by GDCM directly (a ``decoder_fallback`` note; files on disk only, as
    GDCM's Python binding reads files: in memory it is a :class:`DicomReadError`)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    label = label or source_label(path)
    if syntax == JPEGExtended12Bit and int(ds.get("BitsStored", 8)) > 8 and not _pydicom_decodes_jpeg12():
        try:
            if is_in_memory(path):
                raise RuntimeError("12-bit JPEG Extended is decoded by GDCM from files only, not from memory; "
                                   "decompress the file first (e.g. gdcmconv --raw)")
            pixels = _decode_with_gdcm(path, ds)
        except Exception as e:
            error = e
        else:
            add_note(notes, "decoder_fallback", f"{label}: 12-bit JPEG Extended decoded by GDCM directly, outside pydicom", logger)
            return pixels
    else:
        try:
            return ds.pixel_array
        except Exception as e:  # missing decoder plugins, truncated pixel data, bad tags
            error = e
    raise DicomReadError(
        f"{label}: cannot decode pixel data (transfer syntax {syntax or 'unknown'}; {type(error).__name__}: {error})"
    ) from error


def read_dicom(
    path, *, scaling="auto", percentiles=DEFAULT_PERCENTILES, allow_no_file_meta=True, notes=None, name=None
) -> np.ndarray:
    """Decode a grayscale DICOM into a display-correct ``uint8`` HxW array (0..255).

    Steps (PS3.3 C.11): Modality LUT or RescaleSlope/Intercept; then with ``scaling``
    "auto" the VOI LUT Sequence (:func:`apply_voi_lut_sequence`, display range = range of
    its entries), else the first WindowCenter/WindowWidth pair with its VOILUTFunction
    (pydicom's ``apply_windowing``, display range = the window's output range), else the
    full range of the values; "minmax" / "percentile" ignore the file's VOI and use
    :func:`intensity_range`. Then MONOCHROME1 is inverted and the display range mapped
    onto 0..255 by :func:`scale_to_uint8`. Integer pixels (except with "percentile") go
    through this pipeline once per stored value, then the pixels are looked up in the
    resulting table (:func:`_display_table`): the same bytes, several times faster on
    full-size radiographs.

    Compressed transfer syntaxes are decoded by pydicom's plugins (docs/images.md lists
    the packages per syntax). ``allow_no_file_meta``/``notes``: see :func:`~cxr_det.data.dicom_header.open_dicom`;
    ``notes`` (a list) also receives ``invalid_voi`` and ``decoder_fallback`` notes.
    ``path`` may also be the file's content in memory (``bytes`` or a binary file-like
    object, :func:`is_in_memory`): it is decoded from memory, never written to disk, and
    named ``name`` (e.g. the uploaded file's name) in messages and notes.
    Raises :class:`DicomReadError` naming the file when it is missing, not DICOM, has no
    pixel data, cannot be decoded or is not a single-frame grayscale image; ValueError for
    an unknown ``scaling``.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"intensity scaling must be one of {SCALINGS}, got {scaling!r}")
    ds = open_dicom(path, allow_no_file_meta=allow_no_file_meta, notes=notes, name=name)
    label = source_label(path, name)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise DicomReadError(f"{label}: DICOM has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(
            f"{label}: unsupported PhotometricInterpretation {photometric or '(missing)'!r}; "
            "only grayscale MONOCHROME1/MONOCHROME2 images are supported"
        )
    pixels = _decode(path, ds, notes, label)
    if pixels.ndim != 2:
        raise DicomReadError(f"{label}: expected a single-frame 2-D image, got pixel array of shape {pixels.shape}")

    invert = photometric == "MONOCHROME1"
    domain = _stored_value_domain(pixels) if scaling != "percentile" else None
    if domain is None:
        return _display_pixels(pixels, ds, scaling, percentiles, label, notes, invert)
    low_stored, values = domain
    table = _display_table(pixels, low_stored, values, ds, scaling, label, notes, invert)
    return table[_table_index(pixels, low_stored)]


# ---------------------------------------------------------------------------------------
# Display pipeline: per pixel, or once per stored value through a lookup table

#: Largest number of distinct stored values (max - min + 1) mapped through a lookup table;
#: wider integer ranges (32-bit samples) and float pixel data are mapped pixel by pixel.
DISPLAY_LUT_MAX_ENTRIES = 1 << 16


def _display_pixels(pixels, ds, scaling, percentiles, label, notes, invert):
    """The display pipeline of :func:`read_dicom` applied to every pixel (float64 throughout)."""
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    voi = _apply_voi(values, ds, label, notes) if scaling == "auto" else None
    if voi is not None:
        values, (low, high) = voi
    else:
        low, high = intensity_range(values, scaling, percentiles)
    return scale_to_uint8(values, low, high, invert=invert)


def _stored_value_domain(pixels):
    """``(min, every stored value from min to max)`` (same dtype as ``pixels``) for integer
    pixels whose range holds at most :data:`DISPLAY_LUT_MAX_ENTRIES` values, else None."""
    if pixels.dtype.kind not in "iu" or pixels.size == 0:
        return None
    low, high = int(pixels.min()), int(pixels.max())
    if high - low + 1 > DISPLAY_LUT_MAX_ENTRIES:
        return None
    return low, np.arange(low, high + 1, dtype=pixels.dtype)


def _display_table(pixels, low_stored, domain, ds, scaling, label, notes, invert):
    """uint8 display value of each stored value in ``domain`` (``low_stored`` .. max).

    Every step of the pipeline (modality LUT or rescale, VOI LUT or window, the map onto
    0..255) works value by value, so mapping each stored value once and looking the pixels
    up gives the same bytes as :func:`_display_pixels`; only the display range of an image
    without a VOI ("minmax") depends on which values occur. A rescale is monotonic (so is
    its floating-point rounding): the range is then that of the smallest and largest stored
    values, which both occur; a Modality LUT Sequence need not be, so the values that occur
    are counted.
    """
    values = np.asarray(apply_modality_lut(domain, ds), dtype=np.float64)
    voi = _apply_voi(values, ds, label, notes) if scaling == "auto" else None
    if voi is not None:
        values, (low, high) = voi
    elif ds.get("ModalityLUTSequence"):
        present = np.bincount(_table_index(pixels, low_stored).ravel(), minlength=len(domain)) > 0
        low, high = intensity_range(values[present], scaling)
    else:
        low, high = intensity_range(values[[0, -1]], scaling)
    return scale_to_uint8(values, low, high, invert=invert)


def _table_index(pixels, low_stored):
    """Position of each pixel's stored value in the table that starts at ``low_stored``."""
    if pixels.dtype.kind == "u":
        return pixels - pixels.dtype.type(low_stored) if low_stored else pixels
    return np.subtract(pixels, low_stored, dtype=np.int64 if pixels.dtype.itemsize > 2 else np.int32)
