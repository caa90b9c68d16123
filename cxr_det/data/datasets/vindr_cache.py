"""VinDr-CXR PNG cache: display-correct, downsized 8-bit PNGs of the DICOMs, written once.

Decoding 15k full-size DICOMs every epoch is slow, so :func:`build_png_cache` (the engine of
``tools/prepare_vindr.py``) writes ``<cache>/<folder>/<image_id>.png`` for the DICOMs of
the release (:mod:`cxr_det.formats.vindr_format`), plus a ``scales.csv``
(:data:`SCALES_COLUMNS`) that :func:`cxr_det.data.datasets.vindr.load_vindr`
(``image_cache=...``) reads with :func:`read_scales` to rescale the boxes.
"""
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import pandas as pd
from tqdm import tqdm

from cxr_det.data.datasets.common import DatasetFormatError, read_csv
from cxr_det.data.datasets.vindr_annotations import vindr_dir
from cxr_det.data.dicom_header import DicomReadError
from cxr_det.data.image_io import DEFAULT_PERCENTILES, SCALINGS, read_gray
from cxr_det.formats.vindr_format import VINDR_DICOM_SUFFIX, VINDR_IMAGE_FOLDERS

__all__ = [
    "SCALES_COLUMNS",
    "CACHE_FOLDERS",
    "CACHE_HINT",
    "default_cache_dir",
    "resolve_cache_dir",
    "cache_image_size",
    "read_scales",
    "build_png_cache",
]

logger = logging.getLogger(__name__)

SCALES_COLUMNS = ("image_id", "folder", "original_height", "original_width", "height", "width", "scale")
# The image folders a cache can hold (those of the release).
CACHE_FOLDERS = VINDR_IMAGE_FOLDERS
CACHE_HINT = "run tools/prepare_vindr.py (same --max-size and output) to (re)build the cache"


def resolve_cache_dir(image_cache, base: Path) -> Path:
    """The cache folder ``image_cache`` names: absolute, relative to the working directory
    when it exists there, else relative to ``base`` (``<root>/vindr-cxr``)."""
    path = Path(image_cache).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base / path


def read_scales(cache_dir: Path):
    """{(folder, image_id): scales.csv row as a dict} of a PNG cache.

    Raises :class:`DatasetFormatError` when ``scales.csv`` is missing (saying how to build
    it) or lacks a column of :data:`SCALES_COLUMNS`.
    """
    path = cache_dir / "scales.csv"
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found; {CACHE_HINT}")
    frame = read_csv(path, required_columns=SCALES_COLUMNS, dtype={"image_id": str, "folder": str})
    return {(r["folder"], r["image_id"]): r for r in frame.to_dict("records")}


def default_cache_dir(root=None, max_size=1024, scaling="auto", percentiles=DEFAULT_PERCENTILES) -> Path:
    """``<root>/vindr-cxr/png_<max_size>`` (``png_<max_size>_<scaling>`` for another intensity rule,
    ``png_<max_size>_percentile<low>-<high>`` for a percentile window), so caches made by
    different rules never mix."""
    name = f"png_{int(max_size)}"
    if scaling == "percentile":
        name += "_percentile{:g}-{:g}".format(*percentiles)
    elif scaling != "auto":
        name += f"_{scaling}"
    return vindr_dir(root) / name


def cache_image_size(height, width, max_size):
    """``(height, width, scale)`` after shrinking so the longer side is <= ``max_size`` (never enlarging)."""
    scale = min(1.0, float(max_size) / max(height, width))
    if scale >= 1.0:
        return int(height), int(width), 1.0
    return max(1, int(round(height * scale))), max(1, int(round(width * scale))), scale


def _convert_one(task):
    """Decode one DICOM with :func:`read_gray`, downsize it and write the PNG.

    Returns a scales row with ``notes`` (the reader's warnings: [(kind, message)]), or an error.
    """
    dicom_path, png_path, folder, image_id, max_size, read_options = task
    notes = []
    try:
        image = read_gray(dicom_path, notes=notes, **read_options)
        orig_h, orig_w = image.shape
        height, width, scale = cache_image_size(orig_h, orig_w, max_size)
        if scale < 1.0:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        tmp = png_path.with_name(png_path.stem + ".partial.png")
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{png_path}: cv2.imwrite failed")
        os.replace(tmp, png_path)
    except Exception as e:  # one bad file must not end a 15k-image run
        reason = str(e) if isinstance(e, DicomReadError) else f"{dicom_path}: {type(e).__name__}: {e}"
        return {"error": reason, "file": str(dicom_path), "notes": [tuple(n) for n in notes]}
    return {
        "image_id": image_id,
        "folder": folder,
        "original_height": orig_h,
        "original_width": orig_w,
        "height": height,
        "width": width,
        "scale": scale,
        "notes": [tuple(n) for n in notes],
    }


def _init_worker():
    """One OpenCV thread per decoding process (the processes already use every core)."""
    cv2.setNumThreads(1)


