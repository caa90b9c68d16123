"""What a classification run takes from its training split: task, classes, imbalance weights."""
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.engine.classification_setup import (
    balanced_class_weight,
    is_classifier,
    label_counts,
    prepare_classification,
    prevalence_pos_weight,
)

MULTI = [
    {"image_id": 0, "labels": [1.0, 0.0], "label_weights": [1.0, 1.0]},
    {"image_id": 1, "labels": [0.0, 1.0], "label_weights": [0.0, 1.0]},
    {"image_id": 2, "labels": [0.0, 0.0], "label_weights": [1.0, 1.0]},
    {"image_id": 3, "labels": [1.0, 0.0], "label_weights": [1.0, 1.0]},
]
SINGLE = [{"image_id": i, "label": c} for i, c in enumerate([0, 0, 0, 1, 2, 2])]


@pytest.fixture
def datasets():
    names = {"_cls_multi": (MULTI, "multi_label", ["A", "B"]), "_cls_single": (SINGLE, "single_label", ["x", "y", "z"])}
    for name, (records, task, classes) in names.items():
        DatasetCatalog.register(name, lambda records=records: [dict(r) for r in records])
        MetadataCatalog.get(name).set(thing_classes=classes, task=task, evaluator_type="cxr_classification")
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _cfg(train, test=()):
    cfg = get_cxr_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ClinicalImageClassifier"
    cfg.DATASETS.TRAIN = (train,)
    cfg.DATASETS.TEST = tuple(test)
    return cfg


def test_counts_leave_out_ignored_labels():
    pos, neg, ign = label_counts(MULTI, 2, "multi_label")
    assert pos.tolist() == [2, 1] and neg.tolist() == [1, 3] and ign.tolist() == [1, 0]
    assert label_counts(SINGLE, 3, "single_label")[0].tolist() == [3, 1, 2]


def test_pos_weight_is_negatives_over_positives():
    assert prevalence_pos_weight([2, 1], [1, 3]) == [0.5, 3.0]
    with pytest.raises(ValueError, match=r"\['B'\] have no positive"):
        prevalence_pos_weight([2, 0], [1, 3], ["A", "B"])


def test_balanced_class_weight_equals_scikit_learn():
    y = np.array([r["label"] for r in SINGLE])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert np.allclose(balanced_class_weight([3, 1, 2]), expected)
    with pytest.raises(ValueError, match=r"\['y'\] have no image"):
        balanced_class_weight([3, 0, 2], ["x", "y", "z"])


def test_training_fills_task_classes_and_weights(datasets):
    cfg = _cfg("_cls_multi")
    cfg.CXR.CLASSIFIER.POS_WEIGHT = "prevalence"
    assert is_classifier(cfg)
    prepare_classification(cfg, training=True)
    assert cfg.CXR.CLASSIFIER.TASK == "multi_label" and cfg.CXR.CLASSIFIER.NUM_CLASSES == 2
    assert cfg.CXR.CLASSIFIER.POS_WEIGHT_VALUES == [0.5, 3.0]

    cfg = _cfg("_cls_single")
    cfg.CXR.CLASSIFIER.CLASS_WEIGHT = "balanced"
    prepare_classification(cfg, training=True)
    assert cfg.CXR.CLASSIFIER.TASK == "single_label" and cfg.CXR.CLASSIFIER.NUM_CLASSES == 3
    assert np.allclose(cfg.CXR.CLASSIFIER.CLASS_WEIGHT_VALUES, [6 / 9, 2.0, 1.0])


def test_mismatches_are_errors(datasets):
    with pytest.raises(ValueError, match="_cls_single is a single_label dataset"):
        prepare_classification(_cfg("_cls_multi", ["_cls_single"]), training=True)
    cfg = _cfg("_cls_multi")
    cfg.CXR.CLASSIFIER.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="NUM_CLASSES is 3 but dataset _cls_multi has 2"):
        prepare_classification(cfg, training=True)
    cfg = _cfg("_cls_multi")
    cfg.CXR.CLASSIFIER.CLASS_WEIGHT = "balanced"
    with pytest.raises(ValueError, match="balanced is for single_label"):
        prepare_classification(cfg, training=True)


def test_given_values_are_kept(datasets):
    cfg = _cfg("_cls_multi")
    cfg.CXR.CLASSIFIER.POS_WEIGHT = "prevalence"
    cfg.CXR.CLASSIFIER.POS_WEIGHT_VALUES = [1.5, 2.5]
    prepare_classification(cfg, training=True)
    assert cfg.CXR.CLASSIFIER.POS_WEIGHT_VALUES == [1.5, 2.5]


def test_detectors_are_not_classifiers():
    assert not is_classifier(get_cxr_cfg("configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"))
