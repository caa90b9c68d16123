"""VinDr-CXR: dataset dicts from the PhysioNet or Kaggle (VinBigData) release.

The layouts, columns and label vocabularies are in :mod:`cxr_det.formats.vindr_format`
(PhysioNet VinDr-CXR v1.0.0, Nguyen et al., Scientific Data 2022, and the Kaggle VinBigData
competition; sources cited there). :func:`load_vindr` reads the box annotations as their
owners ship them (see docs/CONTRACT.md), keeps "No finding" images as records without
annotations, and offers the reader modes of :data:`cxr_det.formats.READER_MODES` that a
training image labelled by 3 radiologists allows: every radiologist's boxes
(``readers="all_readers"``), boxes of different radiologists merged by weighted boxes fusion
(``readers="weighted_boxes_fusion"``), or one radiologist's boxes (``readers="R9"``); the
earlier names ``"all"`` and ``"fused"`` still work, with a DeprecationWarning.
:func:`register_vindr` puts a loader into detectron2's catalogs.

The annotation tables are parsed by :mod:`.vindr_annotations`; the PNG cache that spares
decoding the DICOMs every epoch is written and read by :mod:`.vindr_cache`
(``tools/prepare_vindr.py``). Its names stay importable from here.
"""
import hashlib
import logging
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    SkipLog,
    box_problem,
    clip_box,
    find_table,
    resolve_classes,
)
from cxr_det.data.datasets.vindr_annotations import (
    ANNOTATION_ROW,
    annotation_sources,
    detect_layout,
    drop_duplicate_rows,
    read_rows,
    reader_sort_key,
    row_box,
    vindr_dir,
    weighted_boxes_fusion,
)
from cxr_det.data.datasets.vindr_cache import (
    CACHE_FOLDERS,
    CACHE_HINT,
    SCALES_COLUMNS,
    build_png_cache,
    cache_image_size,
    default_cache_dir,
    read_scales,
    resolve_cache_dir,
)
from cxr_det.data.dicom_header import DicomReadError, dicom_size
from cxr_det.data.values import parse_number
from cxr_det.formats import SPLITS, normalise_split, resolve_reader_mode
from cxr_det.formats.vindr_format import (
    VINDR_CONSENSUS_READER,
    VINDR_DICOM_SUFFIX,
    VINDR_KAGGLE_CLASSES,
    VINDR_LOCAL_LABELS,
    VINDR_READER_MODES,
)

__all__ = [
    "VINDR_SPLITS",
    "CONSENSUS_READER",
    "SCALES_COLUMNS",
    "CACHE_FOLDERS",
    "vindr_dir",
    "detect_layout",
    "is_val_image",
    "resolve_vindr_readers",
    "load_vindr",
    "register_vindr",
    "cache_image_size",
    "default_cache_dir",
    "build_png_cache",
]

logger = logging.getLogger(__name__)

VINDR_SPLITS = SPLITS
# The reader id of rows without a rad_id (the test set's consensus labels).
CONSENSUS_READER = VINDR_CONSENSUS_READER
# Header reads of at least this many images show a progress bar.
_PROGRESS_MIN = 1000
# The ledger outcome of a row that gives a box (weighted boxes fusion merges some of them).
BOX_OUTCOMES = {False: "box in the output", True: "box in the output (merged by weighted boxes fusion)"}
# The options register_vindr passes on to load_vindr.
_OPTIONS = ("classes", "readers", "fuse_iou", "image_cache", "val_fraction")


def is_val_image(image_id: str, val_fraction: float) -> bool:
    """Whether a training image belongs to the held-out ``val`` split.

    Deterministic and independent of the file's row order: the md5 of the image id, as an
    integer, modulo 10,000 is compared with ``val_fraction * 10,000``.
    """
    bucket = int(hashlib.md5(str(image_id).encode("utf-8")).hexdigest(), 16) % 10_000
    return bucket < val_fraction * 10_000


def _safe_size(path):
    """``(rows, columns)`` of one DICOM, or the error's text when it cannot be read."""
    try:
        return dicom_size(path)
    except DicomReadError as e:
        return str(e)


def _dicom_sizes(paths):
    """Rows/Columns of many DICOMs (headers only; about 2k files/s), error text on failure."""
    progress = tqdm(paths, desc="VinDr-CXR DICOM headers", disable=len(paths) < _PROGRESS_MIN)
    return [_safe_size(path) for path in progress]