def build_png_cache(
    root=None,
    output=None,
    max_size=1024,
    splits=CACHE_FOLDERS,
    workers=0,
    overwrite=False,
    *,
    scaling="auto",
    percentiles=DEFAULT_PERCENTILES,
    allow_no_file_meta=True,
):
    """Write display-correct 8-bit PNGs of the VinDr DICOMs and their ``scales.csv``.

    Every ``<root>/vindr-cxr/<folder>/<image_id>.dicom`` of the requested folders
    (``train``, ``test``) is decoded with the project's one reader,
    :func:`cxr_det.data.image_io.read_gray` (``scaling``, ``percentiles``,
    ``allow_no_file_meta`` passed on; docs/images.md), shrunk with ``cv2.INTER_AREA``
    so its longer side is at most ``max_size`` (never enlarged) and written to
    ``<output>/<folder>/<image_id>.png`` (default output :func:`default_cache_dir`).
    ``scales.csv`` (columns :data:`SCALES_COLUMNS`) keeps rows of earlier runs; it is written
    even when the run is interrupted. PNGs already present with a row matching
    ``max_size`` are kept unless ``overwrite``. Unreadable DICOMs are counted and reported
    (file and reason), not fatal; images converted with a reader warning (read without
    DICOM file meta, invalid VOI, decoder fallback) are counted and reported too.
    ``workers`` > 1 decodes in that many processes.

    Returns a summary dict: output, scales_csv, total, written, existing, failed,
    failures [(file, reason)], warned (images with reader warnings), warnings
    [(file, kind, message)], warning_kinds {kind: images}, missing_folders.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"build_png_cache: scaling must be one of {SCALINGS}, got {scaling!r}")
    read_options = {"scaling": scaling, "percentiles": tuple(percentiles), "allow_no_file_meta": allow_no_file_meta}
    unknown = [s for s in splits if s not in CACHE_FOLDERS]
    if unknown or not splits:
        raise ValueError(f"build_png_cache: splits must be among {CACHE_FOLDERS}, got {list(splits)}")
    if int(max_size) < 1:
        raise ValueError(f"build_png_cache: max_size must be positive, got {max_size}")
    base = vindr_dir(root)
    output = Path(output) if output else default_cache_dir(root, max_size, scaling, percentiles)
    scales_path = output / "scales.csv"
    rows = read_scales(output) if scales_path.is_file() else {}

    tasks, missing_folders, existing = [], [], 0
    for folder in splits:
        src = base / folder
        if not src.is_dir():
            missing_folders.append(str(src))
            logger.warning("VinDr-CXR cache: folder %s not found; skipped", src)
            continue
        (output / folder).mkdir(parents=True, exist_ok=True)
        for dicom_path in sorted(src.glob(f"*{VINDR_DICOM_SUFFIX}")):
            image_id = dicom_path.name[: -len(VINDR_DICOM_SUFFIX)]
            png_path = output / folder / f"{image_id}.png"
            row = rows.get((folder, image_id))
            if not overwrite and row is not None and png_path.is_file():
                expected = cache_image_size(row["original_height"], row["original_width"], max_size)
                if (int(row["height"]), int(row["width"])) == expected[:2]:
                    existing += 1
                    continue
            tasks.append((dicom_path, png_path, folder, image_id, int(max_size), read_options))
    if len(missing_folders) == len(splits):
        raise DatasetFormatError(f"no DICOM folder found; looked for {missing_folders}")

    failures, warnings, written = [], [], 0
    try:
        if workers and workers > 1 and len(tasks) > 1:
            # "spawn": forking a process whose torch/OpenMP threads are running can deadlock.
            pool = ProcessPoolExecutor(
                max_workers=int(workers), initializer=_init_worker, mp_context=multiprocessing.get_context("spawn")
            )
            results = pool.map(_convert_one, tasks, chunksize=8)
        else:
            pool, results = None, map(_convert_one, tasks)
        try:
            for result in tqdm(results, total=len(tasks), desc=f"VinDr-CXR PNG cache ({output.name})", disable=not tasks):
                file = result["file"] if "error" in result else str(base / result["folder"] / f"{result['image_id']}{VINDR_DICOM_SUFFIX}")
                warnings.extend((file, kind, message) for kind, message in result["notes"])
                if "error" in result:
                    failures.append((result["file"], result["error"]))
                    continue
                rows[(result["folder"], result["image_id"])] = result
                written += 1
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    finally:
        if rows or tasks:
            output.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame([{c: r[c] for c in SCALES_COLUMNS} for r in rows.values()], columns=list(SCALES_COLUMNS))
            frame = frame.sort_values(["folder", "image_id"])
            tmp = scales_path.with_name("scales.csv.partial")
            frame.to_csv(tmp, index=False)
            os.replace(tmp, scales_path)

    if failures:
        listed = "\n".join(f"  {f}: {reason}" for f, reason in failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        logger.warning("VinDr-CXR cache: %d DICOM(s) could not be converted:\n%s%s", len(failures), listed, more)
    warned = len({file for file, _, _ in warnings})
    warning_kinds = {}
    for kind in sorted({kind for _, kind, _ in warnings}):
        warning_kinds[kind] = len({file for file, k, _ in warnings if k == kind})
    if warnings:
        listed = "\n".join(f"  [{kind}] {message}" for _, kind, message in warnings[:20])
        more = f"\n  ... and {len(warnings) - 20} more" if len(warnings) > 20 else ""
        logger.warning(
            "VinDr-CXR cache: %d DICOM(s) converted with reader warnings (%s):\n%s%s",
            warned, ", ".join(f"{k}: {n}" for k, n in warning_kinds.items()), listed, more,
        )
    summary = {
        "output": str(output),
        "scales_csv": str(scales_path),
        "total": len(tasks) + existing,
        "written": written,
        "existing": existing,
        "failed": len(failures),
        "failures": failures,
        "warned": warned,
        "warnings": warnings,
        "warning_kinds": warning_kinds,
        "missing_folders": missing_folders,
    }
    logger.info(
        "VinDr-CXR cache %s: %d written, %d already present, %d failed, %d with reader warnings",
        output, written, existing, len(failures), warned,
    )
    return summary
