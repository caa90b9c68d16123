"""Image-level classification: the metrics, the decision thresholds and the detectron2 evaluator.

Two tasks (``MetadataCatalog`` ``task``, see :data:`cxr_det.config.CLASSIFICATION_TASKS`):

- **multi-label** (CheXpert, MIMIC-CXR-JPG, VinDr image labels): scores (N, C) are
  independent probabilities, targets (N, C) are 0/1 and label weights (N, C) say which
  (image, label) pairs count: a weight of 0 (an uncertain CheXpert cell under the
  ``ignore`` policy) leaves that pair out of that label's metrics and out of the micro
  pool, nothing else. A label is called positive when its score is >= its threshold.
- **single-label** (a folder of classes; binary = 2 classes, class 1 the positive one):
  scores (N, C) are softmax probabilities and labels (N,) class indices. The decision is
  the arg-max class, or for C == 2 "class 1 when its score >= the threshold".

Every metric is the one scikit-learn defines, computed by scikit-learn where it has it
(the reference implementation; checked in ``tests/evaluation/test_classification_eval.py``):
ROC AUC (``roc_auc_score``), average precision (``average_precision_score``, step-wise),
the threshold curves (``roc_curve``, ``precision_recall_curve``), the confusion matrix
(``confusion_matrix``, rows = truth, columns = decision), accuracy (``accuracy_score``) and
balanced accuracy (``balanced_accuracy_score``). Sensitivity, specificity, precision, F1
and F2 come from the counts at the threshold as ``precision_recall_fscore_support`` with
``zero_division=0`` defines them; a label without positives has no sensitivity or F-score
(NaN) and one without negatives no specificity (NaN). A label whose included images are
all of one class has no AUC or AP: NaN, with a warning.

Units: AUC, AP, sensitivity, specificity, precision, F1, F2, false-positive and
false-negative rates, accuracy and balanced accuracy are percentages (0..100), like
detectron2's AP; thresholds are scores in [0, 1]; counts are numbers of images. Macro
means ("mAUC", "mAP", "macro_<metric>") average the labels where the value is defined;
micro values ("microAUC", "micro_<metric>") pool every included (image, label) pair.

Thresholds (``TEST.CXR_CLS_EVAL.THRESHOLD_RULE``): ``"f2"`` maximises F2 over the score
values (scikit-learn's ``precision_recall_curve``), ``"youden"`` maximises TPR - FPR over
``roc_curve``'s thresholds (Youden, Cancer 3, 1950), ``"fixed"`` is ``FIXED_THRESHOLD``;
on a tie the highest threshold wins. They are chosen on one dataset (the validation split,
``THRESHOLD_DATASET``) and applied unchanged to the others (:class:`ClassificationEvaluator`).

Bootstrap 95% confidence intervals of the per-label AUC and of mAUC resample images
(percentile intervals, :mod:`cxr_det.evaluation.bootstrap`).
"""
import copy
import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tabulate import tabulate
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from cxr_det.utils.atomic import atomic_write_json

from .bootstrap import percentile_interval, resample_indices, resample_weights, weighted_auc
from .classification_plots import write_classification_plots
from .core import gather_predictions
from .report import json_safe

__all__ = [
    "MULTI_LABEL",
    "SINGLE_LABEL",
    "THRESHOLD_RULES",
    "PREDICTIONS_FILE",
    "THRESHOLDS_FILE",
    "METRICS_FILE",
    "ClassificationMetrics",
    "ClassificationInputs",
    "ranking_metrics",
    "counts_at_threshold",
    "rates_from_counts",
    "choose_threshold",
    "choose_thresholds",
    "multi_label_metrics",
    "single_label_decisions",
    "single_label_metrics",
    "bootstrap_auc",
    "classification_inputs",
    "evaluate_classification",
    "format_classification_tables",
    "read_thresholds",
    "write_thresholds",
    "read_classification_predictions",
    "classification_task",
    "ClassificationEvaluator",
]

logger = logging.getLogger(__name__)

MULTI_LABEL = "multi_label"
SINGLE_LABEL = "single_label"
THRESHOLD_RULES = ("f2", "youden", "fixed")
# The metrics at a threshold, per label and as macro / micro means (percent).
RATES = ("sensitivity", "specificity", "precision", "F1", "F2")
PREDICTIONS_FILE = "classification_predictions.json"
THRESHOLDS_FILE = "thresholds.json"
METRICS_FILE = "metrics.json"
# TEST.CXR_CLS_EVAL's defaults (cxr_det.config.add_classification_config), used without a cfg.
_EVAL_DEFAULTS = dict(THRESHOLD_RULE="f2", FIXED_THRESHOLD=0.5, THRESHOLD_DATASET="", BOOTSTRAP=0,
                      BOOTSTRAP_SEED=0, PLOTS=True)
_NAN = float("nan")


@dataclass
class ClassificationMetrics:
    """What :func:`multi_label_metrics` / :func:`single_label_metrics` compute.

    results: flat ``{name: float}`` (percent, thresholds as scores; see the module doc).
    counts: ``{label: {"TP", "FP", "TN", "FN", "positives", "negatives", "ignored"}}``
        (ints; one-vs-rest for single-label), plus ``"micro"`` for multi-label.
    confusion_matrix: (C, C) int counts, rows = truth, columns = decision (single-label),
        else None.
    """

    results: "OrderedDict[str, float]"
    counts: "OrderedDict[str, Dict[str, int]]"
    confusion_matrix: Optional[np.ndarray] = None