def _cache_sizes(row):
    """``(height, width, original_height, original_width, scale)`` of a PNG cache row
    (positive ints and a positive finite scale), or None when a value is not one."""
    sizes = [parse_number(row.get(c))[0] for c in ("height", "width", "original_height", "original_width", "scale")]
    if any(v is None or v <= 0 for v in sizes) or not all(v.is_integer() for v in sizes[:4]):
        return None
    return (*(int(v) for v in sizes[:4]), sizes[4])


def _image_files(images, base: Path, cache_dir, skips: SkipLog, tables=None):
    """{(folder, image_id): (file_name, height, width, original_height, original_width, scale)}.

    ``images``: ``{(folder, image_id): number of annotation rows}``; ``tables``: ``{folder:
    the annotation table naming its images}``, for messages. Images whose DICOM (or cached
    PNG) is missing or unreadable are counted as skips (their rows too, in the ledger); a
    folder where none of the annotated images is found raises :class:`DatasetFormatError`
    naming the folder and the table.
    """
    tables = tables or {}
    found, by_folder = {}, defaultdict(list)
    for key in images:
        by_folder[key[0]].append(key)
    if cache_dir is not None:
        scales = read_scales(cache_dir)
        for folder, keys in by_folder.items():
            for key in keys:
                row = scales.get(key)
                png = cache_dir / folder / f"{key[1]}.png"
                if row is None or not png.is_file():
                    reason = f"image missing from the PNG cache {cache_dir} ({CACHE_HINT})"
                    skips.skip(reason, str(png), unit=ANNOTATION_ROW, rows=images[key])
                    continue
                sizes = _cache_sizes(row)
                if sizes is None:
                    where = f"{cache_dir / 'scales.csv'}, image {key[1]}: {row}"
                    skips.skip(f"PNG cache row with a size or scale that is not a positive number ({CACHE_HINT})", where,
                               unit=ANNOTATION_ROW, rows=images[key])
                    continue
                found[key] = (str(png.resolve()), *sizes)
            if keys and not any(k in found for k in keys):
                raise DatasetFormatError(
                    f"{cache_dir / folder}: none of the {len(keys)} images (image_id column of "
                    f"{tables.get(folder, 'the annotations')}) is in the PNG cache; {CACHE_HINT}"
                )
        return found
    for folder, keys in by_folder.items():
        paths = {key: base / folder / f"{key[1]}{VINDR_DICOM_SUFFIX}" for key in keys}
        present = [key for key in keys if paths[key].is_file()]
        for key in keys:
            if key not in present:
                skips.skip("DICOM file missing", str(paths[key]), unit=ANNOTATION_ROW, rows=images[key])
        if keys and not present:
            raise DatasetFormatError(
                f"{base / folder}: none of the {len(keys)} images (image_id column of {tables.get(folder, 'the annotations')}) "
                f"has its DICOM file (expected <image_id>{VINDR_DICOM_SUFFIX} files, e.g. {paths[keys[0]].name})"
            )
        for key, size in zip(present, _dicom_sizes([paths[k] for k in present])):
            if isinstance(size, str):
                skips.skip("unreadable DICOM", size, unit=ANNOTATION_ROW, rows=images[key])
                continue
            height, width = size
            found[key] = (str(paths[key].resolve()), height, width, height, width, 1.0)
    return found


def _annotation(category_id, box, readers):
    """One detectron2 annotation of an XYXY box, with its ``readers`` (rad_ids)."""
    x0, y0, x1, y1 = box
    return {
        "bbox": [x0, y0, x1, y1],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category_id,
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
        "iscrowd": 0,
        "readers": list(readers),
    }


def resolve_vindr_readers(readers) -> str:
    """The VinDr-CXR reader mode ``readers`` in the shared vocabulary
    (:func:`cxr_det.formats.resolve_reader_mode`): ``"all_readers"``,
    ``"weighted_boxes_fusion"``, or a radiologist's id (returned unchanged, e.g. ``"R9"``).
    The earlier ``"all"`` and ``"fused"`` give the new names with a DeprecationWarning.
    Raises ValueError for an empty value or a mode VinDr-CXR does not implement."""
    return resolve_reader_mode(readers, "vindr", VINDR_READER_MODES, reader_ids_allowed=True)


