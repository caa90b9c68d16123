"""VinDr-CXR PNG cache: display-correct, downsized 8-bit PNGs of the DICOMs, written once.

Decoding 15k full-size DICOMs every epoch is slow, so :func:`build_png_cache` (the engine of
``tools/prepare_vindr.py``) writes ``<cache>/<folder>/<image_id>.png`` for the DICOMs of
the release (:mod:`cxr_det.formats.vindr_format`), plus a ``scales.csv``
(:data:`SCALES_COLUMNS`) that :func:`cxr_det.data.datasets.vindr.load_vindr`
(``image_cache=...``) reads with :func:`read_scales` to rescale the boxes, and a
``summary.json`` of the run (counts, failures, reader warnings).

The cache survives being killed (``kill -9``, a pre-empted job): every PNG, ``scales.csv``
and the summary are written atomically (:mod:`cxr_det.utils.atomic`), so a reader sees a
complete file or none; ``scales.csv`` is rewritten every ``flush_seconds`` while the run
goes, so a rerun skips the PNGs already listed there and redoes at most the last interval.

Sharding (``shard=(index, count)``, ``tools/prepare_vindr.py --shard i/n``) splits the
images by a hash of ``<folder>/<image_id>`` (:func:`shard_of`): the shards are disjoint and
cover every image whatever the file listing order, so the tasks of an array job can build
one cache folder at once. Each shard writes its own ``scales.shard-<i>-of-<n>.csv`` and
``summary.shard-<i>-of-<n>.json`` (never the shared ``scales.csv``); :func:`merge_shards`
(``--merge-shards``) checks that all ``n`` shards finished and folds them into
``scales.csv`` and ``summary.json``. :func:`read_scales` refuses a cache with unmerged shards.
"""
import hashlib
import json
import logging
import multiprocessing
import re
import time
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
from cxr_det.utils.atomic import atomic_open, atomic_write_bytes, atomic_write_json

__all__ = [
    "SCALES_COLUMNS",
    "CACHE_FOLDERS",
    "CACHE_HINT",
    "default_cache_dir",
    "resolve_cache_dir",
    "cache_image_size",
    "read_scales",
    "build_png_cache",
    "parse_shard",
    "shard_of",
    "shard_files",
    "merge_shards",
]

logger = logging.getLogger(__name__)

SCALES_COLUMNS = ("image_id", "folder", "original_height", "original_width", "height", "width", "scale")
# The image folders a cache can hold (those of the release).
CACHE_FOLDERS = VINDR_IMAGE_FOLDERS
CACHE_HINT = "run tools/prepare_vindr.py (same --max-size and output) to (re)build the cache"
SCALES_FILE = "scales.csv"
SUMMARY_FILE = "summary.json"
_SHARD_FILE = re.compile(r"^(scales|summary)\.shard-(\d+)-of-(\d+)\.(csv|json)$")


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
    it) or lacks a column of :data:`SCALES_COLUMNS`, and when the cache holds shard scales
    not yet merged into ``scales.csv`` (the images of those shards would be missing).
    """
    cache_dir = Path(cache_dir)
    unmerged = [p.name for p in shard_files(cache_dir) if p.suffix == ".csv"]
    if unmerged:
        raise DatasetFormatError(
            f"{cache_dir}: holds the scales of shard(s) not merged into {SCALES_FILE} ({', '.join(unmerged)}); "
            f"once every shard has finished run tools/prepare_vindr.py --output {cache_dir} --merge-shards"
        )
    path = cache_dir / SCALES_FILE
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found; {CACHE_HINT}")
    return _read_rows(path)


def _read_rows(path: Path):
    frame = read_csv(path, required_columns=SCALES_COLUMNS, dtype={"image_id": str, "folder": str})
    return {(r["folder"], r["image_id"]): r for r in frame.to_dict("records")}


def _write_rows(path: Path, rows) -> None:
    """``rows`` ({key: row}) as a CSV of :data:`SCALES_COLUMNS` sorted by folder and image id, atomically."""
    frame = pd.DataFrame([{c: r[c] for c in SCALES_COLUMNS} for r in rows.values()], columns=list(SCALES_COLUMNS))
    frame = frame.sort_values(["folder", "image_id"])
    with atomic_open(path, "w", newline="") as f:
        frame.to_csv(f, index=False)


def parse_shard(text: str):
    """``"i/n"`` -> ``(i, n)``, with ``0 <= i < n``.

    Raises:
        ValueError: text not of that form, ``n < 1`` or ``i`` outside ``[0, n)``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"shard {text!r}: expected INDEX/COUNT, e.g. 0/8 (indices 0 to COUNT-1)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need COUNT >= 1 and 0 <= INDEX < COUNT (indices 0 to {max(count, 1) - 1})")
    return index, count


def shard_of(folder: str, image_id: str, count: int) -> int:
    """The shard (``0 .. count-1``) an image belongs to: MD5 of ``"<folder>/<image_id>"`` modulo
    ``count``. Deterministic across processes and machines (unlike Python's ``hash``) and
    independent of which other files exist, so shards are disjoint and together cover all."""
    digest = hashlib.md5(f"{folder}/{image_id}".encode("utf-8")).hexdigest()
    return int(digest, 16) % int(count)