def _as_bool_targets(targets: np.ndarray, where: str) -> np.ndarray:
    t = np.asarray(targets, dtype=np.float64)
    bad = ~np.isin(t, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{where}: targets must be 0 or 1, got {t[bad][:5].tolist()}")
    return t > 0.5


def ranking_metrics(scores: np.ndarray, targets: np.ndarray, name: str = "label"):
    """``(AUC, AP)`` of one label in [0, 1]: scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` of ``scores`` (n,) against the 0/1 ``targets`` (n,).

    Both are NaN, with a warning naming the label, when the targets hold one class only
    (or none): neither is defined then.
    """
    y = np.asarray(targets).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        kind = "no images" if len(y) == 0 else ("only positive images" if pos else "only negative images")
        logger.warning(f"{name!r} has {kind} among the {len(y)} it is scored on: AUC and AP are undefined (NaN)")
        return _NAN, _NAN
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def counts_at_threshold(scores: np.ndarray, targets: np.ndarray, threshold: float):
    """``(TP, FP, TN, FN)`` (ints) of the decision "positive when score >= threshold"."""
    y = np.asarray(targets).astype(bool)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    return (int((called & y).sum()), int((called & ~y).sum()), int((~called & ~y).sum()),
            int((~called & y).sum()))


def _fbeta(tp: int, fp: int, fn: int, beta: float) -> float:
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp) if tp + fn else _NAN


def rates_from_counts(tp: int, fp: int, tn: int, fn: int) -> "OrderedDict[str, float]":
    """Sensitivity (recall), specificity, precision, F1, F2, and the false-positive and
    false-negative rates ``FPR`` = FP / negatives, ``FNR`` = FN / positives, in [0, 1].

    scikit-learn's ``precision_recall_fscore_support(zero_division=0)`` definitions:
    precision is 0 when nothing is called positive (NaN when there is no positive either);
    sensitivity, F1, F2 and FNR are NaN without positives, specificity and FPR without
    negatives.
    """
    pos, neg, called = tp + fn, fp + tn, tp + fp
    out = OrderedDict()
    out["sensitivity"] = tp / pos if pos else _NAN
    out["specificity"] = tn / neg if neg else _NAN
    out["precision"] = tp / called if called else (0.0 if pos else _NAN)
    out["F1"] = _fbeta(tp, fp, fn, 1.0)
    out["F2"] = _fbeta(tp, fp, fn, 2.0)
    out["FPR"] = fp / neg if neg else _NAN
    out["FNR"] = fn / pos if pos else _NAN
    return out


