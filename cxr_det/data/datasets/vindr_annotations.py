"""VinDr-CXR box annotations: finding the release, reading its rows, combining radiologists.

The layouts, columns and vocabularies are those of :mod:`cxr_det.formats.vindr_format`
(PhysioNet VinDr-CXR v1.0.0 and the Kaggle VinBigData release; sources cited there).
:func:`detect_layout` tells the releases apart, :func:`read_rows` parses one annotation
table into raw per-image rows, :func:`row_box` validates one row into a box, and
:func:`weighted_boxes_fusion` merges the boxes of different radiologists of one image.
:func:`cxr_det.data.datasets.vindr.load_vindr` puts them together into dataset dicts.
"""
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    box_problem,
    clip_box,
    dataset_root,
    find_table,
    read_csv,
    table_exists,
)
from cxr_det.formats import NO_FINDING
from cxr_det.formats.vindr_format import (
    VINDR_BOX_COLUMNS,
    VINDR_CONSENSUS_READER,
    VINDR_DIR,
    VINDR_KAGGLE_ANNOTATIONS,
    VINDR_KAGGLE_CLASSES,
    VINDR_LOCAL_LABELS,
    VINDR_NO_FINDING_ID,
    VINDR_PHYSIONET_ANNOTATIONS,
)
from cxr_det.utils.boxes import box_iou

__all__ = [
    "ANNOTATION_ROW",
    "vindr_dir",
    "annotation_files",
    "detect_layout",
    "annotation_sources",
    "reader_sort_key",
    "read_rows",
    "row_box",
    "drop_duplicate_rows",
    "weighted_boxes_fusion",
]


# The kind of input row in the conversion ledger (SkipLog.read/account/skip(unit=...)).
ANNOTATION_ROW = "annotation row"


def vindr_dir(root=None) -> Path:
    """``<dataset root>/vindr-cxr`` (dataset root: ``root``, else ``$CXR_DATASETS``, else ``./datasets``)."""
    return dataset_root(root) / VINDR_DIR


def annotation_files(base: Path) -> dict:
    """{layout: the training annotation table whose presence identifies it} under ``base``
    (``<root>/vindr-cxr``), in the order the layouts are looked for."""
    return {
        "physionet": base / VINDR_PHYSIONET_ANNOTATIONS["train"],
        "kaggle": base / VINDR_KAGGLE_ANNOTATIONS["train"],
    }


def detect_layout(root=None) -> str:
    """``"physionet"`` or ``"kaggle"``, from the annotation files present under ``<root>/vindr-cxr``.

    PhysioNet wins when both are present. Neither -> :class:`DatasetFormatError` listing the
    files looked for.
    """
    files = annotation_files(vindr_dir(root))
    for layout, path in files.items():
        if table_exists(path):
            return layout
    looked = "; ".join(f"{path} ({name} layout)" for name, path in files.items())
    raise DatasetFormatError(f"no VinDr-CXR annotations found; looked for {looked}")


def annotation_sources(layout: str, base: Path, split: str):
    """``[(csv path, image folder, labelled training images)]`` that ``split`` needs.

    ``split`` is ``train``/``val``/``test``/``all``; ``train`` and ``val`` both read the
    training table (the third item True: split further by
    :func:`~cxr_det.data.datasets.vindr.is_val_image`). Raises ValueError for ``test`` in the
    Kaggle layout, which has no test labels.
    """
    files = annotation_files(base)
    sources = []
    if split in ("train", "val", "all"):
        sources.append((files[layout], "train", True))
    if split in ("test", "all") and layout == "physionet":
        sources.append((base / VINDR_PHYSIONET_ANNOTATIONS["test"], "test", False))
    if split == "test" and layout == "kaggle":
        raise ValueError(
            f"VinDr-CXR Kaggle layout ({files['kaggle']}): the Kaggle release has no test labels, "
            "so split='test' cannot be loaded; use split='val' (a held-out part of the labelled "
            "training images) for evaluation, or the PhysioNet release for its test set"
        )
    return sources


