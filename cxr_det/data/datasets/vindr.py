"""VinDr-CXR: dataset dicts from the PhysioNet or Kaggle (VinBigData) release, and a PNG cache.

:func:`load_vindr` reads the box annotations as their owners ship them (see
docs/CONTRACT.md), keeps "No finding" images as records without annotations, and offers
three ways to use the 3 radiologists' labels of a training image: every reader's boxes
(``readers="all"``), boxes fused across readers with weighted boxes fusion
(``readers="fused"``), or a single radiologist's boxes (``readers="R9"``).
:func:`register_vindr` puts a loader into detectron2's catalogs.

Decoding 15k full-size DICOMs every epoch is slow, so :func:`build_png_cache` (the engine of
``tools/prepare_vindr.py``) writes display-correct, downsized 8-bit PNGs once, plus a
``scales.csv`` that :func:`load_vindr` (``image_cache=...``) uses to rescale the boxes.
"""
import hashlib
import logging
import math
import multiprocessing
import os
import re
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    SkipLog,
    box_problem,
    clip_box,
    dataset_root,
    find_table,
    read_csv,
    resolve_classes,
    table_exists,
)
from cxr_det.data.datasets.labels import (
    VINDR_KAGGLE_CLASSES,
    VINDR_LOCAL_LABELS,
    VINDR_NO_FINDING,
    VINDR_NO_FINDING_ID,
)
from cxr_det.data.dicom import DicomReadError, dicom_size
from cxr_det.data.image_io import DEFAULT_PERCENTILES, SCALINGS, read_gray

__all__ = [
    "VINDR_SPLITS",
    "SCALES_COLUMNS",
    "vindr_dir",
    "detect_layout",
    "is_val_image",
    "load_vindr",
    "register_vindr",
    "cache_image_size",
    "default_cache_dir",
    "build_png_cache",
]

logger = logging.getLogger(__name__)

VINDR_SPLITS = ("train", "val", "test", "all")
CONSENSUS_READER = "consensus"
SCALES_COLUMNS = ("image_id", "folder", "original_height", "original_width", "height", "width", "scale")
CACHE_FOLDERS = ("train", "test")
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
DICOM_SUFFIX = ".dicom"
# Header reads of at least this many images show a progress bar.
_PROGRESS_MIN = 1000
_CACHE_HINT = "run tools/prepare_vindr.py (same --max-size and output) to (re)build the cache"


def vindr_dir(root=None) -> Path:
    """``<dataset root>/vindr-cxr``."""
    return dataset_root(root) / "vindr-cxr"


def _layout_files(base: Path):
    return {
        "physionet": base / "annotations" / "annotations_train.csv",
        "kaggle": base / "train.csv",
    }


def detect_layout(root=None) -> str:
    """``"physionet"`` or ``"kaggle"``, from the annotation files present under ``<root>/vindr-cxr``.

    PhysioNet wins when both are present. Neither -> :class:`DatasetFormatError` listing the
    files looked for.
    """
    files = _layout_files(vindr_dir(root))
    for layout, path in files.items():
        if table_exists(path):
            return layout
    looked = "; ".join(f"{path} ({name} layout)" for name, path in files.items())
    raise DatasetFormatError(f"no VinDr-CXR annotations found; looked for {looked}")


def is_val_image(image_id: str, val_fraction: float) -> bool:
    """Whether a training image belongs to the held-out ``val`` split.

    Deterministic and independent of the file's row order: the md5 of the image id, as an
    integer, modulo 10,000 is compared with ``val_fraction * 10,000``.
    """
    bucket = int(hashlib.md5(str(image_id).encode("utf-8")).hexdigest(), 16) % 10_000
    return bucket < val_fraction * 10_000


