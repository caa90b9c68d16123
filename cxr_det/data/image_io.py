"""Read chest X-ray images (DICOM, PNG, JPEG, TIFF, ...) as display-correct 8-bit grayscale.

:func:`read_gray` is the project's one image reader: training (the dataset mapper),
evaluation, ``tools/predict.py``, the visualizers and the VinDr-CXR PNG cache all call it
(or :func:`read_image`, which lays its result out in detectron2's ``INPUT.FORMAT``).
The rule, stated in ``docs/images.md``:

- DICOM: :func:`cxr_det.data.dicom.read_dicom` (modality rescale, VOI LUT / window,
  MONOCHROME1 inverted).
- Other files are decoded by Pillow with their EXIF/TIFF orientation applied. 8-bit
  grayscale is kept as stored. Grayscale with more than 8 bits (PIL modes ``I;16*``,
  ``I``, ``F``: 16-bit PNG/TIFF, 32-bit TIFF) is mapped onto 0..255 by the same rule as a
  DICOM without VOI: its full value range, or a percentile window as an option
  (:func:`cxr_det.data.dicom.intensity_range`); never clipped to 255.
- Colour (RGB, RGBA, palette, 16-bit RGB PNG/TIFF) becomes grayscale: identical channels
  are taken as they are; differing channels are merged with ITU-R BT.601 luma weights
  (0.299 R + 0.587 G + 0.114 B) and a ``color_to_gray`` note; a non-opaque alpha channel
  is discarded with an ``alpha_ignored`` note.

Every reader also takes the file's content in memory instead of a path (``bytes`` or a
binary file-like object, with an optional ``name`` hint such as an uploaded file's name):
it is decoded from memory and never written to disk (the web service reads uploads so). A
source in memory is a DICOM when its name ends in ``.dcm``/``.dicom`` or its bytes carry the
``DICM`` prefix at offset 128 (:func:`is_dicom`).

Readable files that leave the normal path produce :class:`ReadNote` entries in the
caller's ``notes`` list (and a logged warning), so that tools can count them.
"""
import io
import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.dicom import DEFAULT_PERCENTILES, SCALINGS, intensity_range, read_dicom, scale_to_uint8
from cxr_det.data.image_source import ReadNote, add_note, is_in_memory, memory_bytes, source_label

__all__ = [
    "DICOM_SUFFIXES",
    "SCALINGS",
    "DEFAULT_PERCENTILES",
    "ImageReadError",
    "ReadNote",
    "is_dicom",
    "is_in_memory",
    "gray_to_format",
    "read_gray",
    "read_image",
]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# EXIF/TIFF Orientation (tag 0x0112) -> the transpose that displays the image upright
# (the same table as Pillow's ImageOps.exif_transpose), for pixels decoded outside Pillow.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageReadError(DatasetFormatError):
    """A non-DICOM image file cannot be decoded, or holds something other than one 2-D image."""


DICOM_MAGIC_OFFSET = 128  # PS3.10 7.1: a 128-byte preamble, then "DICM"