def reader_sort_key(rad_id: str):
    """Natural sort key of a radiologist's id: R2 before R10.

    The runs of decimal digits (the odd items of the split) compare as numbers, the rest as
    text, so any two ids compare (text and number never meet at one position).
    """
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", str(rad_id)))]


def read_rows(csv_path: Path, layout: str, training_table: bool):
    """Parse one annotation table into per-image lists of raw rows (validated later, per image).

    Returns ``({image_id: [row, ...]}, [where of rows without image_id])``. A row is
    ``(where, rad_id, class_name, class_id, x0, y0, x1, y1)`` with ``where`` "<file> line
    <n>"; box values that are blank or not numbers are NaN, ``class_id`` is NaN when the
    column is absent, and a blank or absent ``rad_id`` is
    :data:`~cxr_det.formats.vindr_format.VINDR_CONSENSUS_READER`. ``rad_id`` is required in
    a ``training_table`` (and in the Kaggle ``train.csv``, with ``class_id``). ``csv_path``
    may be gzipped (``.csv.gz``, see :func:`~cxr_det.data.datasets.common.find_table`).
    Raises :class:`DatasetFormatError` naming the file and the missing columns.
    """
    required = ["image_id", "class_name", *VINDR_BOX_COLUMNS]
    if layout == "kaggle":
        required += ["rad_id", "class_id"]
    elif training_table:
        required.append("rad_id")
    csv_path = find_table(csv_path)  # the file actually read, named in the skip reports
    frame = read_csv(csv_path, required_columns=required, dtype={"image_id": str, "rad_id": str, "class_name": str})
    rows_by_image = defaultdict(list)
    orphans = []
    image_ids = frame["image_id"].str.strip()
    names = frame["class_name"].fillna("").str.strip()
    if "rad_id" in frame.columns:
        readers = frame["rad_id"].fillna("").str.strip().replace("", VINDR_CONSENSUS_READER)
    else:
        readers = pd.Series(VINDR_CONSENSUS_READER, index=frame.index)
    class_ids = (
        pd.to_numeric(frame["class_id"], errors="coerce") if "class_id" in frame.columns else pd.Series(np.nan, index=frame.index)
    )
    coords = [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in VINDR_BOX_COLUMNS]
    for i, (image_id, reader, name, class_id) in enumerate(zip(image_ids, readers, names, class_ids)):
        where = f"{csv_path.name} line {i + 2}"
        if not isinstance(image_id, str) or not image_id:
            orphans.append(where)
            continue
        rows_by_image[image_id].append(
            (where, reader, name, class_id, coords[0][i], coords[1][i], coords[2][i], coords[3][i])
        )
    return rows_by_image, orphans


def row_box(row, layout, class_index, size, skips, counters):
    """Validate one row of :func:`read_rows`; returns ``(category_id, [x0, y0, x1, y1])`` in
    pixels of the original DICOM (clipped to its ``size`` = (height, width)), or None.

    "No finding" rows, and rows of known classes outside ``class_index`` ({class name:
    category id}), return None without a skip (the latter counted in ``counters``). Every
    other row that cannot give a box (unknown class, Kaggle class_id disagreeing with the
    name, missing or non-numeric box, x_max < x_min, zero area, entirely outside the image)
    is counted in ``skips`` (a :class:`~cxr_det.data.datasets.common.SkipLog`). Each row
    that gives no box gets its outcome in the ledger of ``skips`` (an
    :data:`ANNOTATION_ROW`); a box's outcome is the caller's.
    """
    where, _reader, name, class_id, x0, y0, x1, y1 = row
    if name == NO_FINDING:
        if layout == "kaggle" and class_id != VINDR_NO_FINDING_ID:
            skips.skip("class_id disagrees with class_name", f"{where}: {name!r} with class_id {class_id}", unit=ANNOTATION_ROW)
        else:
            skips.account(ANNOTATION_ROW, "No finding row (no box)")
        return None
    if name not in VINDR_LOCAL_LABELS:
        skips.skip("unknown class name", f"{where}: {name!r}", unit=ANNOTATION_ROW)
        return None
    if layout == "kaggle":
        expected = VINDR_KAGGLE_CLASSES.index(name) if name in VINDR_KAGGLE_CLASSES else None
        if expected is None or class_id != expected:
            skips.skip("class_id disagrees with class_name", f"{where}: {name!r} with class_id {class_id}", unit=ANNOTATION_ROW)
            return None
    if name not in class_index:
        counters["ignored (class not selected)"] += 1
        skips.account(ANNOTATION_ROW, "class not selected (ignored)")
        return None
    box = [x0, y0, x1, y1]
    if any(np.isnan(box)):
        skips.skip("lesion row without a numeric box", where, unit=ANNOTATION_ROW)
        return None
    problem = box_problem(box)
    if problem:
        skips.skip(problem, f"{where}: {box}", unit=ANNOTATION_ROW)
        return None
    height, width = size
    clipped = clip_box(box, width, height)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        skips.skip("box entirely outside the image", f"{where}: {box} in {width}x{height}", unit=ANNOTATION_ROW)
        return None
    if clipped != box:
        counters["clipped to the image"] += 1
    return class_index[name], [float(v) for v in clipped]