def _shard_name(kind: str, shard) -> str:
    if shard is None:
        return SCALES_FILE if kind == "scales" else SUMMARY_FILE
    index, count = shard
    return f"{kind}.shard-{index}-of-{count}.{'csv' if kind == 'scales' else 'json'}"


def shard_files(cache_dir: Path):
    """The shard scales and summaries (``scales|summary.shard-<i>-of-<n>.csv|json``) in ``cache_dir``, sorted."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if _SHARD_FILE.match(p.name))


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
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"{png_path}: cv2.imencode failed")
        atomic_write_bytes(png_path, encoded.tobytes())
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
    shard=None,
    flush_seconds=30.0,
):
    """Write display-correct 8-bit PNGs of the VinDr DICOMs and their ``scales.csv``.

    Every ``<root>/vindr-cxr/<folder>/<image_id>.dicom`` of the requested folders
    (``train``, ``test``) is decoded with the project's one reader,
    :func:`cxr_det.data.image_io.read_gray` (``scaling``, ``percentiles``,
    ``allow_no_file_meta`` passed on; docs/images.md), shrunk with ``cv2.INTER_AREA``
    so its longer side is at most ``max_size`` (never enlarged) and written atomically to
    ``<output>/<folder>/<image_id>.png`` (default output :func:`default_cache_dir`).
    ``scales.csv`` (columns :data:`SCALES_COLUMNS`) keeps rows of earlier runs; it is
    rewritten atomically every ``flush_seconds`` and at the end, also when the run is
    interrupted by an exception. PNGs already present with a row matching ``max_size`` (in
    ``scales.csv`` or a shard's scales) are kept unless ``overwrite``: a run killed mid-way
    resumes where its last flush left it. Unreadable DICOMs are counted and reported (file
    and reason), not fatal; images converted with a reader warning (read without DICOM file
    meta, invalid VOI, decoder fallback) are counted and reported too. ``workers`` > 1
    decodes in that many processes.

    ``shard=(index, count)`` converts only the images :func:`shard_of` assigns to ``index``
    and writes ``scales.shard-<index>-of-<count>.csv`` / ``summary.shard-...json`` instead
    of ``scales.csv`` / ``summary.json`` (merge them with :func:`merge_shards`).

    Returns a summary dict (also written as JSON once the run completes): output,
    scales_csv, shard ([index, count] or None), complete, total, written, existing, failed,
    failures [(file, reason)], warned (images with reader warnings), warnings
    [(file, kind, message)], warning_kinds {kind: images}, missing_folders.

    Raises:
        ValueError: an unknown ``scaling`` or split, ``max_size`` < 1, an invalid ``shard``.
        DatasetFormatError: none of the requested DICOM folders exists; a scales file that
            cannot be read.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"build_png_cache: scaling must be one of {SCALINGS}, got {scaling!r}")
    read_options = {"scaling": scaling, "percentiles": tuple(percentiles), "allow_no_file_meta": allow_no_file_meta}
    unknown = [s for s in splits if s not in CACHE_FOLDERS]
    if unknown or not splits:
        raise ValueError(f"build_png_cache: splits must be among {CACHE_FOLDERS}, got {list(splits)}")
    if int(max_size) < 1:
        raise ValueError(f"build_png_cache: max_size must be positive, got {max_size}")
    if shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    base = vindr_dir(root)
    output = Path(output) if output else default_cache_dir(root, max_size, scaling, percentiles)
    scales_path = output / _shard_name("scales", shard)
    # Rows already known: the merged scales, then every shard's (a PNG listed in any is complete).
    known = _read_rows(output / SCALES_FILE) if (output / SCALES_FILE).is_file() else {}
    for path in shard_files(output):
        if path.suffix == ".csv":
            known.update(_read_rows(path))
    # The file this run writes: all rows (unsharded), or this shard's own.
    rows = {} if shard is not None else dict(known)
    if shard is not None and scales_path.is_file():
        rows.update(_read_rows(scales_path))

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
            if shard is not None and shard_of(folder, image_id, shard[1]) != shard[0]:
                continue
            png_path = output / folder / f"{image_id}.png"
            row = known.get((folder, image_id))
            if not overwrite and row is not None and png_path.is_file():
                expected = cache_image_size(row["original_height"], row["original_width"], max_size)
                if (int(row["height"]), int(row["width"])) == expected[:2]:
                    existing += 1
                    rows[(folder, image_id)] = row
                    continue
            tasks.append((dicom_path, png_path, folder, image_id, int(max_size), read_options))
    if len(missing_folders) == len(splits):
        raise DatasetFormatError(f"no DICOM folder found; looked for {missing_folders}")

    def flush():  # a shard always writes its files, even empty: merge_shards checks all are there
        if rows or tasks or shard is not None:
            _write_rows(scales_path, rows)

    failures, warnings, written = [], [], 0
    label = output.name if shard is None else f"{output.name}, shard {shard[0]}/{shard[1]}"
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
            last_flush = time.monotonic()
            for result in tqdm(results, total=len(tasks), desc=f"VinDr-CXR PNG cache ({label})", disable=not tasks):
                file = result["file"] if "error" in result else str(base / result["folder"] / f"{result['image_id']}{VINDR_DICOM_SUFFIX}")
                warnings.extend((file, kind, message) for kind, message in result["notes"])
                if "error" in result:
                    failures.append((result["file"], result["error"]))
                    continue
                rows[(result["folder"], result["image_id"])] = result
                written += 1
                if time.monotonic() - last_flush >= flush_seconds:
                    flush()
                    last_flush = time.monotonic()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    finally:
        flush()

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
        "shard": None if shard is None else list(shard),
        "complete": True,
        "max_size": int(max_size),
        "splits": list(splits),
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
    if rows or tasks or shard is not None:
        atomic_write_json(output / _shard_name("summary", shard), summary, indent=2)
    logger.info(
        "VinDr-CXR cache %s: %d written, %d already present, %d failed, %d with reader warnings",
        label, written, existing, len(failures), warned,
    )
    return summary