def _reader_key(rad_id: str):
    """Natural sort key: R2 before R10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", rad_id)]


def _sources(layout: str, base: Path, split: str):
    """[(csv path, image folder name, has labelled train/val split)] needed for ``split``."""
    files = _layout_files(base)
    sources = []
    if split in ("train", "val", "all"):
        sources.append((files[layout], "train", True))
    if split in ("test", "all") and layout == "physionet":
        sources.append((base / "annotations" / "annotations_test.csv", "test", False))
    if split == "test" and layout == "kaggle":
        raise ValueError(
            f"VinDr-CXR Kaggle layout ({files['kaggle']}): the Kaggle release has no test labels, "
            "so split='test' cannot be loaded; use split='val' (a held-out part of the labelled "
            "training images) for evaluation, or the PhysioNet release for its test set"
        )
    return sources


def _read_rows(csv_path: Path, layout: str):
    """Parse one annotation CSV into per-image lists of raw rows (validated later, per image).

    A row is ``(where, rad_id, class_name, class_id, x0, y0, x1, y1)``; box values that are
    blank or not numbers are NaN, ``class_id`` is NaN when absent. ``csv_path`` may be
    gzipped (``.csv.gz``, see :func:`~cxr_det.data.datasets.common.find_table`).
    """
    required = ["image_id", "class_name", *BOX_COLUMNS]
    if layout == "kaggle":
        required += ["rad_id", "class_id"]
    elif csv_path.name == "annotations_train.csv":
        required.append("rad_id")
    csv_path = find_table(csv_path)  # the file actually read, named in the skip reports
    frame = read_csv(csv_path, required_columns=required, dtype={"image_id": str, "rad_id": str, "class_name": str})
    rows_by_image = defaultdict(list)
    orphans = []
    image_ids = frame["image_id"].str.strip()
    names = frame["class_name"].fillna("").str.strip()
    if "rad_id" in frame.columns:
        readers = frame["rad_id"].fillna("").str.strip().replace("", CONSENSUS_READER)
    else:
        readers = pd.Series(CONSENSUS_READER, index=frame.index)
    class_ids = (
        pd.to_numeric(frame["class_id"], errors="coerce") if "class_id" in frame.columns else pd.Series(np.nan, index=frame.index)
    )
    coords = [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in BOX_COLUMNS]
    for i, (image_id, reader, name, class_id) in enumerate(zip(image_ids, readers, names, class_ids)):
        where = f"{csv_path.name} line {i + 2}"
        if not isinstance(image_id, str) or not image_id:
            orphans.append(where)
            continue
        rows_by_image[image_id].append(
            (where, reader, name, class_id, coords[0][i], coords[1][i], coords[2][i], coords[3][i])
        )
    return rows_by_image, orphans


def _resolve_cache_dir(image_cache, base: Path) -> Path:
    path = Path(image_cache).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base / path


def _read_scales(cache_dir: Path):
    """{(folder, image_id): scales.csv row as a dict} of a PNG cache."""
    path = cache_dir / "scales.csv"
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found; {_CACHE_HINT}")
    frame = read_csv(path, required_columns=SCALES_COLUMNS, dtype={"image_id": str, "folder": str})
    return {(r["folder"], r["image_id"]): r for r in frame.to_dict("records")}


def _safe_size(path):
    try:
        return dicom_size(path)
    except DicomReadError as e:
        return str(e)


def _dicom_sizes(paths):
    """Rows/Columns of many DICOMs (headers only; about 2k files/s), error text on failure."""
    progress = tqdm(paths, desc="VinDr-CXR DICOM headers", disable=len(paths) < _PROGRESS_MIN)
    return [_safe_size(path) for path in progress]


def _image_files(images, base: Path, cache_dir, skips: SkipLog):
    """{(folder, image_id): (file_name, height, width, original_height, original_width, scale)}.

    Images whose DICOM (or cached PNG) is missing or unreadable are counted as skips; a
    folder where none of the annotated images is found raises :class:`DatasetFormatError`.
    """
    found, by_folder = {}, defaultdict(list)
    for key in images:
        by_folder[key[0]].append(key)
    if cache_dir is not None:
        scales = _read_scales(cache_dir)
        for folder, keys in by_folder.items():
            for key in keys:
                row = scales.get(key)
                png = cache_dir / folder / f"{key[1]}.png"
                if row is None or not png.is_file():
                    skips.skip(f"image missing from the PNG cache {cache_dir} ({_CACHE_HINT})", str(png))
                    continue
                found[key] = (
                    str(png.resolve()),
                    int(row["height"]),
                    int(row["width"]),
                    int(row["original_height"]),
                    int(row["original_width"]),
                    float(row["scale"]),
                )
            if keys and not any(k in found for k in keys):
                raise DatasetFormatError(
                    f"{cache_dir / folder}: none of the {len(keys)} annotated images is in the PNG cache; {_CACHE_HINT}"
                )
        return found
    for folder, keys in by_folder.items():
        paths = {key: base / folder / f"{key[1]}{DICOM_SUFFIX}" for key in keys}
        present = [key for key in keys if paths[key].is_file()]
        for key in keys:
            if key not in present:
                skips.skip("DICOM file missing", str(paths[key]))
        if keys and not present:
            raise DatasetFormatError(
                f"{base / folder}: none of the {len(keys)} annotated images has its DICOM file "
                f"(expected <image_id>{DICOM_SUFFIX} files, e.g. {paths[keys[0]].name})"
            )
        for key, size in zip(present, _dicom_sizes([paths[k] for k in present])):
            if isinstance(size, str):
                skips.skip("unreadable DICOM", size)
                continue
            height, width = size
            found[key] = (str(paths[key].resolve()), height, width, height, width, 1.0)
    return found


def _row_box(row, layout, class_index, size, skips, counters):
    """Validate one annotation row; returns (category_id, box in original pixels) or None.

    "No finding" rows, and rows of known classes outside the selection, return None without
    a skip. Everything else that cannot give a box is counted in ``skips``.
    """
    where, _reader, name, class_id, x0, y0, x1, y1 = row
    if name == VINDR_NO_FINDING:
        if layout == "kaggle" and class_id != VINDR_NO_FINDING_ID:
            skips.skip("class_id disagrees with class_name", f"{where}: {name!r} with class_id {class_id}")
        return None
    if name not in VINDR_LOCAL_LABELS:
        skips.skip("unknown class name", f"{where}: {name!r}")
        return None
    if layout == "kaggle":
        expected = VINDR_KAGGLE_CLASSES.index(name) if name in VINDR_KAGGLE_CLASSES else None
        if expected is None or class_id != expected:
            skips.skip("class_id disagrees with class_name", f"{where}: {name!r} with class_id {class_id}")
            return None
    if name not in class_index:
        counters["ignored (class not selected)"] += 1
        return None
    box = [x0, y0, x1, y1]
    if any(np.isnan(box)):
        skips.skip("lesion row without a numeric box", where)
        return None
    problem = box_problem(box)
    if problem:
        skips.skip(problem, f"{where}: {box}")
        return None
    height, width = size
    clipped = clip_box(box, width, height)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        skips.skip("box entirely outside the image", f"{where}: {box} in {width}x{height}")
        return None
    if clipped != box:
        counters["clipped to the image"] += 1
    return class_index[name], [float(v) for v in clipped]


def _iou(box, boxes):
    """IoU of one XYXY box with each row of ``boxes``."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _fuse(candidates, iou_thr):
    """Weighted boxes fusion across radiologists; returns [(category_id, box, readers)].

    ``candidates``: ``(rad_id, category_id, XYXY box)`` of one image. The fusion is weighted
    boxes fusion (Solovyev et al., "Weighted boxes fusion: ensembling boxes from different
    object detection models", Image and Vision Computing 2021; ``weighted_boxes_fusion`` of
    the ensemble-boxes package) with each radiologist as one model and every box scored 1,
    plus one rule the package cannot express: a cluster holds at most one box of each
    radiologist, so only boxes of *different* radiologists are merged and a radiologist's
    own two overlapping boxes stay two lesions, each credited to them.

    Per class, boxes are visited radiologist by radiologist (R2 before R10), each in file
    order. A box joins the cluster whose current fused box it overlaps most, if that IoU
    is above ``iou_thr`` (strictly, as in the package) and the cluster has no box of the
    same radiologist yet; otherwise it starts a cluster. A fused box is the mean of its
    cluster's boxes (WBF's score-weighted mean with equal scores), updated after each join;
    its ``readers`` are exactly the radiologists of the cluster's boxes. Where no cluster
    would receive two boxes of one radiologist this gives the package's boxes (up to its
    float32 arithmetic); ``tests/test_vindr.py`` checks that.
    """
    by_class = defaultdict(list)
    order = sorted(range(len(candidates)), key=lambda i: (_reader_key(candidates[i][0]), i))
    for i in order:
        reader, category, box = candidates[i]
        by_class[int(category)].append((reader, np.asarray(box, dtype=float)))
    out = []
    for category, boxes in by_class.items():
        clusters = []  # [readers, member boxes, fused box]
        for reader, box in boxes:
            target = None
            if clusters:
                ious = _iou(box, [c[2] for c in clusters])
                for k in np.argsort(-ious, kind="stable"):
                    if ious[k] <= iou_thr:
                        break
                    if reader not in clusters[k][0]:
                        target = clusters[k]
                        break
            if target is None:
                clusters.append([[reader], [box], box.copy()])
            else:
                target[0].append(reader)
                target[1].append(box)
                target[2] = np.mean(target[1], axis=0)
        for readers, _, fused in clusters:
            out.append((category, [float(v) for v in fused], sorted(readers, key=_reader_key)))
    return sorted(out, key=lambda t: (t[0], t[1]))


