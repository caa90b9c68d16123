"""The image-level protocol: is class c anywhere in the image? (AUC, AP, F1/F2, specificity)

The image score of class c is the highest score among the image's predicted boxes of
class c (0 when there are none); the image is positive for c when it has a GT box of c.
The "any" row asks whether the image is abnormal at all: score = highest box score of any
class, positive = any GT box. ROC AUC is the Mann-Whitney statistic from ranks (ties
averaged; Hanley & McNeil, Radiology 143, 1982) and AP the step-wise average precision,
both as scikit-learn's ``roc_auc_score`` / ``average_precision_score`` define them
(checked against scikit-learn 1.9 in ``tests/evaluation/test_eval_references.py``); computed
here from the matched boxes rather than through scikit-learn so that the bootstrap can reuse
the rank statistics.
"""
from collections import OrderedDict
from typing import Sequence, Tuple

import numpy as np

from .matching import ImageBoxes, average_precision, cumulative_counts, precision_recall
from .protocols import Protocol, register_protocol

__all__ = [
    "ANY",
    "image_scores",
    "average_ranks",
    "roc_auc",
    "roc_curve",
    "fbeta",
    "metrics_at_threshold",
    "best_fbeta_threshold",
    "resolve_thresholds",
    "normal_image_metrics",
    "image_level_metrics",
]

ANY = "any"


