"""Set-up of an image-level classification run: what the training split decides, written
into the config before the model is built.

A classifier's task, number of labels and imbalance weights come from ``DATASETS.TRAIN``
when training starts (as the clinical statistics do) and are stored in
``OUTPUT_DIR/config.yaml`` and the checkpoints' run record, so evaluation and
``tools/predict.py`` rebuild the same model without the training data:

- ``CXR.CLASSIFIER.TASK`` and ``NUM_CLASSES`` from the training dataset's metadata
  (``task``, ``thing_classes``);
- ``CXR.CLASSIFIER.POS_WEIGHT_VALUES`` with ``POS_WEIGHT: prevalence`` (multi-label):
  negatives / positives of each label over the images where it counts (``label_weights`` > 0),
  the ``pos_weight`` of ``torch.nn.BCEWithLogitsLoss``;
- ``CXR.CLASSIFIER.CLASS_WEIGHT_VALUES`` with ``CLASS_WEIGHT: balanced`` (single-label):
  scikit-learn's ``compute_class_weight("balanced")``, ``N / (C * n_c)``.
"""
import logging

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY

from cxr_det.config import CLASSIFICATION_TASKS

__all__ = [
    "CLASSIFIER_META_ARCHITECTURES",
    "is_classifier",
    "classification_records_have_labels",
    "label_counts",
    "prevalence_pos_weight",
    "balanced_class_weight",
    "prepare_classification",
]

logger = logging.getLogger(__name__)

# META_ARCHITECTURE names that are image-level classifiers (cxr_det.modeling.classifier).
CLASSIFIER_META_ARCHITECTURES = ("ClinicalImageClassifier",)


def is_classifier(cfg) -> bool:
    """Whether ``cfg.MODEL.META_ARCHITECTURE`` is an image-level classifier (or a subclass)."""
    name = cfg.MODEL.META_ARCHITECTURE
    if name in CLASSIFIER_META_ARCHITECTURES:
        return True
    if name not in META_ARCH_REGISTRY:
        return False
    arch = META_ARCH_REGISTRY.get(name)
    return any(
        base.__name__ in CLASSIFIER_META_ARCHITECTURES for base in getattr(arch, "__mro__", ())
    )


def classification_records_have_labels(records) -> bool:
    """Whether any dataset dict carries a classification target (``labels`` or ``label``)."""
    return any("labels" in r or "label" in r for r in records)


def label_counts(records, num_classes: int, task: str):
    """Per-label counts over dataset dicts.

    Returns:
        multi_label: ``(positives, negatives, ignored)``, int arrays of shape (C,), counting
        each image once per label (``label_weights`` 0 = ignored); single_label:
        ``(images per class,)``, an int array of shape (C,).

    Raises:
        ValueError: a record whose targets do not fit ``num_classes`` / ``task`` (names it).
    """
    if task == "single_label":
        counts = np.zeros(num_classes, dtype=np.int64)
        for r in records:
            label = r.get("label")
            if label is None:
                continue
            if not 0 <= int(label) < num_classes:
                raise ValueError(f"{r.get('file_name', r.get('image_id'))}: label {label} outside [0, {num_classes})")
            counts[int(label)] += 1
        return (counts,)
    pos = np.zeros(num_classes, dtype=np.int64)
    neg = np.zeros(num_classes, dtype=np.int64)
    ign = np.zeros(num_classes, dtype=np.int64)
    for r in records:
        if "labels" not in r:
            continue
        labels = np.asarray(r["labels"], dtype=np.float64)
        weights = np.asarray(r.get("label_weights", np.ones_like(labels)), dtype=np.float64)
        if labels.shape != (num_classes,) or weights.shape != (num_classes,):
            raise ValueError(
                f"{r.get('file_name', r.get('image_id'))}: labels / label_weights of lengths "
                f"{labels.size} / {weights.size}, expected {num_classes}"
            )
        counted = weights > 0
        pos += counted & (labels > 0.5)
        neg += counted & (labels <= 0.5)
        ign += ~counted
    return pos, neg, ign


def prevalence_pos_weight(positives, negatives, names=()):
    """``negatives / positives`` per label: BCE's ``pos_weight`` that balances each label.

    Raises:
        ValueError: a label without positive images (its weight would be infinite).
    """
    positives = np.asarray(positives, dtype=np.float64)
    missing = [str(names[i]) if i < len(names) else str(i) for i in np.flatnonzero(positives == 0)]
    if missing:
        raise ValueError(
            f"CXR.CLASSIFIER.POS_WEIGHT prevalence: label(s) {missing} have no positive image in DATASETS.TRAIN; "
            "drop them from the label set or give POS_WEIGHT_VALUES by hand"
        )
    return (np.asarray(negatives, dtype=np.float64) / positives).tolist()


