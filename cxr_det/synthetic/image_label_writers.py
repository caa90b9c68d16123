"""Synthetic image-level classification data: VinDr-CXR image labels and folders of classes.

:func:`make_vindr_image_labels` writes a synthetic VinDr-CXR root (DICOMs and box tables by
:func:`cxr_det.synthetic.vindr_writer.make_vindr`, PhysioNet layout) and rewrites its
``annotations/image_labels_{train,test}.csv`` so that radiologists disagree often enough for
the reader rules to differ, and the test file can spell "Other disease" (the layout of
VinDr-CXR v1.0.0 on PhysioNet, see :mod:`cxr_det.formats.vindr_format`).
:func:`make_image_folder` writes a folder of classes in either layout read by
:mod:`cxr_det.data.datasets.image_folder` (the COVID-19 Radiography Database's flat
``<class>/{images,masks}/`` tree, or the pediatric pneumonia set's ``{train,val,test}/<class>/``).
Both are deterministic in their seed.

Learnability. VinDr: the DICOMs are :func:`~cxr_det.synthetic.vindr_writer.make_vindr`'s,
whose lesions are painted where their boxes are; each reader's local labels are the classes
they boxed (a reader misses a lesion 10% of the time), the global labels follow them
(Pneumonia from air-space classes, Lung tumor from Nodule/Mass, Tuberculosis from fibrosis;
COPD and Other diseases at random among abnormal images), and "No finding" is an image
without lesions. The disagreeing readers added here flip labels against the pixels, so
the ``majority`` rule gives labels that follow the images and ``any`` noisier ones.
Folders of classes: the class sets each image's brightness and the size of a bright disc.
"""
import csv
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from cxr_det.formats import NO_FINDING
from cxr_det.formats.vindr_format import (
    VINDR_DIR,
    VINDR_IMAGE_LABEL_COLUMNS,
    VINDR_IMAGE_LABEL_KEYS,
    VINDR_LOCAL_LABELS,
    VINDR_PHYSIONET_IMAGE_LABELS,
)
from cxr_det.synthetic.dataset_writer import DatasetWriter
from cxr_det.synthetic.dicom_writer import encode_display
from cxr_det.synthetic.vindr_writer import make_vindr

__all__ = ["COVID_CLASSES", "PNEUMONIA_CLASSES", "FOLDER_IMAGE_FORMATS", "make_vindr_image_labels", "make_image_folder"]

logger = logging.getLogger(__name__)

# The class folders of the COVID-19 Radiography Database and of the pediatric pneumonia set.
COVID_CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
PNEUMONIA_CLASSES = ("NORMAL", "PNEUMONIA")
_NO_FINDING_COLUMN = VINDR_IMAGE_LABEL_COLUMNS.index(NO_FINDING)
#: ``image_format`` values of :func:`make_image_folder` -> file suffix ("mixed" cycles png, jpeg, dicom).
FOLDER_IMAGE_FORMATS = {"png": ".png", "jpeg": ".jpeg", "dicom": ".dcm"}
_MIXED = ("png", "jpeg", "dicom")


def _read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _disagree(rng, cells):
    """One radiologist's row made to disagree: an abnormal reading becomes "No finding" only,
    a normal one gets a local label (and "No finding" 0)."""
    flipped = [0] * len(cells)
    if int(cells[_NO_FINDING_COLUMN]) == 0:
        flipped[_NO_FINDING_COLUMN] = 1
    else:
        flipped[int(rng.integers(len(VINDR_LOCAL_LABELS)))] = 1
    return flipped