def image_scores(images: Sequence[ImageBoxes], num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)``, both (images, classes + 1); the last column is "any"."""
    scores = np.zeros((len(images), num_classes + 1))
    labels = np.zeros((len(images), num_classes + 1), dtype=bool)
    for i, im in enumerate(images):
        if len(im.pred_scores):
            np.maximum.at(scores[i], im.pred_classes, im.pred_scores)
            scores[i, num_classes] = im.pred_scores.max()
        labels[i, im.gt_classes] = True
        labels[i, num_classes] = len(im.gt_classes) > 0
    return scores, labels


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks in increasing order; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(values) else np.zeros(0, dtype=int)
    ends = np.r_[starts[1:], len(values)]
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(values))
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (P N)), in [0, 1]; NaN without both classes."""
    labels = np.asarray(labels, dtype=bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray):
    """``(fpr, tpr, thresholds)`` at each distinct score, starting from (0, 0) at +inf."""
    labels = np.asarray(labels, dtype=bool)
    ctp, cfp, thresholds = cumulative_counts(scores, labels)
    pos, neg = labels.sum(), (~labels).sum()
    tpr = np.r_[0.0, ctp / pos] if pos else np.full(len(ctp) + 1, np.nan)
    fpr = np.r_[0.0, cfp / neg] if neg else np.full(len(cfp) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def fbeta(precision, recall, beta: float):
    """F-beta score; 0 where precision and recall are both 0, NaN where recall is NaN."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    b2 = beta * beta
    denom = b2 * precision + recall
    with np.errstate(invalid="ignore"):
        out = np.where(denom > 0, (1 + b2) * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return np.where(np.isnan(recall), np.nan, out)


def metrics_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Recall, precision, F1, F2 of "positive when score >= threshold", in [0, 1].

    Precision is 0 when nothing is called positive; recall is NaN without positives.
    """
    labels = np.asarray(labels, dtype=bool)
    called = np.asarray(scores) >= threshold
    tp = int((called & labels).sum())
    precision = tp / called.sum() if called.sum() else 0.0
    recall = tp / labels.sum() if labels.sum() else float("nan")
    return {
        "recall": float(recall),
        "precision": float(precision),
        "F1": float(fbeta(precision, recall, 1.0)),
        "F2": float(fbeta(precision, recall, 2.0)),
    }


def best_fbeta_threshold(scores: np.ndarray, labels: np.ndarray, beta: float = 2.0) -> Tuple[float, float]:
    """``(threshold, F-beta)`` maximising F-beta over the distinct scores (the highest such
    threshold on ties); NaN, NaN without positives."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("nan"), float("nan")
    precision, recall, thresholds = precision_recall(scores, labels, int(labels.sum()))
    f = fbeta(precision, recall, beta)
    best = int(np.argmax(f))
    return float(thresholds[best]), float(f[best])


def resolve_thresholds(thresholds, num_classes: int) -> np.ndarray:
    """Decision thresholds for the classes and "any" (``num_classes + 1`` values).

    One value: used for every row. ``num_classes`` values: one per class, and "any"
    takes the smallest of them. ``num_classes + 1`` values: the last is for "any".
    """
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if values.size == 1:
        return np.full(num_classes + 1, float(values[0]))
    if values.size == num_classes:
        return np.r_[values, values.min()]
    if values.size == num_classes + 1:
        return values
    raise ValueError(
        f"image thresholds: expected 1, {num_classes} (one per class) or {num_classes + 1} (classes, then 'any') "
        f"values, got {values.size}"
    )


def normal_image_metrics(images: Sequence[ImageBoxes], num_classes: int, cuts: np.ndarray):
    """``(specificity, fp_per_normal)``, each (classes + 1,) with "any" last, at the
    decision thresholds ``cuts`` (classes + 1,).

    specificity: among the images without a GT box of the class (without any GT box for
    "any"), the fraction whose image score is below the threshold, in [0, 1] (NaN if there
    is no such image). fp_per_normal: predicted boxes of the class (of any class for
    "any") scoring >= the threshold on the normal images (no GT box at all), divided by
    the number of normal images (NaN if there is none).
    """
    scores, labels = image_scores(images, num_classes)
    called = scores >= cuts[None, :]
    negatives = ~labels
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = (negatives & ~called).sum(axis=0) / negatives.sum(axis=0)
    normal = [im for im in images if len(im.gt_classes) == 0]
    boxes = np.zeros(num_classes + 1)
    for im in normal:
        kept = im.pred_scores >= cuts[im.pred_classes]
        np.add.at(boxes, im.pred_classes[kept], 1)
        boxes[num_classes] += int((im.pred_scores >= cuts[num_classes]).sum())
    fp_per_normal = boxes / len(normal) if normal else np.full(num_classes + 1, np.nan)
    return specificity.astype(np.float64), fp_per_normal


def image_level_metrics(images: Sequence[ImageBoxes], class_names: Sequence[str], thresholds=(0.5,)):
    """Per class and "any": ``AUC-``, ``AP-`` (step-wise, scikit-learn's definition),
    ``recall-``, ``precision-``, ``F1-``, ``F2-``, ``specificity-`` at the row's threshold
    (``threshold-``, a raw score), ``FP_per_normal_image-`` (boxes scoring >= the threshold
    on normal images, per normal image; a rate, not a percentage, see
    :func:`normal_image_metrics`), and the best F2 (``bestF2-``) with its threshold
    (``bestF2_threshold-``). Summary: ``AUC`` and ``AP`` (means over the classes where
    they are defined), ``specificity`` and ``FP_per_normal_image`` (the "any" row: a set
    of normal images only has no AUC or AP, and is judged by these two). Metrics are in
    percent; thresholds are scores in [0, 1]. Returns ``(results, curves)``.
    """
    names = list(class_names) + [ANY]
    scores, labels = image_scores(images, len(class_names))
    cuts = resolve_thresholds(thresholds, len(class_names))
    rows, curves = OrderedDict(), OrderedDict()
    for k, name in enumerate(names):
        s, y = scores[:, k], labels[:, k]
        precision, recall, _ = precision_recall(s, y, int(y.sum()))
        row = OrderedDict()
        row["AUC"] = roc_auc(s, y)
        row["AP"] = average_precision(precision, recall, "step") if y.any() else float("nan")
        row.update(metrics_at_threshold(s, y, cuts[k]))
        best_threshold, best_f2 = best_fbeta_threshold(s, y, 2.0)
        row["bestF2"] = best_f2
        rows[name] = (row, float(cuts[k]), best_threshold)
        fpr, tpr, _ = roc_curve(s, y)
        curves[name] = {"fpr": fpr, "tpr": tpr, "auc": row["AUC"], "precision": precision, "recall": recall}
        curves[name]["ap"] = row["AP"]

    def mean(metric):
        values = np.asarray([rows[n][0][metric] for n in class_names], dtype=np.float64)
        values = values[~np.isnan(values)]
        return float(values.mean()) * 100 if values.size else float("nan")

    specificity, fp_per_normal = normal_image_metrics(images, len(class_names), cuts)
    results = OrderedDict([("AUC", mean("AUC")), ("AP", mean("AP"))])
    results["specificity"] = float(specificity[-1]) * 100
    results["FP_per_normal_image"] = float(fp_per_normal[-1])
    for k, (name, (row, cut, best_threshold)) in enumerate(rows.items()):
        for metric, value in row.items():
            results[f"{metric}-{name}"] = float(value) * 100
        results[f"specificity-{name}"] = float(specificity[k]) * 100
        results[f"FP_per_normal_image-{name}"] = float(fp_per_normal[k])
        results[f"threshold-{name}"] = cut
        results[f"bestF2_threshold-{name}"] = best_threshold
    return results, curves


def _run(inputs, options):
    results, curves = image_level_metrics(inputs.images, inputs.class_names, options.image_thresholds)
    return {"image": results}, {"image": curves}


_CSV_METRICS = ("AUC", "AP", "recall", "precision", "F1", "F2", "specificity", "FP_per_normal_image")


def _csv_columns(results, options):
    if "image" not in results:
        return []
    cols = []
    for m in _CSV_METRICS:
        summary = m if m in ("AUC", "AP", "specificity", "FP_per_normal_image") else None
        cols.append((f"image_{m}", "image", m, summary))
    cols.append(("image_bestF2_threshold", "image", "bestF2_threshold", None))
    return cols


def _plots(output_dir, curves, options):
    import os

    from .plots import plot_pr_curves, plot_roc

    return [
        plot_roc(curves["image"], os.path.join(output_dir, "roc_image.png")),
        plot_pr_curves(curves["image"], "Image-level precision-recall", os.path.join(output_dir, "pr_image.png")),
    ]


register_protocol(Protocol(
    name="image",
    run=_run,
    titles={"image": "Image-level findings (specificity and FP_per_normal_image at the threshold)"},
    csv_columns=_csv_columns,
    plots=_plots,
))