def _drop_duplicate_rows(rows, skips):
    """``rows`` of one image without exact repeats (same rad_id, class, class_id and box).

    A repeated row is the same radiologist's same finding written twice; keeping it would
    make one lesion two ground-truth boxes. Each dropped row is counted in ``skips`` with
    the line it repeats.
    """
    seen, kept = {}, []
    for row in rows:
        key = tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row[1:])
        if key in seen:
            skips.skip("exact duplicate row (same image, rad_id, class and box; dropped)", f"{row[0]} repeats {seen[key]}")
            continue
        seen[key] = row[0]
        kept.append(row)
    return kept


def _annotation(category_id, box, readers):
    x0, y0, x1, y1 = box
    return {
        "bbox": [x0, y0, x1, y1],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category_id,
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
        "iscrowd": 0,
        "readers": list(readers),
    }


def load_vindr(
    root=None,
    split="train",
    classes=VINDR_KAGGLE_CLASSES,
    readers="all",
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
            none), or ``all`` (train + val, + test for PhysioNet).
        classes: VinDr local label names to detect (default the 14 Kaggle classes); boxes of
            other known classes are ignored.
        readers: ``"all"`` (every reader's boxes), ``"fused"`` (weighted boxes fusion per
            image and class of boxes of *different* radiologists overlapping with IoU above
            ``fuse_iou``, see :func:`_fuse`), or one rad_id such as ``"R9"`` (only that
            reader's boxes; images it did not read are left out and counted in the report).
            In every mode an exact repeat of a row (same image, rad_id, class and box) is
            dropped and counted.
        image_cache: a folder written by ``tools/prepare_vindr.py`` (absolute, relative to the
            working directory, or relative to ``<root>/vindr-cxr``); records then point at its
            PNGs, with boxes multiplied by the recorded scale. Empty: read the DICOMs.
        val_fraction: fraction of training images in ``val``.
        skip_log: a :class:`SkipLog` to count skipped rows into (e.g. for a summary table).

    Returns records as in docs/CONTRACT.md, sorted by ``vindr_image_id`` (``image_id`` is
    the position in that order); each record's ``split`` is its own part (train/val/test).
    Bad rows and images are skipped and reported once as a warning (see the contract).
    """
    if split not in VINDR_SPLITS:
        raise ValueError(f"VinDr-CXR: unknown split {split!r}; choose one of {VINDR_SPLITS}")
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise ValueError(f"VinDr-CXR: val_fraction must be in [0, 1], got {val_fraction}")
    if not 0.0 < float(fuse_iou) <= 1.0:
        raise ValueError(f"VinDr-CXR: fuse_iou must be in (0, 1], got {fuse_iou}")
    if not isinstance(readers, str) or not readers.strip():
        raise ValueError(f"VinDr-CXR: readers must be 'all', 'fused' or a rad_id like 'R9', got {readers!r}")
    readers = readers.strip()
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
    images, part_of, present_readers = {}, {}, set()
    for csv_path, folder, has_val in _sources(layout, base, split):
        rows_by_image, orphans = _read_rows(csv_path, layout)
        for where in orphans:
            skips.skip("row without image_id", where)
        for image_id, rows in rows_by_image.items():
            present_readers.update(r[1] for r in rows)
            part = ("val" if is_val_image(image_id, val_fraction) else "train") if has_val else "test"
            if split in ("all", part):
                images[(folder, image_id)] = _drop_duplicate_rows(rows, skips)
                part_of[(folder, image_id)] = part

    single = readers not in ("all", "fused")
    if single:
        if readers not in present_readers:
            raise ValueError(
                f"VinDr-CXR: reader {readers!r} does not appear in the annotations of split {split!r}; "
                f"readers present: {sorted(present_readers, key=_reader_key)} (or use 'all' / 'fused')"
            )
        not_read = [key for key, rows in images.items() if all(r[1] != readers for r in rows)]
        for key in not_read:
            del images[key]
        for key in not_read:
            skips.skip(f"image not read by {readers} (readers={readers!r})", key[1])

    files = _image_files(sorted(images), base, _resolve_cache_dir(image_cache, base) if image_cache else None, skips)

    records = []
    for key in sorted(files, key=lambda k: (k[1], k[0])):
        file_name, height, width, orig_h, orig_w, scale = files[key]
        rows = images[key]
        if single:
            rows = [r for r in rows if r[1] == readers]
        candidates = []
        for row in rows:
            result = _row_box(row, layout, class_index, (orig_h, orig_w), skips, counters)
            if result is None:
                continue
            category, box = result
            if scale != 1.0:
                box = clip_box([v * scale for v in box], width, height)
                problem = box_problem(box)
                if problem:  # a sliver at the border of a downsized PNG
                    skips.skip(f"{problem} after scaling to the PNG cache", f"{row[0]}: {box}")
                    continue
            candidates.append((row[1], category, box))
        if readers == "fused" and candidates:
            annotations = [_annotation(c, b, who) for c, b, who in _fuse(candidates, fuse_iou)]
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
                "readers": sorted({r[1] for r in rows}, key=_reader_key),
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
    records = load_vindr(root, split, **options)
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "layout"):
        meta.set(layout=detect_layout(root))
    return records


def register_vindr(name, root=None, split="train", **options):
    """Register ``load_vindr(root, split, **options)`` as ``name`` in detectron2's catalogs.

    Metadata: ``thing_classes``, ``evaluator_type="coco"``, ``dataset="vindr"``, ``readers``,
    ``split`` and ``layout`` (detected now when the files exist, else at the first load).
    Options are validated now, so a typo fails at registration rather than at training.
    """
    if split not in VINDR_SPLITS:
        raise ValueError(f"VinDr-CXR: unknown split {split!r}; choose one of {VINDR_SPLITS}")
    allowed = {"classes", "readers", "fuse_iou", "image_cache", "val_fraction"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"register_vindr: unknown option(s) {unknown}; valid: {sorted(allowed)}")
    classes = resolve_classes(options.get("classes", VINDR_KAGGLE_CLASSES), VINDR_LOCAL_LABELS, "VinDr-CXR")
    options = {**options, "classes": classes}
    DatasetCatalog.register(name, lambda: _load_registered(name, root, split, options))
    meta = {
        "thing_classes": list(classes),
        "evaluator_type": "coco",
        "dataset": "vindr",
        "readers": options.get("readers", "all"),
        "split": split,
    }
    try:
        meta["layout"] = detect_layout(root)
    except DatasetFormatError:
        logger.debug("VinDr-CXR %s: files not found yet; layout recorded at first load", name)
    MetadataCatalog.get(name).set(**meta)


# ----------------------------------------------------------------------------- PNG cache


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
    rows = {}
    if scales_path.is_file():
        frame = read_csv(scales_path, required_columns=SCALES_COLUMNS, dtype={"image_id": str, "folder": str})
        rows = {(r["folder"], r["image_id"]): r for r in frame.to_dict("records")}

    tasks, missing_folders, existing = [], [], 0
    for folder in splits:
        src = base / folder
        if not src.is_dir():
            missing_folders.append(str(src))
            logger.warning("VinDr-CXR cache: folder %s not found; skipped", src)
            continue
        (output / folder).mkdir(parents=True, exist_ok=True)
        for dicom_path in sorted(src.glob(f"*{DICOM_SUFFIX}")):
            image_id = dicom_path.name[: -len(DICOM_SUFFIX)]
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
                file = result["file"] if "error" in result else str(base / result["folder"] / f"{result['image_id']}{DICOM_SUFFIX}")
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