def choose_threshold(scores: np.ndarray, targets: np.ndarray, rule: str = "f2", fixed: float = 0.5,
                     name: str = "label") -> float:
    """The decision threshold of one label by ``rule`` (one of :data:`THRESHOLD_RULES`).

    ``"f2"``: the score value maximising F2 of "score >= threshold" (from scikit-learn's
    ``precision_recall_curve``); ``"youden"``: the ``roc_curve`` threshold maximising
    TPR - FPR; ``"fixed"``: ``fixed``. On a tie the highest threshold wins. Where the rule
    is undefined (no positive image for "f2"; one class only for "youden") the result is
    ``fixed``, with a warning naming the label.

    Raises:
        ValueError: an unknown rule.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; valid: {list(THRESHOLD_RULES)} "
                         f"(TEST.CXR_CLS_EVAL.THRESHOLD_RULE)")
    if rule == "fixed":
        return float(fixed)
    y = np.asarray(targets).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos = int(y.sum())
    if pos == 0 or (rule == "youden" and pos == len(y)):
        logger.warning(f"{name!r}: the {rule!r} threshold needs positive{' and negative' if rule == 'youden' else ''} "
                       f"images ({pos} positive of {len(y)}); using the fixed threshold {fixed}")
        return float(fixed)
    if rule == "f2":
        precision, recall, thresholds = precision_recall_curve(y, s)
        p, r = precision[:-1], recall[:-1]
        denom = 4 * p + r
        f2 = np.where(denom > 0, 5 * p * r / np.where(denom > 0, denom, 1.0), 0.0)
        best = len(f2) - 1 - int(np.argmax(f2[::-1]))  # thresholds increase: the highest of the maxima
        return float(thresholds[best])
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = (tpr - fpr)[1:]  # thresholds[0] is +inf: nothing called positive
    return float(thresholds[1:][int(np.argmax(j))])  # thresholds decrease: the highest of the maxima


def choose_thresholds(inputs: "ClassificationInputs", rule: str = "f2",
                      fixed: float = 0.5) -> "OrderedDict[str, float]":
    """Thresholds chosen on ``inputs`` by :func:`choose_threshold`: ``{label: threshold}``
    for multi-label (each label on its included images), ``{class 1: threshold}`` on the
    class-1 score for binary single-label, and ``{}`` for more classes (arg-max decides)."""
    out = OrderedDict()
    if inputs.task == MULTI_LABEL:
        for c, name in enumerate(inputs.class_names):
            m = inputs.weights[:, c] > 0
            out[name] = choose_threshold(inputs.scores[m, c], inputs.targets[m, c], rule, fixed, name)
    elif len(inputs.class_names) == 2:
        name = inputs.class_names[1]
        out[name] = choose_threshold(inputs.scores[:, 1], inputs.labels == 1, rule, fixed, name)
    return out


def _macro(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else _NAN


def _pct(value: float) -> float:
    return float(value) * 100.0


def multi_label_metrics(scores: np.ndarray, targets: np.ndarray, weights: Optional[np.ndarray],
                        class_names: Sequence[str], thresholds: Sequence[float]) -> ClassificationMetrics:
    """Per-label, macro and micro metrics of a multi-label classifier.

    Args:
        scores: (N, C) probabilities (any real scores work for AUC/AP).
        targets: (N, C) 0/1 ground truth.
        weights: (N, C) label weights; pairs with weight 0 are left out of that label and of
            the micro pool (other weights only mark inclusion). None = all included.
        class_names: the C label names.
        thresholds: C decision thresholds ("positive when score >= threshold").

    Returns:
        :class:`ClassificationMetrics` with results ``mAUC``, ``mAP``, ``microAUC``,
        ``microAP``, ``macro_<rate>``, ``micro_<rate>`` (rate in sensitivity, specificity,
        precision, F1, F2; micro from the counts pooled over labels), then per label
        ``<metric>/<label>`` for AUC, AP, the rates and ``threshold``. Percent, see the
        module doc.

    Raises:
        ValueError: shapes that disagree, or targets other than 0/1 on an included pair.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, c = scores.shape if scores.ndim == 2 else (None, None)
    names = list(class_names)
    if scores.ndim != 2 or c != len(names):
        raise ValueError(f"scores must be (N, {len(names)}) for labels {names}, got {scores.shape}")
    weights = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if targets.shape != scores.shape or weights.shape != scores.shape or thresholds.shape != (c,):
        raise ValueError(f"targets {targets.shape}, weights {weights.shape} must match scores {scores.shape}, "
                         f"and thresholds {thresholds.shape} be ({c},)")
    mask = weights > 0
    y = np.zeros(scores.shape, dtype=bool)
    y[mask] = _as_bool_targets(targets[mask], "multi-label targets")

    per_label, counts = OrderedDict(), OrderedDict()
    pooled = np.zeros(4, dtype=np.int64)
    for k, name in enumerate(names):
        m = mask[:, k]
        s, t = scores[m, k], y[m, k]
        auc, ap = ranking_metrics(s, t, name)
        tp, fp, tn, fn = counts_at_threshold(s, t, thresholds[k])
        pooled += (tp, fp, tn, fn)
        row = OrderedDict(AUC=auc, AP=ap)
        row.update((r, v) for r, v in rates_from_counts(tp, fp, tn, fn).items() if r in RATES)
        per_label[name] = row
        counts[name] = dict(TP=tp, FP=fp, TN=tn, FN=fn, positives=int(t.sum()), negatives=int((~t).sum()),
                            ignored=int((~m).sum()))
    counts["micro"] = dict(zip(("TP", "FP", "TN", "FN"), map(int, pooled)))

    results = OrderedDict()
    results["mAUC"] = _pct(_macro([r["AUC"] for r in per_label.values()]))
    results["mAP"] = _pct(_macro([r["AP"] for r in per_label.values()]))
    micro_auc, micro_ap = ranking_metrics(scores[mask], y[mask], "micro (all labels pooled)")
    results["microAUC"], results["microAP"] = _pct(micro_auc), _pct(micro_ap)
    for rate in RATES:
        results[f"macro_{rate}"] = _pct(_macro([r[rate] for r in per_label.values()]))
    micro_rates = rates_from_counts(*map(int, pooled))
    for rate in RATES:
        results[f"micro_{rate}"] = _pct(micro_rates[rate])
    for k, (name, row) in enumerate(per_label.items()):
        for metric, value in row.items():
            results[f"{metric}/{name}"] = _pct(value)
        results[f"threshold/{name}"] = float(thresholds[k])
    return ClassificationMetrics(results, counts, None)