# Summary counts that add up over shards.
_SUMMED = ("total", "written", "existing", "failed", "warned")


def merge_shards(cache_dir) -> dict:
    """Fold the shards' scales and summaries of ``cache_dir`` into ``scales.csv`` and ``summary.json``.

    Every shard ``0 .. n-1`` must have finished: its ``summary.shard-<i>-of-<n>.json``
    present (written when its run completed), or recorded as merged in ``summary.json`` by an
    earlier merge (so re-running one shard and merging again works). The rows of
    ``scales.csv`` are kept, the shards' rows added (they win on the same image); both files
    are written atomically, then the shard files removed.

    Returns:
        the merged summary: ``shards`` ({"count": n, "merged": [indices]}), the counts of
        :data:`_SUMMED` added over the shards merged now, their failures, warning kinds,
        ``scales_csv``, ``images`` (rows of the merged ``scales.csv``).

    Raises:
        DatasetFormatError: no shard files; shard files of different counts; shards not
            finished (naming each and the command that runs it).
    """
    cache_dir = Path(cache_dir)
    files = shard_files(cache_dir)
    if not files:
        raise DatasetFormatError(f"{cache_dir}: no shard files (scales.shard-<i>-of-<n>.csv) to merge")
    parsed = [(_SHARD_FILE.match(p.name), p) for p in files]
    counts = sorted({int(m.group(3)) for m, _ in parsed})
    if len(counts) > 1:
        raise DatasetFormatError(
            f"{cache_dir}: shard files of different shard counts {counts} ({', '.join(p.name for p in files)}); "
            "remove the stale ones (or rebuild) so that one --shard i/n split remains"
        )
    count = counts[0]
    summaries = {int(m.group(2)): p for m, p in parsed if m.group(1) == "summary"}
    scales = {int(m.group(2)): p for m, p in parsed if m.group(1) == "scales"}
    previous = {}
    if (cache_dir / SUMMARY_FILE).is_file():
        with open(cache_dir / SUMMARY_FILE) as f:
            previous = json.load(f)
    earlier = previous.get("shards") or {}
    merged_before = set(earlier.get("merged", [])) if earlier.get("count") == count else set()
    unfinished = [i for i in range(count) if i not in summaries and i not in merged_before]
    if unfinished:
        raise DatasetFormatError(
            f"{cache_dir}: {len(unfinished)} of {count} shard(s) not finished (no summary.shard-<i>-of-{count}.json): "
            + ", ".join(f"{i}/{count}" + (" (interrupted: scales written, run not complete)" if i in scales else "")
                        for i in unfinished)
            + f"; run tools/prepare_vindr.py --shard <i>/{count} (same --max-size / --output) for each, then merge again"
        )
    rows = _read_rows(cache_dir / SCALES_FILE) if (cache_dir / SCALES_FILE).is_file() else {}
    merged = {"failures": [], "warning_kinds": {}}
    merged.update({k: 0 for k in _SUMMED})
    for index in sorted(summaries):
        with open(summaries[index]) as f:
            part = json.load(f)
        for key in _SUMMED:
            merged[key] += int(part.get(key, 0))
        merged["failures"].extend(part.get("failures", []))
        for kind, n in part.get("warning_kinds", {}).items():
            merged["warning_kinds"][kind] = merged["warning_kinds"].get(kind, 0) + int(n)
        if index in scales:
            rows.update(_read_rows(scales[index]))
    _write_rows(cache_dir / SCALES_FILE, rows)
    summary = {
        "output": str(cache_dir),
        "scales_csv": str(cache_dir / SCALES_FILE),
        "shards": {"count": count, "merged": sorted(merged_before | set(summaries))},
        "complete": True,
        "images": len(rows),
        **merged,
    }
    atomic_write_json(cache_dir / SUMMARY_FILE, summary, indent=2)
    for path in files:
        path.unlink()
    logger.info("VinDr-CXR cache %s: %d shard summaries merged (%d of %d shards done); %d images in %s",
                cache_dir, len(summaries), len(summary["shards"]["merged"]), count, len(rows), SCALES_FILE)
    return summary