def is_dicom(path, name=None) -> bool:
    """Whether ``path`` names a DICOM by its suffix (``.dcm``, ``.dicom``, any case).

    For a file held in memory (``bytes`` or a binary file-like object, see
    :func:`cxr_det.data.image_source.is_in_memory`): its ``name`` hint (else the file-like's
    ``name`` attribute) ends in such a suffix, or its bytes hold ``DICM`` at offset 128.
    """
    if not is_in_memory(path):
        return Path(path).suffix.lower() in DICOM_SUFFIXES
    label = source_label(path, name)
    if Path(label).suffix.lower() in DICOM_SUFFIXES:
        return True
    head = memory_bytes(path, limit=DICOM_MAGIC_OFFSET + 4)
    return head[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def gray_to_format(gray: np.ndarray, image_format: str) -> np.ndarray:
    """A uint8 HxW grayscale image as HxWxC in detectron2's ``INPUT.FORMAT`` ("BGR", "RGB", "L").

    "BGR"/"RGB" repeat the gray channel 3 times (C = 3); "L" gives C = 1. Raises
    ValueError for other formats.
    """
    if image_format == "L":
        return gray[:, :, None]
    if image_format in ("BGR", "RGB"):
        return np.repeat(gray[:, :, None], 3, axis=2)
    raise ValueError(f"INPUT.FORMAT {image_format!r} is not supported for chest X-rays; use BGR, RGB or L")


def _sixteen_bit_color(source, image) -> bool:
    """Whether a file (path or bytes) Pillow opened as 8-bit RGB(A) really stores 16 bits per sample (PNG or TIFF)."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    if image.format == "PNG":
        if isinstance(source, bytes):
            header = source[:26]
        else:
            with open(source, "rb") as f:
                header = f.read(26)
        return len(header) == 26 and header[24] == 16  # IHDR bit depth
    if image.format == "TIFF":
        bits = image.tag_v2.get(258)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(b is not None and int(b) > 8 for b in bits)
    return False


def _color_to_gray(channels: np.ndarray, alpha, path, notes) -> np.ndarray:
    """HxWx3 RGB (uint8 or uint16) to HxW of the same dtype: the channel itself when all three
    agree, else BT.601 luma rounded to the nearest integer (notes as in the module docstring)."""
    if alpha is not None and np.any(alpha != np.iinfo(alpha.dtype).max):
        add_note(notes, "alpha_ignored", f"{path}: alpha channel is not fully opaque; it was ignored", logger)
    r, g, b = (channels[..., i] for i in range(3))
    if np.array_equal(r, g) and np.array_equal(g, b):
        return np.ascontiguousarray(r)
    add_note(notes, "color_to_gray", f"{path}: colour channels differ; converted to gray with BT.601 luma weights", logger)
    luma = channels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.rint(luma).astype(channels.dtype)


def _decode_pillow(source, notes, path=None):
    """Decoded pixels of a non-DICOM file, upright: HxW gray of its stored type (uint8, uint16, int32, float32).

    ``source``: a path, or the file's bytes (decoded in memory); ``path``: its name in messages.
    """
    path = source if path is None else path
    buffer = io.BytesIO(source) if isinstance(source, bytes) else None
    try:
        with Image.open(source if buffer is None else buffer) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise ImageReadError(f"{path}: holds {image.n_frames} frames; only single-image files are supported")
            orientation = image.getexif().get(0x0112)
            if _sixteen_bit_color(source, image):
                return _decode_16bit_color(source, orientation, notes, path)
            image.load()
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        reason = str(e) if buffer is None else str(e).replace(repr(buffer), repr(str(path)))
        raise ImageReadError(f"{path}: cannot be decoded as an image ({type(e).__name__}: {reason})") from e
    mode = image.mode
    if mode in _WIDE_GRAY_MODES or mode == "L":
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("LA", "La"):
        pixels = np.asarray(image.convert("LA"))
        return _color_to_gray(np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1], path, notes)
    has_alpha = "A" in mode or "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    return _color_to_gray(rgba[..., :3], rgba[..., 3] if has_alpha else None, path, notes)


def _decode_16bit_color(source, orientation, notes, path=None):
    """16-bit RGB(A) PNG/TIFF, which Pillow would cut to 8 bits: decoded by OpenCV at full depth
    (from the file, or from ``source`` bytes in memory; ``path`` names it in messages)."""
    path = source if path is None else path
    if isinstance(source, bytes):
        pixels = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        pixels = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ImageReadError(f"{path}: cannot decode its 16-bit colour pixels")
    rgb = pixels[..., 2::-1]  # OpenCV gives BGR(A)
    gray = _color_to_gray(rgb, pixels[..., 3] if pixels.shape[2] == 4 else None, path, notes)
    if orientation in _ORIENTATION_TRANSPOSE:
        gray = np.asarray(Image.fromarray(gray).transpose(_ORIENTATION_TRANSPOSE[orientation]))
    return gray


def read_gray(
    path, *, scaling="auto", percentiles=DEFAULT_PERCENTILES, allow_no_file_meta=True, notes=None, name=None
) -> np.ndarray:
    """Read any supported X-ray file as a display-correct ``uint8`` HxW array (0..255).

    ``scaling``: "auto" (DICOM: its VOI LUT/window, else full range; other files: 8-bit
    kept as stored, wider values mapped from their full range), "minmax" (always the full
    value range) or "percentile" (a window between ``percentiles`` of the values; values
    outside it become 0 or 255). ``allow_no_file_meta``: read DICOMs without preamble/
    ``DICM``/file meta (with a note) or reject them. ``notes``: a list that receives a
    :class:`ReadNote` for each departure from the normal path (module docstring).
    ``path`` may be the file's content in memory (``bytes`` or a binary file-like object),
    decoded without touching the disk; ``name`` (e.g. an upload's file name) then names it
    in messages and, by its suffix, tells a DICOM (:func:`is_dicom`).

    Raises FileNotFoundError for a missing file, :class:`cxr_det.data.dicom.DicomReadError`
    for DICOMs that cannot be read, :class:`ImageReadError` for other undecodable files
    (or float images holding NaN/infinity), ValueError for an unknown ``scaling``.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"intensity scaling must be one of {SCALINGS}, got {scaling!r}")
    if is_dicom(path, name):
        return read_dicom(
            path, scaling=scaling, percentiles=percentiles, allow_no_file_meta=allow_no_file_meta, notes=notes,
            name=name,
        )
    if is_in_memory(path):
        source, path = memory_bytes(path), source_label(path, name)
        if not source:
            raise ImageReadError(f"{path}: empty file, not an image")
    elif not Path(path).is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    else:
        source = path
    values = _decode_pillow(source, notes, path)
    if values.ndim != 2 or values.size == 0:
        raise ImageReadError(f"{path}: expected a 2-D image, got pixel array of shape {values.shape}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ImageReadError(f"{path}: {int((~np.isfinite(values)).sum())} pixel(s) are NaN or infinite")
    if values.dtype == np.uint8 and scaling == "auto":
        return values
    low, high = intensity_range(values, "minmax" if scaling == "auto" else scaling, percentiles)
    return scale_to_uint8(values, low, high)


def read_image(
    path,
    image_format: str = "BGR",
    *,
    scaling="auto",
    percentiles=DEFAULT_PERCENTILES,
    allow_no_file_meta=True,
    notes=None,
    name=None,
) -> np.ndarray:
    """Read an image file as ``uint8`` HxWxC in ``image_format`` (C = 3 for "BGR"/"RGB", 1 for "L").

    :func:`read_gray` followed by :func:`gray_to_format`; same options and errors (``path``
    may be the file's content in memory, named ``name``).
    """
    gray = read_gray(
        path, scaling=scaling, percentiles=percentiles, allow_no_file_meta=allow_no_file_meta, notes=notes,
        name=name,
    )
    return gray_to_format(gray, image_format)


def read_options_from_config(cfg) -> dict:
    """The keyword options of :func:`read_image` that ``cfg.CXR.INPUT`` sets (``SCALING``,
    ``PERCENTILES``, ``ALLOW_NO_FILE_META``), so that training, evaluation and prediction of
    one run read pixels by one rule (the run records them in its config)."""
    c = cfg.CXR.INPUT
    return {
        "scaling": c.SCALING,
        "percentiles": tuple(float(p) for p in c.PERCENTILES),
        "allow_no_file_meta": bool(c.ALLOW_NO_FILE_META),
    }