def single_label_decisions(scores: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
    """(N,) decided classes: arg-max of ``scores`` (N, C), or for C == 2 with a
    ``threshold`` class 1 where its score is >= the threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 2 and threshold is not None:
        return (scores[:, 1] >= threshold).astype(np.int64)
    return np.argmax(scores, axis=1).astype(np.int64)


def single_label_metrics(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                         threshold: Optional[float] = None) -> ClassificationMetrics:
    """Accuracy, balanced accuracy, the confusion matrix and per-class one-vs-rest metrics
    of a single-label classifier.

    Args:
        scores: (N, C) class probabilities, C >= 2.
        labels: (N,) true class indices in [0, C).
        class_names: the C class names.
        threshold: binary only (C == 2): class 1 is decided when its score >= threshold
            (its AUC / AP are those of the class-1 score); None = arg-max. Ignored for C > 2.

    Returns:
        :class:`ClassificationMetrics`: results ``accuracy``, ``balanced_accuracy`` (mean
        per-class sensitivity, scikit-learn's ``balanced_accuracy_score``), ``mAUC`` and
        ``mAP`` (macro one-vs-rest, over classes present), ``macro_<rate>``, then per class
        ``<metric>/<class>`` for AUC, AP (one-vs-rest on that class's score), sensitivity
        (the per-class accuracy: correct / images of the class), specificity, precision, F1,
        F2, ``FPR`` (images of other classes decided as this one / images of other classes)
        and ``FNR`` (images of this class decided otherwise / images of this class), and
        for binary ``threshold/<class 1>``. The confusion matrix is scikit-learn's
        ``confusion_matrix`` (rows = truth).

    Raises:
        ValueError: fewer than 2 classes, shapes that disagree, labels outside [0, C).
    """
    scores = np.asarray(scores, dtype=np.float64)
    names = list(class_names)
    labels = np.asarray(labels).reshape(-1)
    if len(names) < 2 or scores.ndim != 2 or scores.shape != (len(labels), len(names)):
        raise ValueError(f"single-label: scores {scores.shape} must be (N, C) with N = {len(labels)} labels and "
                         f"C = {len(names)} >= 2 classes {names}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(names) or not np.all(labels == np.round(labels))):
        raise ValueError(f"single-label: labels must be class indices in [0, {len(names)}), "
                         f"got {sorted(set(labels.tolist()))[:10]}")
    labels = labels.astype(np.int64)
    decisions = single_label_decisions(scores, threshold)
    cm = confusion_matrix(labels, decisions, labels=list(range(len(names))))
    n = int(cm.sum())
    per_class, counts = OrderedDict(), OrderedDict()
    for k, name in enumerate(names):
        tp = int(cm[k, k])
        fn = int(cm[k].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        tn = n - tp - fn - fp
        auc, ap = ranking_metrics(scores[:, k], labels == k, name)
        row = OrderedDict(AUC=auc, AP=ap)
        row.update(rates_from_counts(tp, fp, tn, fn))
        per_class[name] = row
        counts[name] = dict(TP=tp, FP=fp, TN=tn, FN=fn, positives=tp + fn, negatives=fp + tn, ignored=0)

    results = OrderedDict()
    results["accuracy"] = _pct(accuracy_score(labels, decisions)) if n else _NAN
    present = np.unique(labels)
    # scikit-learn averages recall over the classes present in y_true.
    results["balanced_accuracy"] = _pct(balanced_accuracy_score(labels, decisions)) if present.size > 1 else _NAN
    results["mAUC"] = _pct(_macro([r["AUC"] for r in per_class.values()]))
    results["mAP"] = _pct(_macro([r["AP"] for r in per_class.values()]))
    for rate in RATES:
        results[f"macro_{rate}"] = _pct(_macro([r[rate] for r in per_class.values()]))
    for name, row in per_class.items():
        for metric, value in row.items():
            results[f"{metric}/{name}"] = _pct(value)
    if len(names) == 2 and threshold is not None:
        results[f"threshold/{names[1]}"] = float(threshold)
    return ClassificationMetrics(results, counts, cm)


def bootstrap_auc(scores: np.ndarray, targets: np.ndarray, weights: Optional[np.ndarray], class_names: Sequence[str],
                  num_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> "OrderedDict[str, float]":
    """Bootstrap percentile intervals of each label's ROC AUC and of their macro mean.

    Images are resampled with replacement (:func:`~cxr_det.evaluation.bootstrap.resample_indices`,
    seeded: the same ``seed`` gives the same intervals); each resample's AUC is the
    weighted Mann-Whitney statistic of :mod:`~cxr_det.evaluation.bootstrap` (equal to
    scikit-learn's ``roc_auc_score`` with the draw counts as ``sample_weight``), over the
    images included for the label. A resample where a label has one class only leaves that
    label out of that resample's macro mean.

    Args:
        scores: (N, C) scores; targets: (N, C) 0/1 (one-hot of the labels for single-label);
        weights: (N, C) label weights (0 = excluded) or None.

    Returns:
        ``mAUC_low``, ``mAUC_high``, ``AUC_low/<label>``, ``AUC_high/<label>`` in percent,
        and ``bootstrap_resamples``. Raises ValueError without images.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, c = scores.shape
    mask = np.ones(scores.shape, dtype=bool) if weights is None else np.asarray(weights) > 0
    y = np.asarray(targets, dtype=np.float64) > 0.5
    indices = resample_indices(n, int(num_resamples), seed)
    step = int(max(1, min(num_resamples, 4_000_000 // max(n, 1))))
    chunks = []
    for lo in tqdm(range(0, int(num_resamples), step), desc="bootstrap AUC", unit="chunk", disable=None, leave=False):
        w = resample_weights(indices[lo:lo + step], n)
        chunks.append(np.stack([weighted_auc(scores[mask[:, k], k], y[mask[:, k], k], w[:, mask[:, k]])
                                for k in range(c)], axis=1))
    per_label = np.concatenate(chunks) if chunks else np.zeros((0, c))
    valid = ~np.isnan(per_label)
    count = valid.sum(axis=1)
    macro = np.where(count > 0, np.where(valid, per_label, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    out = OrderedDict()
    out["mAUC_low"], out["mAUC_high"] = (100 * v for v in percentile_interval(macro, confidence))
    for k, name in enumerate(class_names):
        low, high = percentile_interval(per_label[:, k], confidence)
        out[f"AUC_low/{name}"], out[f"AUC_high/{name}"] = 100 * low, 100 * high
    out["bootstrap_resamples"] = float(num_resamples)
    return out


@dataclass
class ClassificationInputs:
    """Scores and ground truth of the evaluated images, aligned row by row.

    task: :data:`MULTI_LABEL` or :data:`SINGLE_LABEL`; class_names: the C names.
    image_ids, file_names: per image (N). scores: (N, C) float64.
    targets, weights: (N, C) float64 (multi-label; for single-label the one-hot labels
    and ones). labels: (N,) int64 (single-label; None for multi-label).
    checks: counts of what was left out (see :func:`classification_inputs`).
    """

    task: str
    class_names: List[str]
    image_ids: list
    file_names: list
    scores: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    labels: Optional[np.ndarray] = None
    checks: dict = field(default_factory=dict)


def classification_task(records: Sequence[dict], metadata_task: Optional[str] = None, where: str = "dataset") -> str:
    """The task: ``metadata_task`` when given, else :data:`MULTI_LABEL` when the first
    record has ``labels`` and :data:`SINGLE_LABEL` when it has ``label``.

    Raises:
        ValueError: an unknown task, or records with neither key.
    """
    if metadata_task:
        if metadata_task not in (MULTI_LABEL, SINGLE_LABEL):
            raise ValueError(f"{where}: unknown task {metadata_task!r}; valid: {[MULTI_LABEL, SINGLE_LABEL]}")
        return metadata_task
    first = records[0] if records else {}
    if "labels" in first:
        return MULTI_LABEL
    if "label" in first:
        return SINGLE_LABEL
    raise ValueError(f"{where}: no task in its metadata and its dicts have neither 'labels' (multi-label) nor "
                     f"'label' (single-label)")


def classification_inputs(records: Sequence[dict], predictions: Sequence[dict], class_names: Sequence[str], task: str,
                          where: str = "dataset") -> ClassificationInputs:
    """Align per-image predictions ``{"image_id", "scores", optional "file_name"}`` with the
    dataset dicts by ``image_id``, in the dataset's order.

    Ground truth: ``labels`` and ``label_weights`` (C values each; weights default to 1)
    for multi-label, ``label`` (an int in [0, C)) for single-label. Dataset images without a
    prediction, predictions for images not in the dataset and repeated predictions (the
    first is kept) are left out, counted in ``checks`` and warned about.

    Raises:
        ValueError: no image left, a prediction whose ``scores`` is not C finite values, or
            ground truth of the wrong length or value (naming ``where`` and the image).
    """
    names = list(class_names)
    c = len(names)
    by_id, repeated = OrderedDict(), 0
    for p in predictions:
        if p["image_id"] in by_id:
            repeated += 1
            continue
        by_id[p["image_id"]] = p
    rows, missing = [], 0
    for record in records:
        p = by_id.pop(record["image_id"], None)
        if p is None:
            missing += 1
        else:
            rows.append((record, p))
    checks = dict(images_without_predictions=missing, predictions_for_unknown_images=len(by_id),
                  repeated_predictions=repeated)
    for key, value in checks.items():
        if value:
            logger.warning(f"{where}: {value} {key.replace('_', ' ')} left out of the evaluation")
    if not rows:
        raise ValueError(f"{where}: no image has both ground truth and a prediction ({len(records)} dataset images, "
                         f"{len(predictions)} predictions)")
    scores = np.zeros((len(rows), c))
    targets = np.zeros((len(rows), c))
    weights = np.ones((len(rows), c))
    labels = np.zeros(len(rows), dtype=np.int64) if task == SINGLE_LABEL else None
    for i, (record, p) in enumerate(rows):
        image = f"{where}, image {record['image_id']!r}"
        s = np.asarray(p["scores"], dtype=np.float64).reshape(-1)
        if s.shape != (c,) or not np.all(np.isfinite(s)):
            raise ValueError(f"{image}: 'scores' must be {c} finite values (one per class of {names}), "
                             f"got {s.tolist()}")
        scores[i] = s
        if task == MULTI_LABEL:
            if "labels" not in record:
                raise ValueError(f"{image}: multi-label ground truth needs 'labels' (and 'label_weights')")
            t = np.asarray(record["labels"], dtype=np.float64).reshape(-1)
            w = np.asarray(record.get("label_weights", np.ones(c)), dtype=np.float64).reshape(-1)
            if t.shape != (c,) or w.shape != (c,):
                raise ValueError(f"{image}: 'labels' and 'label_weights' must hold {c} values, "
                                 f"got {t.size} and {w.size}")
            bad = (w > 0) & ~np.isin(t, (0.0, 1.0))
            if bad.any():
                raise ValueError(f"{image}: labels of {[names[k] for k in np.flatnonzero(bad)]} are "
                                 f"{t[bad].tolist()}; a counted label must be 0 or 1")
            targets[i], weights[i] = np.where(w > 0, t, 0.0), w
        else:
            if "label" not in record:
                raise ValueError(f"{image}: single-label ground truth needs 'label'")
            label = record["label"]
            if isinstance(label, bool) or int(label) != label or not 0 <= int(label) < c:
                raise ValueError(f"{image}: 'label' must be a class index in [0, {c}) ({names}), got {label!r}")
            labels[i] = int(label)
            targets[i, int(label)] = 1.0
    return ClassificationInputs(
        task=task, class_names=names, image_ids=[r["image_id"] for r, _ in rows],
        file_names=[p.get("file_name") or r.get("file_name") for r, p in rows], scores=scores, targets=targets,
        weights=weights, labels=labels, checks=checks,
    )


def _metrics(inputs: ClassificationInputs, thresholds: Dict[str, float]) -> ClassificationMetrics:
    if inputs.task == MULTI_LABEL:
        return multi_label_metrics(inputs.scores, inputs.targets, inputs.weights, inputs.class_names,
                                   [thresholds[n] for n in inputs.class_names])
    threshold = thresholds.get(inputs.class_names[1]) if len(inputs.class_names) == 2 else None
    return single_label_metrics(inputs.scores, inputs.labels, inputs.class_names, threshold)


def _prediction_rows(inputs: ClassificationInputs, thresholds: Dict[str, float]) -> List[dict]:
    rows = []
    if inputs.task == SINGLE_LABEL:
        threshold = thresholds.get(inputs.class_names[1]) if len(inputs.class_names) == 2 else None
        decisions = single_label_decisions(inputs.scores, threshold)
    else:
        cut = np.asarray([thresholds[n] for n in inputs.class_names])
        decisions = (inputs.scores >= cut[None, :]).astype(int)
    for i, image_id in enumerate(inputs.image_ids):
        row = OrderedDict(image_id=image_id, file_name=inputs.file_names[i], scores=inputs.scores[i].tolist())
        if inputs.task == SINGLE_LABEL:
            row["decision"] = int(decisions[i])
            row["decision_name"] = inputs.class_names[int(decisions[i])]
        else:
            row["decisions"] = decisions[i].tolist()
        rows.append(row)
    return rows


def write_thresholds(path: str, thresholds: Dict[str, float], class_names: Sequence[str], task: str, rule: str,
                     chosen_on: str) -> str:
    """Write ``thresholds.json``: ``{"task", "class_names", "rule", "chosen_on" (the dataset
    they were chosen on), "decision" ("threshold" or "argmax"), "thresholds": {label:
    threshold}}``; read back by :func:`read_thresholds`. Returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    content = OrderedDict(task=task, class_names=list(class_names), rule=rule, chosen_on=chosen_on,
                          decision="threshold" if thresholds else "argmax", thresholds=dict(thresholds))
    return atomic_write_json(path, json_safe(content), indent=2)


def read_thresholds(path: str, class_names: Sequence[str], task: str) -> "OrderedDict[str, float]":
    """``{label: threshold}`` from a ``thresholds.json`` of :func:`write_thresholds`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not such a file, or written for another task or other class names, or a
            threshold that is not a finite number (each naming the file).
    """
    with open(path) as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(content, dict) or "thresholds" not in content or "class_names" not in content:
        raise ValueError(f"{path}: not a thresholds.json (needs 'class_names' and 'thresholds')")
    if list(content["class_names"]) != list(class_names) or content.get("task", task) != task:
        raise ValueError(f"{path}: thresholds of a {content.get('task')} task on {content['class_names']}, but this "
                         f"dataset is {task} on {list(class_names)}")
    wanted = list(class_names) if task == MULTI_LABEL else (list(class_names)[1:] if len(class_names) == 2 else [])
    out = OrderedDict()
    for name in wanted:
        value = content["thresholds"].get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path}: threshold of {name!r} must be a finite number, got {value!r}")
        out[name] = float(value)
    return out


def read_classification_predictions(path: str, num_classes: Optional[int] = None) -> List[dict]:
    """Rows ``{"image_id", "file_name", "scores"}`` of a ``classification_predictions.json``
    (written by :class:`ClassificationEvaluator`: a JSON list, one object per image, with
    ``scores`` the C class probabilities; other keys are ignored).

    Raises:
        ValueError: not a list of such objects, or ``scores`` not ``num_classes`` numbers
            (naming the file and the row).
    """
    with open(path) as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of per-image predictions, got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "image_id" not in row or not isinstance(row.get("scores"), list):
            raise ValueError(f"{path}, row {i}: needs 'image_id' and a 'scores' list")
        if num_classes is not None and len(row["scores"]) != num_classes:
            raise ValueError(f"{path}, row {i} (image {row['image_id']!r}): {len(row['scores'])} scores, expected "
                             f"{num_classes} (one per class)")
        out.append({"image_id": row["image_id"], "file_name": row.get("file_name"), "scores": row["scores"]})
    return out


def format_classification_tables(metrics: ClassificationMetrics, class_names: Sequence[str]) -> str:
    """Readable text: the summary metrics, one row per label (metrics, then the counts at
    the threshold) and, for single-label, the confusion matrix (rows = truth)."""
    res = metrics.results
    summary = [(k, v) for k, v in res.items() if "/" not in k]
    parts = [tabulate(summary, headers=["metric", "value"], tablefmt="pipe", floatfmt=".3f")]
    columns = []
    for key in res:
        if "/" in key:
            metric = key.split("/", 1)[0]
            if metric not in columns:
                columns.append(metric)
    counts = ("positives", "negatives", "TP", "FP", "TN", "FN")
    body = []
    for name in class_names:
        row = [name] + [res.get(f"{m}/{name}", _NAN) for m in columns]
        row += [metrics.counts[name][k] for k in counts]
        body.append(row)
    parts.append(tabulate(body, headers=["label"] + columns + list(counts), tablefmt="pipe", floatfmt=".3f",
                          numalign="left"))
    if metrics.confusion_matrix is not None:
        cm = [[f"true: {n}"] + row for n, row in zip(class_names, metrics.confusion_matrix.tolist())]
        parts.append("Confusion matrix (rows = truth, columns = decision):\n"
                     + tabulate(cm, headers=[""] + list(class_names), tablefmt="pipe"))
    return "\n\n".join(parts)


def evaluate_classification(
    inputs: ClassificationInputs,
    thresholds: Optional[Dict[str, float]] = None,
    *,
    threshold_rule: str = "f2",
    fixed_threshold: float = 0.5,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    output_dir: Optional[str] = None,
    plots: bool = True,
    dataset_name: str = "",
    threshold_source: str = "",
):
    """Every classification metric of ``inputs``, logged as tables and written as files.

    Args:
        inputs: :func:`classification_inputs`.
        thresholds: ``{label: threshold}`` to apply (as :func:`read_thresholds` returns);
            None = chosen on ``inputs`` by ``threshold_rule`` / ``fixed_threshold``
            (:func:`choose_thresholds`).
        bootstrap: resamples for the AUC confidence intervals (0 = none), seeded by
            ``bootstrap_seed`` (:func:`bootstrap_auc`).
        output_dir: where to write ``metrics.json`` (``{"results", "task", "class_names",
            "num_images", "thresholds", "threshold_rule", "threshold_source", "counts",
            "confusion_matrix", "input_checks"}``, NaN as null),
            ``classification_predictions.json`` (per image: ``image_id``, ``file_name``,
            ``scores`` and the decisions at the thresholds: ``decisions`` 0/1 per label, or
            ``decision`` / ``decision_name`` the class), ``thresholds.json``
            (:func:`write_thresholds`) and, with ``plots``, the PNGs of
            :func:`cxr_det.evaluation.classification_plots.write_classification_plots`.
            None = no files.
        dataset_name, threshold_source: recorded in the files ("" = chosen here).

    Returns:
        ``(metrics, thresholds)``: :class:`ClassificationMetrics` (with the bootstrap
        intervals added to ``results``) and the thresholds applied.
    """
    if thresholds is None:
        thresholds = choose_thresholds(inputs, threshold_rule, fixed_threshold)
        threshold_source = threshold_source or dataset_name or "these images"
    metrics = _metrics(inputs, thresholds)
    if bootstrap > 0:
        metrics.results.update(bootstrap_auc(inputs.scores, inputs.targets, inputs.weights, inputs.class_names,
                                             bootstrap, bootstrap_seed))
    title = f"Classification of {dataset_name or 'the predictions'} ({inputs.task}, {len(inputs.image_ids)} images)"
    logger.info(f"{title}; thresholds from {threshold_source}:\n"
                + format_classification_tables(metrics, inputs.class_names))
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        details = OrderedDict(
            results=metrics.results, dataset=dataset_name, task=inputs.task, class_names=inputs.class_names,
            num_images=len(inputs.image_ids), thresholds=dict(thresholds),
            threshold_rule=threshold_rule, threshold_source=threshold_source, counts=metrics.counts,
            confusion_matrix=None if metrics.confusion_matrix is None else metrics.confusion_matrix.tolist(),
            input_checks=inputs.checks,
        )
        atomic_write_json(os.path.join(output_dir, METRICS_FILE), json_safe(details), indent=2)
        atomic_write_json(os.path.join(output_dir, PREDICTIONS_FILE), json_safe(_prediction_rows(inputs, thresholds)))
        write_thresholds(os.path.join(output_dir, THRESHOLDS_FILE), thresholds, inputs.class_names, inputs.task,
                         threshold_rule, threshold_source)
        if plots:
            write_classification_plots(output_dir, inputs, metrics, title=dataset_name)
        logger.info(f"Classification evaluation written to {output_dir}")
    return metrics, thresholds


def _eval_options(cfg) -> dict:
    node = None
    if cfg is not None and "CXR_CLS_EVAL" in cfg.get("TEST", {}):
        node = cfg.TEST.CXR_CLS_EVAL
    out = {k: (node[k] if node is not None and k in node else v) for k, v in _EVAL_DEFAULTS.items()}
    if out["THRESHOLD_RULE"] not in THRESHOLD_RULES:
        raise ValueError(f"TEST.CXR_CLS_EVAL.THRESHOLD_RULE is {out['THRESHOLD_RULE']!r}; "
                         f"valid: {list(THRESHOLD_RULES)}")
    if int(out["BOOTSTRAP"]) < 0:
        raise ValueError(f"TEST.CXR_CLS_EVAL.BOOTSTRAP must be >= 0, got {out['BOOTSTRAP']}")
    return out


class ClassificationEvaluator(DatasetEvaluator):
    """The detectron2 evaluator of image-level classification datasets
    (``evaluator_type="cxr_classification"``), configured by ``cfg.TEST.CXR_CLS_EVAL``.

    Ground truth is the registered dataset's dicts (``DatasetCatalog``, matched by
    ``image_id``: ``labels`` / ``label_weights`` or ``label``), class names its
    ``MetadataCatalog`` ``thing_classes``, the task ``CXR.CLASSIFIER.TASK`` or the
    metadata's ``task`` (else read off the dicts). ``process`` takes ``outputs[i]["scores"]``
    (C probabilities, as ``ClinicalImageClassifier`` returns them); predictions are
    gathered from every rank like detectron2's ``COCOEvaluator``.

    Thresholds: on the threshold dataset (``TEST.CXR_CLS_EVAL.THRESHOLD_DATASET``, default
    ``DATASETS.TEST[0]``) they are chosen by ``THRESHOLD_RULE``; on the others they are read
    from ``OUTPUT_DIR/inference/<threshold dataset>/thresholds.json`` (evaluate the threshold
    dataset first: list it first in ``DATASETS.TEST``), or chosen here with a warning when
    that file does not exist.

    ``evaluate`` returns ``{"classification": {name: float}}`` (the results of
    :func:`multi_label_metrics` / :func:`single_label_metrics`, plus the bootstrap intervals
    with ``BOOTSTRAP`` > 0; percent, NaN where undefined) and writes the files of
    :func:`evaluate_classification` into ``output_dir``.
    """

    def __init__(self, dataset_name: str, cfg=None, output_dir: Optional[str] = None, distributed: bool = True):
        """Raises ValueError for a dataset without ``thing_classes`` or a bad
        ``TEST.CXR_CLS_EVAL`` value."""
        self._dataset_name = dataset_name
        metadata = MetadataCatalog.get(dataset_name)
        if not metadata.get("thing_classes"):
            raise ValueError(f"dataset {dataset_name!r} has no thing_classes (label names) in its metadata")
        self._class_names = list(metadata.thing_classes)
        self._metadata_task = metadata.get("task", None)
        if cfg is not None and "CLASSIFIER" in cfg.get("CXR", {}) and cfg.CXR.CLASSIFIER.TASK:
            self._metadata_task = cfg.CXR.CLASSIFIER.TASK
        self._options = _eval_options(cfg)
        tests = list(cfg.DATASETS.TEST) if cfg is not None else []
        self._threshold_dataset = self._options["THRESHOLD_DATASET"] or (tests[0] if tests else dataset_name)
        self._thresholds_file = None
        if self._threshold_dataset != dataset_name and cfg is not None:
            self._thresholds_file = os.path.join(cfg.OUTPUT_DIR, "inference", self._threshold_dataset, THRESHOLDS_FILE)
            if self._threshold_dataset in tests and dataset_name in tests and \
                    tests.index(self._threshold_dataset) > tests.index(dataset_name):
                logger.warning(f"{dataset_name} is evaluated before its threshold dataset {self._threshold_dataset} "
                               f"(DATASETS.TEST order): it would use thresholds of an earlier evaluation")
        self._output_dir = output_dir
        self._distributed = distributed
        self._predictions = []

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "scores" not in out:
                raise KeyError(f"ClassificationEvaluator: the model output for image {inp.get('image_id')!r} has no "
                               f"'scores' (keys: {sorted(out)})")
            scores = torch.as_tensor(out["scores"]).detach().to("cpu", torch.float64).reshape(-1).numpy()
            self._predictions.append({"image_id": inp["image_id"], "file_name": inp.get("file_name"), "scores": scores})

    def _thresholds(self, class_names, task):
        """(thresholds or None to choose here, where they come from)."""
        if self._options["THRESHOLD_RULE"] == "fixed" or self._thresholds_file is None:
            return None, self._dataset_name
        if os.path.isfile(self._thresholds_file):
            logger.info(f"{self._dataset_name}: thresholds chosen on {self._threshold_dataset}, "
                        f"from {self._thresholds_file}")
            return read_thresholds(self._thresholds_file, class_names, task), self._threshold_dataset
        logger.warning(f"{self._dataset_name}: no thresholds of {self._threshold_dataset} ({self._thresholds_file} "
                       f"does not exist); choosing them on {self._dataset_name} itself, which flatters its "
                       f"threshold metrics")
        return None, self._dataset_name

    def evaluate(self):
        predictions = gather_predictions(self._predictions, self._distributed)
        if predictions is None:  # not the main process
            return {}
        if not predictions:
            logger.warning("[ClassificationEvaluator] Did not receive valid predictions.")
            return {}
        records = DatasetCatalog.get(self._dataset_name)
        task = classification_task(records, self._metadata_task, self._dataset_name)
        inputs = classification_inputs(records, predictions, self._class_names, task, self._dataset_name)
        thresholds, source = self._thresholds(self._class_names, task)
        opts = self._options
        metrics, _ = evaluate_classification(
            inputs, thresholds, threshold_rule=opts["THRESHOLD_RULE"], fixed_threshold=float(opts["FIXED_THRESHOLD"]),
            bootstrap=int(opts["BOOTSTRAP"]), bootstrap_seed=int(opts["BOOTSTRAP_SEED"]), output_dir=self._output_dir,
            plots=bool(opts["PLOTS"]), dataset_name=self._dataset_name, threshold_source=source,
        )
        return copy.deepcopy(OrderedDict(classification=OrderedDict((k, float(v)) for k, v in metrics.results.items())))
