"""Synthetic VinDr-CXR datasets: DICOM images and annotation CSVs, PhysioNet or Kaggle layout.

Each image is a DICOM (MONOCHROME1 or 2, 12/14/16 stored bits, optional rescale and
window tags) holding 0-3 of the 14 Kaggle lesion classes, each drawn by its own painter.
Training images are read by 3 of the radiologists R1..R17 whose boxes scatter around the
true ones (with the occasional miss); PhysioNet test images carry one consensus box per
lesion. "No finding" reader rows have empty box fields, as in the real files.

Folders, file names, columns and label vocabularies come from
:mod:`cxr_det.formats.vindr_format` (VinDr-CXR v1.0.0 on PhysioNet, and the Kaggle
VinBigData release).
"""
import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from cxr_det.formats import NO_FINDING
from cxr_det.formats.vindr_format import (
    VINDR_DICOM_SUFFIX,
    VINDR_DIR,
    VINDR_GLOBAL_LABELS,
    VINDR_IMAGE_LABEL_COLUMNS,
    VINDR_IMAGE_LABEL_KEYS,
    VINDR_KAGGLE_ANNOTATIONS,
    VINDR_KAGGLE_CLASSES,
    VINDR_KAGGLE_COLUMNS,
    VINDR_LAYOUTS,
    VINDR_LOCAL_LABELS,
    VINDR_NO_FINDING_ID,
    VINDR_PHYSIONET_ANNOTATIONS,
    VINDR_PHYSIONET_COLUMNS,
    VINDR_PHYSIONET_IMAGE_LABELS,
)
from cxr_det.synthetic import render
from cxr_det.synthetic.dataset_writer import DatasetWriter
from cxr_det.synthetic.dicom_writer import encode_display

__all__ = ["make_vindr"]

logger = logging.getLogger(__name__)

_CLASS_WEIGHTS = {
    "Aortic enlargement": 3.0,
    "Atelectasis": 1.0,
    "Calcification": 1.0,
    "Cardiomegaly": 3.0,
    "Consolidation": 1.0,
    "ILD": 1.0,
    "Infiltration": 1.0,
    "Lung Opacity": 1.5,
    "Nodule/Mass": 1.5,
    "Other lesion": 1.0,
    "Pleural effusion": 1.5,
    "Pleural thickening": 2.0,
    "Pneumothorax": 0.7,
    "Pulmonary fibrosis": 2.0,
}
_RADIOLOGISTS = [f"R{i}" for i in range(1, 18)]
_RAD_WEIGHTS = np.array([3.0 if r in ("R8", "R9", "R10") else 1.0 for r in _RADIOLOGISTS])


def _image_id(seed, index):
    return hashlib.md5(f"{seed}-{index}".encode()).hexdigest()


def _dicom_params(rng, size):
    """Random but realistic DICOM storage choices for one image."""
    bits = int(rng.choice([12, 14, 16], p=[0.45, 0.3, 0.25]))
    photometric = "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2"
    r = rng.random()
    rescale = (1.0, -1024.0) if r < 0.3 else ((1.0, 0.0) if r < 0.5 else None)
    with_window = rng.random() < 0.85
    a = rng.random()
    age = None if a < 0.08 else (f"{int(rng.integers(3, 23)):03d}M" if a < 0.1 else f"{int(rng.integers(18, 91)):03d}Y")
    x = rng.random()
    sex = "M" if x < 0.47 else ("F" if x < 0.92 else ("O" if x < 0.96 else None))
    spacing = round(float(rng.uniform(0.6, 0.8)) * 512.0 / size, 4)
    return bits, photometric, rescale, with_window, age, sex, spacing, (float(rng.uniform(0.02, 0.12)), float(rng.uniform(0.7, 0.95)))


def _fmt_box(box, decimals):
    if decimals:
        return [f"{v:.1f}" for v in box]
    return [str(int(round(v))) for v in box]


