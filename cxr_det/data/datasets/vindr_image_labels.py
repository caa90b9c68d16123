"""VinDr-CXR image-level labels: classification dataset dicts (multi-label, or abnormal vs normal).

Sources (format facts): VinDr-CXR v1.0.0 on PhysioNet, https://physionet.org/content/vindr-cxr/1.0.0/
(https://doi.org/10.13026/3akn-b287), and Nguyen H. Q. et al., "VinDr-CXR: An open dataset of
chest X-rays with radiologist's annotations", Scientific Data 9, 429 (2022); the Kaggle
VinBigData copy for the abnormal task. Paths and columns come from
:mod:`cxr_det.formats.vindr_format`:

* ``vindr-cxr/annotations/image_labels_train.csv``: one row per (image, radiologist) with
  ``image_id``, the reader column (``rad_id``; matched case-insensitively, so ``rad_ID`` is
  read too) and one 0/1 column per label (22 local labels, then the 6 global ones);
  ``image_labels_test.csv``: one consensus row per image, no reader column. The label
  columns are selected by name. "Other diseases" is also accepted as ``Other disease``
  (public code reading the v1.0.0 files renames the test file's column; which spelling was
  found is logged).
* Kaggle ``vindr-cxr/train.csv`` (no image-label files): one row per box or per "No finding"
  reading (``class_id`` 14), per radiologist; only the abnormal task can be read from it.
* Images: ``vindr-cxr/{train,test}/<image_id>.dicom``.

Several radiologists' rows of one training image are combined per label: ``"majority"``
(positive when strictly more than half of that image's radiologists marked it) or
``"any"`` (positive when at least one did). The ``"abnormal"`` task is single-label and
combines each radiologist's "reported a finding" (their "No finding" is 0) by the same rule:
``label`` 1 (abnormal) when more than half of the radiologists (``"majority"``) or at least
one of them (``"any"``) reported a finding, else 0.

Splits: ``train``/``val`` are the training images divided by
:func:`cxr_det.data.datasets.vindr.is_val_image` (the detection registrar's md5 rule, so an
image is in the same split for both tasks); ``test`` is the consensus file (PhysioNet only);
``all`` is their union.
"""
import logging
import math

import numpy as np
import pandas as pd
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog, find_table, read_csv, table_exists
from cxr_det.data.datasets.vindr import is_val_image
from cxr_det.data.datasets.vindr_annotations import reader_sort_key, vindr_dir
from cxr_det.data.dicom_header import DicomReadError, read_dicom_header
from cxr_det.formats import NO_FINDING, normalise_split
from cxr_det.formats.vindr_format import (
    VINDR_CONSENSUS_READER,
    VINDR_DICOM_SUFFIX,
    VINDR_IMAGE_LABEL_COLUMNS,
    VINDR_IMAGE_LABEL_KEYS,
    VINDR_IMAGE_LABEL_SPELLINGS,
    VINDR_KAGGLE_ANNOTATIONS,
    VINDR_NO_FINDING_ID,
    VINDR_PHYSIONET_IMAGE_LABELS,
)

__all__ = [
    "IMAGE_LABEL_READERS",
    "IMAGE_LABEL_TASKS",
    "ABNORMAL_CLASSES",
    "LABEL_SPELLINGS",
    "image_labels_layout",
    "combine_readers",
    "load_vindr_image_labels",
    "register_vindr_image_labels",
]

logger = logging.getLogger(__name__)

IMAGE_LABEL_READERS = ("majority", "any")
IMAGE_LABEL_TASKS = ("multi_label", "abnormal")
# thing_classes of the abnormal task: label 0 = "No finding", 1 = abnormal.
ABNORMAL_CLASSES = (NO_FINDING, "Abnormal")
# Other spellings of a label column found in the shipped files: {label: (spellings, ...)}.
LABEL_SPELLINGS = VINDR_IMAGE_LABEL_SPELLINGS
_OPTIONS = ("labels", "readers", "task", "val_fraction")
_PROGRESS_MIN = 1000


def image_labels_layout(root=None) -> str:
    """``"physionet"`` when ``image_labels_train.csv`` (or ``.csv.gz``) is under ``<root>/vindr-cxr``,
    else ``"kaggle"`` when the Kaggle ``train.csv`` is; neither -> :class:`DatasetFormatError`."""
    base = vindr_dir(root)
    physionet = base / VINDR_PHYSIONET_IMAGE_LABELS["train"]
    kaggle = base / VINDR_KAGGLE_ANNOTATIONS["train"]
    if table_exists(physionet):
        return "physionet"
    if table_exists(kaggle):
        return "kaggle"
    raise DatasetFormatError(
        f"no VinDr-CXR image labels found; looked for {physionet} (PhysioNet) and {kaggle} (Kaggle, abnormal task only)"
    )