def load_vindr(
    root=None,
    split="train",
    classes=VINDR_KAGGLE_CLASSES,
    readers="all_readers",
    fuse_iou=0.5,
    image_cache="",
    val_fraction=0.2,
    skip_log=None,
):
    """Dataset dicts of VinDr-CXR (PhysioNet or Kaggle layout, detected from the files).

    Args:
        root: dataset root holding ``vindr-cxr/`` (default ``$CXR_DATASETS`` or ``./datasets``).
        split: ``train``/``val`` (md5-hash split of the labelled training images, see
            :func:`is_val_image`), ``test`` (PhysioNet consensus labels; the Kaggle copy has
            none), or ``all`` (train + val, + test for PhysioNet); other spellings as
            :func:`cxr_det.formats.normalise_split` accepts them.
        classes: VinDr local label names to detect (default the 14 Kaggle classes); boxes of
            other known classes are ignored.
        readers: ``"all_readers"`` (every radiologist's boxes), ``"weighted_boxes_fusion"``
            (per image and class, boxes of *different* radiologists overlapping with IoU
            above ``fuse_iou`` merged, see
            :func:`~cxr_det.data.datasets.vindr_annotations.weighted_boxes_fusion`), or one
            rad_id such as ``"R9"`` (only that radiologist's boxes; images they did not read
            are left out and counted in the report); ``"all"`` and ``"fused"`` are the
            deprecated names of the first two (:func:`resolve_vindr_readers`). In every mode
            an exact repeat of a row (same image, rad_id, class and box) is dropped and
            counted.
        image_cache: a folder written by ``tools/prepare_vindr.py`` (absolute, relative to the
            working directory, or relative to ``<root>/vindr-cxr``); records then point at its
            PNGs, with boxes multiplied by the recorded scale. Empty: read the DICOMs.
        val_fraction: fraction of training images in ``val``.
        skip_log: a :class:`SkipLog` to count skipped rows into (e.g. for a summary table);
            its ledger gets the outcome of every annotation row read
            (:data:`~.vindr_annotations.ANNOTATION_ROW`: box in the output, "No finding" row,
            class not selected, another split or radiologist, or a skip).

    Returns records as in docs/CONTRACT.md, sorted by ``vindr_image_id`` (``image_id`` is
    the position in that order); each record's ``split`` is its own part (train/val/test).
    Bad rows and images are skipped and reported once as a warning (see the contract).
    Raises ValueError for an unknown split, reader mode or class, a rad_id absent from the
    split's annotations, ``val_fraction`` outside [0, 1] or ``fuse_iou`` outside (0, 1];
    :class:`DatasetFormatError` for missing files or columns.
    """
    split = normalise_split(split, "VinDr-CXR")
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise ValueError(f"VinDr-CXR: val_fraction must be in [0, 1], got {val_fraction}")
    if not 0.0 < float(fuse_iou) <= 1.0:
        raise ValueError(f"VinDr-CXR: fuse_iou must be in (0, 1], got {fuse_iou}")
    readers = resolve_vindr_readers(readers)
    classes = resolve_classes(classes, VINDR_LOCAL_LABELS, "VinDr-CXR")
    class_index = {name: i for i, name in enumerate(classes)}

    base = vindr_dir(root)
    layout = detect_layout(root)
    if layout == "kaggle":
        absent = [c for c in classes if c not in VINDR_KAGGLE_CLASSES]
        if absent:
            logger.warning("VinDr-CXR Kaggle layout: classes %s are not labelled in this release; they get no boxes", absent)
    skips = skip_log if skip_log is not None else SkipLog("VinDr-CXR", examples=3)
    counters = defaultdict(int)

    # Raw rows of the requested split, grouped per image (key: (folder, image_id)).
    images, part_of, present_readers, tables = {}, {}, set(), {}
    for csv_path, folder, has_val in annotation_sources(layout, base, split):
        tables[folder] = find_table(csv_path)
        rows_by_image, orphans = read_rows(csv_path, layout, training_table=folder == "train")
        skips.read(ANNOTATION_ROW, len(orphans) + sum(len(rows) for rows in rows_by_image.values()))
        for where in orphans:
            skips.skip("row without image_id", where, unit=ANNOTATION_ROW)
        for image_id, rows in rows_by_image.items():
            present_readers.update(r[1] for r in rows)
            part = ("val" if is_val_image(image_id, val_fraction) else "train") if has_val else "test"
            if split in ("all", part):
                images[(folder, image_id)] = drop_duplicate_rows(rows, skips)
                part_of[(folder, image_id)] = part
            else:
                skips.account(ANNOTATION_ROW, "row of an image of another split", len(rows))

    single = readers not in VINDR_READER_MODES
    if single:
        if readers not in present_readers:
            raise ValueError(
                f"VinDr-CXR: reader {readers!r} does not appear in the annotations of split {split!r}; "
                f"readers present: {sorted(present_readers, key=reader_sort_key)} (or use 'all_readers' / 'weighted_boxes_fusion')"
            )
        not_read = [key for key, rows in images.items() if all(r[1] != readers for r in rows)]
        for key in not_read:
            skips.skip(f"image not read by {readers} (readers={readers!r})", key[1], unit=ANNOTATION_ROW,
                       rows=len(images.pop(key)))

    cache_dir = resolve_cache_dir(image_cache, base) if image_cache else None
    files = _image_files({key: len(images[key]) for key in sorted(images)}, base, cache_dir, skips, tables)

    records = []
    for key in sorted(files, key=lambda k: (k[1], k[0])):
        file_name, height, width, orig_h, orig_w, scale = files[key]
        rows = images[key]
        if single:
            rows = [r for r in rows if r[1] == readers]
            skips.account(ANNOTATION_ROW, f"row of another radiologist (readers={readers!r})", len(images[key]) - len(rows))
        candidates = []
        for row in rows:
            result = row_box(row, layout, class_index, (orig_h, orig_w), skips, counters)
            if result is None:
                continue
            category, box = result
            if scale != 1.0:
                box = clip_box([v * scale for v in box], width, height)
                problem = box_problem(box)
                if problem:  # a sliver at the border of a downsized PNG
                    skips.skip(f"{problem} after scaling to the PNG cache", f"{row[0]}: {box}", unit=ANNOTATION_ROW)
                    continue
            candidates.append((row[1], category, box))
        skips.account(ANNOTATION_ROW, BOX_OUTCOMES[readers == "weighted_boxes_fusion"], len(candidates))
        if readers == "weighted_boxes_fusion" and candidates:
            annotations = [_annotation(c, b, who) for c, b, who in weighted_boxes_fusion(candidates, fuse_iou)]
        else:
            annotations = [_annotation(c, b, [r]) for r, c, b in candidates]
        records.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "image_id": len(records),
                "dataset": "vindr",
                "split": part_of[key],
                "vindr_image_id": key[1],
                "readers": sorted({r[1] for r in rows}, key=reader_sort_key),
                "original_height": orig_h,
                "original_width": orig_w,
                "scale": scale,
                "annotations": annotations,
            }
        )
    skips.report(logger)
    n_boxes = sum(len(r["annotations"]) for r in records)
    extra = ", ".join(f"{n} {what}" for what, n in sorted(counters.items()))
    logger.info(
        "VinDr-CXR (%s layout, split %s, readers %s): %d images, %d with boxes, %d boxes%s",
        layout, split, readers, len(records), sum(bool(r["annotations"]) for r in records), n_boxes,
        f" ({extra})" if extra else "",
    )
    return records