def _jitter(rng, box, width, height, frac, decimals):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    nx0 = x0 + rng.normal(0, frac * w)
    nx1 = x1 + rng.normal(0, frac * w)
    ny0 = y0 + rng.normal(0, frac * h)
    ny1 = y1 + rng.normal(0, frac * h)
    nx0, nx1 = sorted((nx0, nx1))
    ny0, ny1 = sorted((ny0, ny1))
    nx0, ny0 = max(0.0, nx0), max(0.0, ny0)
    nx1, ny1 = min(float(width), max(nx1, nx0 + 3)), min(float(height), max(ny1, ny0 + 3))
    out = [nx0, ny0, nx1, ny1]
    return [round(v, 1) for v in out] if decimals else [float(round(v)) for v in out]


def _global_labels(rng, classes):
    """Image-level (global) labels a reader would tick given the lesion classes they boxed."""
    flags = dict.fromkeys(VINDR_GLOBAL_LABELS, 0)
    if classes & {"Consolidation", "Infiltration", "Lung Opacity"} and rng.random() < 0.6:
        flags["Pneumonia"] = 1
    if "Nodule/Mass" in classes and rng.random() < 0.4:
        flags["Lung tumor"] = 1
    if "Pulmonary fibrosis" in classes and rng.random() < 0.3:
        flags["Tuberculosis"] = 1
    if classes and rng.random() < 0.05:
        flags["COPD"] = 1
    if classes and rng.random() < 0.25:
        flags["Other diseases"] = 1
    flags[NO_FINDING] = int(not classes)
    return flags


def _image_label_cells(rng, classes):
    """0/1 cells of an ``image_labels_*.csv`` row for a reader who boxed ``classes``: the local
    labels (:data:`VINDR_LOCAL_LABELS` order), then the global ones."""
    local = [int(label in classes) for label in VINDR_LOCAL_LABELS]
    return local + list(_global_labels(rng, classes).values())