def _resolve_labels(labels, task):
    if task == "abnormal":
        return [NO_FINDING]
    if labels is None or list(labels) in ([], ["all"]):
        return list(VINDR_IMAGE_LABEL_COLUMNS)
    labels = [str(x) for x in labels]
    unknown = [x for x in labels if x not in VINDR_IMAGE_LABEL_COLUMNS]
    if unknown:
        raise ValueError(f"VinDr-CXR image labels: unknown label(s) {unknown}; valid: {list(VINDR_IMAGE_LABEL_COLUMNS)}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"VinDr-CXR image labels: label list has duplicates: {labels}")
    return labels


def _check_options(readers, task, val_fraction):
    if readers not in IMAGE_LABEL_READERS:
        raise ValueError(f"VinDr-CXR image labels: readers must be one of {IMAGE_LABEL_READERS}, got {readers!r}")
    if task not in IMAGE_LABEL_TASKS:
        raise ValueError(f"VinDr-CXR image labels: task must be one of {IMAGE_LABEL_TASKS}, got {task!r}")
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise ValueError(f"VinDr-CXR image labels: val_fraction must be in [0, 1], got {val_fraction}")


def _column_map(frame, path, labels, keys):
    """{wanted name: column in the file}; keys matched case-insensitively, labels by exact
    name (or a spelling of :data:`LABEL_SPELLINGS`). Raises naming the file and column."""
    lower = {str(c).strip().lower(): c for c in frame.columns}
    found = {}
    for key in keys:
        if key.lower() not in lower:
            raise DatasetFormatError(f"{path}: missing column {key!r}; columns present: {list(frame.columns)}")
        found[key] = lower[key.lower()]
    for label in labels:
        spellings = LABEL_SPELLINGS.get(label, (label,))
        present = [s for s in spellings if s in frame.columns]
        if not present:
            raise DatasetFormatError(
                f"{path}: missing label column {label!r} (looked for {list(spellings)}); columns present: {list(frame.columns)}"
            )
        found[label] = present[0]
        if len(spellings) > 1:
            logger.info("%s: label %r read from column %r", path.name, label, present[0])
    return found


def _read_label_rows(path, labels, keys, skips):
    """``DataFrame[image_id, reader, *labels]`` of one image-label file, labels as 0/1 ints.

    Rows without image_id, with a label cell that is not 0 or 1 (blank included), or
    repeating an (image, reader) pair are counted skips."""
    path = find_table(path)
    # Cells a short (e.g. truncated) last row lacks are NaN even with keep_default_na=False.
    frame = read_csv(path, dtype=str, keep_default_na=False).fillna("")
    columns = _column_map(frame, path, labels, keys)
    out = pd.DataFrame({"image_id": frame[columns["image_id"]].str.strip()})
    reader_key = keys[1] if len(keys) > 1 else None
    out["reader"] = frame[columns[reader_key]].str.strip() if reader_key else VINDR_CONSENSUS_READER
    out["reader"] = out["reader"].replace("", VINDR_CONSENSUS_READER)
    lines = pd.Series(np.arange(len(frame)) + 2, index=frame.index)
    keep = out["image_id"] != ""
    for i in lines[~keep]:
        skips.skip("row without image_id", f"{path.name} line {i}")
    for label in labels:
        values = pd.to_numeric(frame[columns[label]].str.strip(), errors="coerce")
        bad = keep & ~values.isin([0, 1])
        for i, value in zip(lines[bad], frame.loc[bad, columns[label]]):
            skips.skip("label value not 0 or 1", f"{path.name} line {i} column {columns[label]!r}: {value!r}")
        keep &= ~bad
        out[label] = values.where(values.isin([0, 1]), 0).astype(int)  # the bad rows are dropped below
    out, lines = out[keep], lines[keep]
    repeated = out.duplicated(["image_id", "reader"], keep="first")
    for i in lines[repeated]:
        skips.skip("repeated (image_id, reader) row; first kept", f"{path.name} line {i}")
    return out[~repeated]


def _read_kaggle_rows(path, skips):
    """Kaggle ``train.csv`` as per-(image, radiologist) "No finding" rows (1 when that
    radiologist wrote a ``class_id`` 14 row, else 0)."""
    path = find_table(path)
    frame = read_csv(path, required_columns=("image_id", "rad_id", "class_id"), dtype=str, keep_default_na=False).fillna("")
    image_ids = frame["image_id"].str.strip()
    readers = frame["rad_id"].str.strip()
    class_ids = pd.to_numeric(frame["class_id"].str.strip(), errors="coerce")
    lines = np.arange(len(frame)) + 2
    bad = (image_ids == "") | (readers == "") | class_ids.isna()
    for i in lines[bad.to_numpy()]:
        skips.skip("row without image_id, rad_id or numeric class_id", f"{path.name} line {i}")
    rows = pd.DataFrame({"image_id": image_ids, "reader": readers, NO_FINDING: (class_ids == VINDR_NO_FINDING_ID).astype(int)})
    return rows[~bad].groupby(["image_id", "reader"], as_index=False)[NO_FINDING].max()


def _as_task(rows, task):
    """For the abnormal task, each radiologist's "No finding" column turned into "reported a
    finding" (1 - No finding), so that the reader rule combines findings, not normality."""
    if task != "abnormal":
        return rows
    return rows.assign(**{NO_FINDING: 1 - rows[NO_FINDING]})


def combine_readers(rows, labels, readers):
    """Per image, the labels of its radiologists combined: ``rows`` has ``image_id``,
    ``reader`` and 0/1 ``labels`` columns. ``"majority"``: positive when the positives are
    strictly more than half of that image's rows; ``"any"``: positive when one is.
    Returns ``(DataFrame indexed by image_id with 0/1 labels, Series of reader lists)``."""
    grouped = rows.groupby("image_id", sort=True)
    positives = grouped[labels].sum()
    if readers == "majority":
        combined = (2 * positives).gt(grouped.size(), axis=0).astype(int)
    else:
        combined = positives.gt(0).astype(int)
    who = grouped["reader"].agg(lambda r: sorted(r, key=reader_sort_key))
    return combined, who


def _clinical(header):
    """The raw clinical record of one DICOM header, as
    :func:`cxr_det.data.clinical.tables.vindr_clinical_from_dicom` makes it."""
    age = header["patient_age_years"]
    return {"age": float(age) if age else math.nan, "gender": header["patient_sex"], "patient_age_raw": header["patient_age_raw"]}


def load_vindr_image_labels(
    root=None, split="train", *, labels=None, readers="majority", task="multi_label", val_fraction=0.2, skip_log=None
):
    """Classification dataset dicts of VinDr-CXR's image-level labels.

    Args:
        root: dataset root holding ``vindr-cxr/`` (default ``$CXR_DATASETS`` or ``./datasets``).
        split: ``train``/``val`` (md5 split of the training images, :func:`is_val_image`),
            ``test`` (the consensus file; PhysioNet only) or ``all``.
        labels: label names of ``VINDR_IMAGE_LABEL_COLUMNS`` (default, or ``["all"]``: all 28,
            22 local then 6 global), in the order wanted. Ignored by the abnormal task.
        readers: ``"majority"`` or ``"any"`` (see the module docstring); the test file has one
            consensus row per image, so both give the same test labels.
        task: ``"multi_label"`` (``labels``: C floats 1.0/0.0, ``label_weights``: C 1.0s) or
            ``"abnormal"`` (single-label ``label``: 1 abnormal, 0 "No finding"); the
            Kaggle layout offers the abnormal task only.
        val_fraction: fraction of training images in ``val``, in [0, 1].
        skip_log: a :class:`SkipLog` to count skips into (default: a new one, reported).

    Returns records sorted by ``vindr_image_id`` with ``file_name`` (the DICOM), ``height``,
    ``width``, ``image_id`` (position), ``dataset="vindr"``, ``split``, ``vindr_image_id``,
    ``readers`` (rad_ids, or ``["consensus"]``), ``clinical`` (``{"age", "gender",
    "patient_age_raw"}`` from the DICOM header: age in years, NaN when missing or zero), and
    the labels. Counted skips: missing DICOM, unreadable DICOM header, row without
    image_id, label cell not 0/1, repeated (image, reader) row. Raises ValueError for a bad
    option (or the test split / multi-label task of the Kaggle layout),
    :class:`DatasetFormatError` for a missing file or column.
    """
    split = normalise_split(split, "VinDr-CXR image labels")
    _check_options(readers, task, val_fraction)
    wanted = _resolve_labels(labels, task)
    base = vindr_dir(root)
    layout = image_labels_layout(root)
    skips = skip_log if skip_log is not None else SkipLog("VinDr-CXR image labels")
    if layout == "kaggle":
        if task != "abnormal":
            raise ValueError(
                f"VinDr-CXR image labels: {base} has the Kaggle layout (train.csv, boxes only); the "
                "multi-label task needs the PhysioNet annotations/image_labels_*.csv; use task='abnormal'"
            )
        if split == "test":
            raise ValueError("VinDr-CXR image labels: the Kaggle release has no test labels; use split='val'")

    parts = []  # (image folder, combined labels, reader lists, split of each image)
    if split in ("train", "val", "all"):
        if layout == "physionet":
            rows = _read_label_rows(base / VINDR_PHYSIONET_IMAGE_LABELS["train"], wanted, VINDR_IMAGE_LABEL_KEYS["train"], skips)
        else:
            rows = _read_kaggle_rows(base / VINDR_KAGGLE_ANNOTATIONS["train"], skips)
        combined, who = combine_readers(_as_task(rows, task), wanted, readers)
        is_val = np.array([is_val_image(i, val_fraction) for i in combined.index], dtype=bool)
        part = np.where(is_val, "val", "train")
        keep = np.ones(len(part), bool) if split == "all" else part == split
        parts.append(("train", combined[keep], who[keep], part[keep]))
    if split in ("test", "all") and layout == "physionet":
        rows = _read_label_rows(base / VINDR_PHYSIONET_IMAGE_LABELS["test"], wanted, VINDR_IMAGE_LABEL_KEYS["test"], skips)
        combined, who = combine_readers(_as_task(rows, task), wanted, readers)
        parts.append(("test", combined, who, np.full(len(combined), "test")))

    entries = []
    for folder, combined, who, part in parts:
        values = combined[wanted].to_numpy()
        for image_id, row, reader_list, p in zip(combined.index, values, who, part):
            entries.append((image_id, folder, row, reader_list, p))
    entries.sort(key=lambda e: (e[0], e[1]))
    present = []
    for entry in entries:
        path = base / entry[1] / f"{entry[0]}{VINDR_DICOM_SUFFIX}"
        if path.is_file():
            present.append((entry, path))
        else:
            skips.skip("DICOM file missing", str(path))
    if entries and not present:
        raise DatasetFormatError(
            f"{base}: none of the {len(entries)} labelled images of split {split!r} has its DICOM "
            f"(expected {{train,test}}/<image_id>{VINDR_DICOM_SUFFIX})"
        )

    records = []
    no_finding = wanted.index(NO_FINDING) if task == "abnormal" else None
    for (image_id, folder, row, reader_list, part), path in tqdm(
        present, desc="VinDr-CXR DICOM headers", disable=len(present) < _PROGRESS_MIN
    ):
        try:
            header = read_dicom_header(path)
        except DicomReadError as e:
            skips.skip("unreadable DICOM header", str(e))
            continue
        if not header["rows"] or not header["columns"] or header["rows"] < 0 or header["columns"] < 0:
            skips.skip("unreadable DICOM header", f"{path}: Rows/Columns missing or invalid")
            continue
        record = {
            "file_name": str(path.resolve()),
            "height": header["rows"],
            "width": header["columns"],
            "image_id": len(records),
            "dataset": "vindr",
            "split": str(part),
            "vindr_image_id": image_id,
            "readers": list(reader_list),
            "clinical": _clinical(header),
        }
        if task == "abnormal":
            record["label"] = int(row[no_finding] == 1)  # the column holds "reported a finding"
        else:
            record["labels"] = [float(v) for v in row]
            record["label_weights"] = [1.0] * len(wanted)
        records.append(record)
    if skip_log is None:
        skips.report(logger)
    logger.info(
        "VinDr-CXR image labels (%s layout, split %s, readers %s, task %s): %d images",
        layout, split, readers, task, len(records),
    )
    return records


def register_vindr_image_labels(name, root=None, split="train", **options):
    """Register ``load_vindr_image_labels(root, split, **options)`` as ``name``.

    Options (validated now: TypeError for an unknown one, ValueError for a bad value):
    ``labels``, ``readers``, ``task``, ``val_fraction``. Metadata: ``thing_classes`` (the
    label names, or ``ABNORMAL_CLASSES`` for the abnormal task), ``evaluator_type=
    "cxr_classification"``, ``dataset="vindr"``, ``split``, ``task`` (``"multi_label"`` or
    ``"single_label"``), ``label_task`` (the ``task`` option), ``readers``, ``labels``,
    ``val_fraction``.
    """
    split = normalise_split(split, "VinDr-CXR image labels")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"register_vindr_image_labels: unknown option(s) {unknown}; valid: {sorted(_OPTIONS)}")
    readers = options.get("readers", "majority")
    task = options.get("task", "multi_label")
    val_fraction = float(options.get("val_fraction", 0.2))
    _check_options(readers, task, val_fraction)
    wanted = _resolve_labels(options.get("labels"), task)
    options = {**options, "labels": wanted, "readers": readers, "task": task, "val_fraction": val_fraction}
    DatasetCatalog.register(name, lambda: load_vindr_image_labels(root, split, **options))
    MetadataCatalog.get(name).set(
        thing_classes=list(ABNORMAL_CLASSES) if task == "abnormal" else list(wanted),
        evaluator_type="cxr_classification",
        dataset="vindr",
        split=split,
        task="single_label" if task == "abnormal" else "multi_label",
        label_task=task,
        readers=readers,
        labels=list(wanted),
        val_fraction=val_fraction,
    )