def make_vindr_image_labels(out, n_images, seed, size=64, disagreement=0.4, test_other_spelling="Other disease") -> dict:
    """Write a synthetic VinDr-CXR root under ``out`` with image-level label files.

    ``n_images`` (>= 2) DICOMs of ``size`` pixels and the PhysioNet box tables come from
    :func:`make_vindr`; about 80% are training images with 3 radiologists each. In a
    fraction ``disagreement`` of training images one radiologist's row is replaced by a
    contradicting one (see :func:`_disagree`), so majority and any-positive combinations
    differ. ``test_other_spelling``: the test file's name of the "Other diseases" column
    (``"Other diseases"`` to keep the train file's spelling). Returns make_vindr's summary
    plus ``image_labels`` counts: images, rows, images with a disagreeing reader, and per
    label the training images positive by majority of readers (``train_positives_majority``)
    and the positive test images (``test_positives``).
    """
    if not 0.0 <= float(disagreement) <= 1.0:
        raise ValueError(f"disagreement must be in [0, 1], got {disagreement}")
    summary = make_vindr(out, n_images, seed, size=size, layout="physionet")
    rng = np.random.default_rng([int(seed), 12])
    writer = DatasetWriter(out)  # no claim: make_vindr's folder is written to, not emptied
    base = Path(out) / VINDR_DIR
    n_keys = len(VINDR_IMAGE_LABEL_KEYS["train"])
    header, rows = _read_rows(base / VINDR_PHYSIONET_IMAGE_LABELS["train"])
    by_image = {}
    for row in rows:
        by_image.setdefault(row[0], []).append(row)
    changed = 0
    for image_id in sorted(by_image):
        if rng.random() < float(disagreement):
            image_rows = by_image[image_id]
            k = int(rng.integers(len(image_rows)))
            cells = image_rows[k][n_keys:]
            image_rows[k] = image_rows[k][:n_keys] + _disagree(rng, cells)
            changed += 1
    train_rows = [row for image_id in sorted(by_image) for row in by_image[image_id]]
    writer.csv(f"{VINDR_DIR}/{VINDR_PHYSIONET_IMAGE_LABELS['train']}", header, train_rows)
    test_header, test_rows = _read_rows(base / VINDR_PHYSIONET_IMAGE_LABELS["test"])
    test_header = [test_other_spelling if c == "Other diseases" else c for c in test_header]
    writer.csv(f"{VINDR_DIR}/{VINDR_PHYSIONET_IMAGE_LABELS['test']}", test_header, test_rows)
    labels = VINDR_IMAGE_LABEL_COLUMNS
    majority = Counter()
    for image_id in sorted(by_image):
        votes = np.array([[int(c) for c in row[n_keys:]] for row in by_image[image_id]])
        majority.update(name for name, v in zip(labels, 2 * votes.sum(0) > len(votes)) if v)
    summary["image_labels"] = {
        "train_images": len(by_image),
        "train_rows": len(train_rows),
        "test_images": len(test_rows),
        "images_with_a_disagreeing_reader": changed,
        "test_other_diseases_column": test_other_spelling,
        "train_positives_majority": {name: majority[name] for name in labels},
        "test_positives": {name: sum(int(r[1 + k]) for r in test_rows) for k, name in enumerate(labels)},
    }
    logger.info("synthetic VinDr image labels: %d train images (%d with a disagreeing reader), %d test", len(by_image), changed, len(test_rows))
    return summary


def _png(writer, rel, pixels):
    """Write a uint8 image as PNG under the writer's root (DatasetWriter writes JPEG only)."""
    if not cv2.imwrite(str(writer.path(rel)), pixels):
        raise OSError(f"cv2 could not write {writer.root / rel}")
    writer.files += 1


def _write_image(writer, rel_stem, pixels, image_format):
    """Write a uint8 image as ``<rel_stem>.png``/``.jpeg``/``.dcm``; returns the path written (relative).

    DICOMs are 12-bit MONOCHROME2 DX files (:func:`cxr_det.synthetic.dicom_writer.write_dicom`)
    whose display window maps back to the same picture.
    """
    rel = rel_stem + FOLDER_IMAGE_FORMATS[image_format]
    if image_format == "png":
        _png(writer, rel, pixels)
    elif image_format == "jpeg":
        writer.jpg(rel, pixels)
    else:
        stored, (lo, hi) = encode_display(pixels.astype(np.float32) / 255.0, 12, low=0.0, high=1.0)
        writer.dicom(rel, stored, bits_stored=12, uid_key=rel, window=(0.5 * (lo + hi), hi - lo), view_position="PA")
    return rel