def drop_duplicate_rows(rows, skips):
    """``rows`` of one image without exact repeats (same rad_id, class, class_id and box).

    A repeated row is the same radiologist's same finding written twice; keeping it would
    make one lesion two ground-truth boxes. Each dropped row is counted in ``skips`` with
    the line it repeats.
    """
    seen, kept = {}, []
    for row in rows:
        key = tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row[1:])
        if key in seen:
            skips.skip(
                "exact duplicate row (same image, rad_id, class and box; dropped)", f"{row[0]} repeats {seen[key]}",
                unit=ANNOTATION_ROW,
            )
            continue
        seen[key] = row[0]
        kept.append(row)
    return kept


def weighted_boxes_fusion(candidates, iou_thr):
    """Weighted boxes fusion across radiologists; returns ``[(category_id, box, readers)]``.

    ``candidates``: ``(rad_id, category_id, XYXY box)`` of one image; ``iou_thr`` in (0, 1].
    The fusion is weighted boxes fusion (Solovyev et al., "Weighted boxes fusion: ensembling
    boxes from different object detection models", Image and Vision Computing 2021;
    ``weighted_boxes_fusion`` of the ensemble-boxes package) with each radiologist as one
    model and every box scored 1, plus one rule the package cannot express: a cluster holds
    at most one box of each radiologist, so only boxes of *different* radiologists are
    merged and a radiologist's own two overlapping boxes stay two lesions, each credited to
    them.

    Per class, boxes are visited radiologist by radiologist (R2 before R10), each in file
    order. A box joins the cluster whose current fused box it overlaps most, if that IoU
    is above ``iou_thr`` (strictly, as in the package) and the cluster has no box of the
    same radiologist yet; otherwise it starts a cluster. A fused box is the mean of its
    cluster's boxes (WBF's score-weighted mean with equal scores), updated after each join;
    its ``readers`` are exactly the radiologists of the cluster's boxes, naturally sorted.
    Where no cluster would receive two boxes of one radiologist this gives the package's
    boxes (up to its float32 arithmetic); ``tests/data/datasets/test_vindr.py`` checks that. The output is
    sorted by category, then box.
    """
    by_class = defaultdict(list)
    order = sorted(range(len(candidates)), key=lambda i: (reader_sort_key(candidates[i][0]), i))
    for i in order:
        reader, category, box = candidates[i]
        by_class[int(category)].append((reader, np.asarray(box, dtype=float)))
    out = []
    for category, boxes in by_class.items():
        clusters = []  # [readers, member boxes, fused box]
        for reader, box in boxes:
            target = None
            if clusters:
                ious = box_iou(box, [c[2] for c in clusters])[0]
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
            out.append((category, [float(v) for v in fused], sorted(readers, key=reader_sort_key)))
    return sorted(out, key=lambda t: (t[0], t[1]))