def balanced_class_weight(counts, names=()):
    """scikit-learn's ``compute_class_weight("balanced")`` from per-class image counts:
    ``N / (C * n_c)``.

    Raises:
        ValueError: a class without images.
    """
    counts = np.asarray(counts, dtype=np.int64)
    empty = [str(names[i]) if i < len(names) else str(i) for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"CXR.CLASSIFIER.CLASS_WEIGHT balanced: class(es) {empty} have no image in DATASETS.TRAIN")
    y = np.repeat(np.arange(len(counts)), counts)
    return compute_class_weight("balanced", classes=np.arange(len(counts)), y=y).tolist()


def _metadata_task(name):
    meta = MetadataCatalog.get(name)
    return meta.get("task", None), meta.get("thing_classes", None)


def prepare_classification(cfg, training: bool):
    """Fill ``CXR.CLASSIFIER`` from the datasets of the (unfrozen) config; see the module
    docstring. ``training`` False (evaluation) only checks that the test datasets agree with
    the model's task and size.

    Raises:
        ValueError: no task or classes known; a dataset whose task or class count differs
            from the model's (naming it and the keys to set); an unknown task.
    """
    node = cfg.CXR.CLASSIFIER
    names = list(cfg.DATASETS.TRAIN) if training else []
    source = (names or list(cfg.DATASETS.TEST) or [None])[0]
    task, classes = _metadata_task(source) if source else (None, None)
    if not node.TASK:
        if not task:
            raise ValueError(
                "CXR.CLASSIFIER.TASK is empty and the dataset metadata gives no task: set it to "
                f"{' or '.join(CLASSIFICATION_TASKS)}"
            )
        node.TASK = str(task)
    if node.TASK not in CLASSIFICATION_TASKS:
        raise ValueError(f"CXR.CLASSIFIER.TASK must be one of {CLASSIFICATION_TASKS}, got {node.TASK!r}")
    if not node.NUM_CLASSES:
        if not classes:
            raise ValueError("CXR.CLASSIFIER.NUM_CLASSES is 0 and the dataset metadata gives no thing_classes: set it")
        node.NUM_CLASSES = len(classes)
    for name in list(cfg.DATASETS.TRAIN if training else ()) + list(cfg.DATASETS.TEST):
        their_task, their_classes = _metadata_task(name)
        if their_task and their_task != node.TASK:
            raise ValueError(f"dataset {name} is a {their_task} dataset but CXR.CLASSIFIER.TASK is {node.TASK}")
        if their_classes is not None and len(their_classes) != node.NUM_CLASSES:
            raise ValueError(
                f"CXR.CLASSIFIER.NUM_CLASSES is {node.NUM_CLASSES} but dataset {name} has {len(their_classes)} "
                f"classes {list(their_classes)}"
            )
    if not training:
        return cfg
    wants_pos = node.POS_WEIGHT == "prevalence" and not node.POS_WEIGHT_VALUES
    wants_class = node.CLASS_WEIGHT == "balanced" and not node.CLASS_WEIGHT_VALUES
    if node.POS_WEIGHT not in ("none", "prevalence"):
        raise ValueError(f"CXR.CLASSIFIER.POS_WEIGHT must be 'none' or 'prevalence', got {node.POS_WEIGHT!r}")
    if node.CLASS_WEIGHT not in ("none", "balanced"):
        raise ValueError(f"CXR.CLASSIFIER.CLASS_WEIGHT must be 'none' or 'balanced', got {node.CLASS_WEIGHT!r}")
    if node.POS_WEIGHT == "prevalence" and node.TASK != "multi_label":
        raise ValueError("CXR.CLASSIFIER.POS_WEIGHT prevalence is for multi_label tasks (single_label: CLASS_WEIGHT)")
    if node.CLASS_WEIGHT == "balanced" and node.TASK != "single_label":
        raise ValueError("CXR.CLASSIFIER.CLASS_WEIGHT balanced is for single_label tasks (multi_label: POS_WEIGHT)")
    if not (wants_pos or wants_class):
        return cfg
    records = [r for name in names for r in DatasetCatalog.get(name)]
    label_names = list(classes or ())
    counts = label_counts(records, node.NUM_CLASSES, node.TASK)
    if wants_pos:
        node.POS_WEIGHT_VALUES = [round(w, 6) for w in prevalence_pos_weight(counts[0], counts[1], label_names)]
        logger.info("CXR.CLASSIFIER.POS_WEIGHT_VALUES from %s: %s", names, dict(zip(label_names, node.POS_WEIGHT_VALUES)))
    if wants_class:
        node.CLASS_WEIGHT_VALUES = [round(w, 6) for w in balanced_class_weight(counts[0], label_names)]
        logger.info("CXR.CLASSIFIER.CLASS_WEIGHT_VALUES from %s: %s", names, dict(zip(label_names, node.CLASS_WEIGHT_VALUES)))
    return cfg