def _load_registered(name, root, split, options):
    """The loader registered as ``name``: :func:`load_vindr`, recording the layout in the
    metadata when registration could not (files written after it)."""
    records = load_vindr(root, split, **options)
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "layout"):
        meta.set(layout=detect_layout(root))
    return records


def register_vindr(name, root=None, split="train", **options):
    """Register ``load_vindr(root, split, **options)`` as ``name`` in detectron2's catalogs.

    Metadata: ``thing_classes``, ``evaluator_type="cxr_detection"``, ``dataset="vindr"``, ``readers``
    (the reader mode by its current name, e.g. ``"weighted_boxes_fusion"`` for ``"fused"``),
    ``split`` and ``layout`` (detected now when the files exist, else at the first load).
    Options (those of :func:`load_vindr`) are validated now, so a typo fails at registration
    rather than at training: TypeError for an unknown option, ValueError for an unknown
    split, class or reader mode.
    """
    split = normalise_split(split, "VinDr-CXR")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"register_vindr: unknown option(s) {unknown}; valid: {sorted(_OPTIONS)}")
    classes = resolve_classes(options.get("classes", VINDR_KAGGLE_CLASSES), VINDR_LOCAL_LABELS, "VinDr-CXR")
    readers = resolve_vindr_readers(options.get("readers", "all_readers"))
    options = {**options, "classes": classes, "readers": readers}
    DatasetCatalog.register(name, lambda: _load_registered(name, root, split, options))
    meta = {
        "thing_classes": list(classes),
        "evaluator_type": "cxr_detection",
        "dataset": "vindr",
        "readers": readers,
        "split": split,
    }
    try:
        meta["layout"] = detect_layout(root)
    except DatasetFormatError:
        logger.debug("VinDr-CXR %s: files not found yet; layout recorded at first load", name)
    MetadataCatalog.get(name).set(**meta)