def make_vindr(out, n_images, seed, size=512, layout="physionet") -> dict:
    """Write a synthetic VinDr-CXR dataset under ``out`` in the ``physionet`` or ``kaggle`` layout.

    About 80% of the ``n_images`` (>= 2) are training images (3 readers each), 20% test
    images (consensus labels in the PhysioNet layout, unlabelled in the Kaggle one);
    about 40% are "No finding". Deterministic in ``seed``. Returns a summary dict.
    """
    if layout not in VINDR_LAYOUTS:
        raise ValueError(f"layout must be one of {VINDR_LAYOUTS}, got {layout!r}")
    n = int(n_images)
    if n < 2:
        raise ValueError(f"make_vindr needs at least 2 images, got {n}")
    out = Path(out)
    writer = DatasetWriter(out)
    writer.claim(VINDR_DIR)
    rng = np.random.default_rng([int(seed), 2])

    n_test = max(1, int(round(0.2 * n)))
    test_set = {int(i) for i in rng.permutation(n)[:n_test]}
    normal_set = {int(i) for i in rng.permutation(n)[: int(round(0.4 * n))]}
    names = list(_CLASS_WEIGHTS)
    weights = np.array([_CLASS_WEIGHTS[k] for k in names])
    weights /= weights.sum()

    train_rows, test_rows, labels_train, labels_test = [], [], [], []
    box_rows = Counter()
    lesions_per_class = Counter()
    stats = Counter()
    normal = 0
    for i in range(n):
        image_id = _image_id(seed, i)
        split = "test" if i in test_set else "train"
        # Everything about the image itself comes from its own generator, so the DICOMs
        # are the same whichever layout is written.
        irng = np.random.default_rng([int(seed), 3, i])
        if i in normal_set:
            planned = []
        else:
            k = int(irng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
            planned = [names[j] for j in irng.choice(len(names), size=k, replace=False, p=weights)]
        pixels, anat, placed = render.render_image(irng, size, planned, class_painters=render.VINDR_CLASS_PAINTERS)
        H, W = pixels.shape
        normal += not placed
        lesions_per_class.update(c for c, _ in placed)

        bits, photometric, rescale, with_window, age, sex, spacing, (low, high) = _dicom_params(irng, size)
        stored, (lo, hi) = encode_display(pixels, bits, photometric, low=low, high=high)
        slope, intercept = rescale if rescale else (1.0, 0.0)
        window = None
        if with_window:
            center = 0.5 * (lo + hi) * slope + intercept + irng.normal(0, 0.02 * (hi - lo))
            window = (round(center, 1), round((hi - lo) * slope * irng.uniform(1.0, 1.2), 1))
        writer.dicom(
            f"{VINDR_DIR}/{split}/{image_id}{VINDR_DICOM_SUFFIX}",
            stored,
            bits_stored=bits,
            photometric=photometric,
            uid_key=image_id,
            window=window,
            rescale=rescale,
            pixel_spacing=spacing,
            patient_id=image_id[:12],
            patient_age=age,
            patient_sex=sex,
            view_position="PA",
        )
        stats[photometric] += 1
        stats[f"bits_{bits}"] += 1

        if split == "train":
            readers = [_RADIOLOGISTS[j] for j in rng.choice(17, size=3, replace=False, p=_RAD_WEIGHTS / _RAD_WEIGHTS.sum())]
            for rad in readers:
                decimals = rng.random() < 0.5
                found = []
                for cls, box in placed:
                    if rng.random() < 0.1:
                        continue  # this reader missed the lesion
                    found.append((cls, _jitter(rng, box, W, H, 0.04, decimals)))
                rows = [(cls, _fmt_box(b, decimals)) for cls, b in found] or [(NO_FINDING, [""] * 4)]
                for cls, cells in rows:
                    box_rows[cls] += 1
                    if layout == "kaggle":
                        cid = VINDR_NO_FINDING_ID if cls == NO_FINDING else VINDR_KAGGLE_CLASSES.index(cls)
                        train_rows.append([image_id, cls, cid, rad] + cells)
                    else:
                        train_rows.append([image_id, rad, cls] + cells)
                labels_train.append([image_id, rad] + _image_label_cells(rng, {c for c, _ in found}))
        elif layout == "physionet":
            rows = [(cls, _fmt_box(_jitter(rng, box, W, H, 0.02, False), False)) for cls, box in placed]
            for cls, cells in rows or [(NO_FINDING, [""] * 4)]:
                box_rows[cls] += 1
                test_rows.append([image_id, "", cls] + cells)
            labels_test.append([image_id] + _image_label_cells(rng, {c for c, _ in placed}))

    if layout == "kaggle":
        writer.csv(f"{VINDR_DIR}/{VINDR_KAGGLE_ANNOTATIONS['train']}", VINDR_KAGGLE_COLUMNS, train_rows)
    else:
        for split, rows in (("train", train_rows), ("test", test_rows)):
            writer.csv(f"{VINDR_DIR}/{VINDR_PHYSIONET_ANNOTATIONS[split]}", VINDR_PHYSIONET_COLUMNS, rows)
        for split, rows in (("train", labels_train), ("test", labels_test)):
            head = VINDR_IMAGE_LABEL_KEYS[split] + VINDR_IMAGE_LABEL_COLUMNS
            writer.csv(f"{VINDR_DIR}/{VINDR_PHYSIONET_IMAGE_LABELS[split]}", head, rows)

    summary = {
        "format": "vindr",
        "layout": layout,
        "root": str(out),
        "images": n,
        "files_written": writer.files,
        "images_per_split": {"train": n - n_test, "test": n_test},
        "normal_images": normal,
        "lesions_per_class": dict(sorted(lesions_per_class.items())),
        "annotations_per_class": dict(sorted(box_rows.items())),
        "dicom": dict(sorted(stats.items())),
    }
    logger.info("synthetic VinDr (%s): %d images, %d files under %s", layout, n, writer.files, out)
    return summary