def _class_image(rng, label, n_classes, size):
    """A small uint8 image whose brightness and disc size depend on the class (learnable)."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.normal(60 + 120 * label / max(n_classes - 1, 1), 12, (size, size))
    radius = size * (0.15 + 0.25 * label / max(n_classes - 1, 1))
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2
    return np.clip(base + 50 * disc, 0, 255).astype(np.uint8)


def make_image_folder(out, name, n_per_class, seed, layout="split", classes=None, size=32, stray_files=False,
                      image_format=None) -> dict:
    """Write a folder of classes ``<out>/<name>`` of small grayscale images.

    ``layout="split"``: ``{train,val,test}/<class>/<class>-<i>.<ext>`` with ``n_per_class``
    images per class in each split (default classes :data:`PNEUMONIA_CLASSES`, the pediatric
    pneumonia tree). ``layout="flat"``: ``<class>/images/<class>-<i>.<ext>`` and a
    same-named PNG lung mask in ``<class>/masks/`` (default classes :data:`COVID_CLASSES`,
    the COVID-19 Radiography Database tree), plus a ``<class>.metadata.csv`` beside the
    class folders. ``image_format``: a key of :data:`FOLDER_IMAGE_FORMATS` (``png``,
    ``jpeg``, ``dicom``: 12-bit DICOM ``.dcm``), ``"mixed"`` (image ``i`` is png, jpeg,
    dicom for ``i % 3`` = 0, 1, 2) or None (as the real sets ship: ``jpeg`` for ``split``,
    ``png`` for ``flat``). ``stray_files``: also a ``.DS_Store`` and a ``Thumbs.db`` in
    the first class's image folder (read as counted skips). Each class has its own
    brightness and disc size (learnable). Deterministic in ``seed``.

    Returns:
        summary dict: ``format`` ("image_folder"), ``root``, ``name``, ``layout``,
        ``classes``, ``image_format``, ``images_per_folder`` (``"<split or all>/<class>"``
        -> count), ``images``, ``files_written``.

    Raises:
        ValueError: unknown ``layout`` or ``image_format``, ``n_per_class`` < 1.
        FileExistsError: ``<out>/<name>`` holds data the generator did not write.
    """
    if layout not in ("split", "flat"):
        raise ValueError(f"layout must be 'split' or 'flat', got {layout!r}")
    fmt = image_format or ("jpeg" if layout == "split" else "png")
    if fmt not in FOLDER_IMAGE_FORMATS and fmt != "mixed":
        raise ValueError(f"image_format must be one of {sorted(FOLDER_IMAGE_FORMATS) + ['mixed']} or None, got {image_format!r}")
    n = int(n_per_class)
    if n < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n}")
    classes = tuple(classes or (PNEUMONIA_CLASSES if layout == "split" else COVID_CLASSES))
    writer = DatasetWriter(out)
    writer.claim(name)
    rng = np.random.default_rng([int(seed), 13])
    counts = {}
    parents = ["train", "val", "test"] if layout == "split" else [""]
    for parent in parents:
        for label, class_name in enumerate(classes):
            folder = f"{name}/{parent + '/' if parent else ''}{class_name}"
            for i in range(n):
                pixels = _class_image(rng, label, len(classes), size)
                kind = _MIXED[i % len(_MIXED)] if fmt == "mixed" else fmt
                if layout == "split":
                    _write_image(writer, f"{folder}/{class_name}-{i}", pixels, kind)
                else:
                    _write_image(writer, f"{folder}/images/{class_name}-{i}", pixels, kind)
                    _png(writer, f"{folder}/masks/{class_name}-{i}.png", ((pixels > 128) * 255).astype(np.uint8))
            counts[f"{parent or 'all'}/{class_name}"] = n
    if layout == "flat":
        for class_name in classes:
            writer.csv(f"{name}/{class_name}.metadata.csv", ["FILE NAME", "FORMAT", "SIZE"],
                       [[f"{class_name}-{i}", (_MIXED[i % len(_MIXED)] if fmt == "mixed" else fmt).upper(), f"{size}*{size}"]
                        for i in range(n)])
    if stray_files:
        first = f"{name}/{'train/' if layout == 'split' else ''}{classes[0]}{'' if layout == 'split' else '/images'}"
        writer.text(f"{first}/.DS_Store", "stray\n")
        writer.text(f"{first}/Thumbs.db", "stray\n")
    return {"format": "image_folder", "root": str(out), "name": name, "layout": layout, "classes": list(classes),
            "image_format": fmt, "images_per_folder": counts, "images": sum(counts.values()), "files_written": writer.files}
