"""PNG pictures of a classification evaluation: ROC and precision-recall curves of every
label in one figure each, the confusion matrix (counts and row-normalised), and the metrics
over a run's evaluations.

The curves are scikit-learn's ``roc_curve`` and ``precision_recall_curve`` (the same
definitions as :mod:`cxr_det.evaluation.classification`), over each label's included images
(label weight > 0); the legends give each label's AUC / AP in percent and its positives.
Figures are drawn with matplotlib's object API on the Agg canvas, never through pyplot (as
:mod:`cxr_det.evaluation.plots`), so plotting works headless and leaves pyplot alone.

Metrics over training: detectron2's ``EvalHook`` stores the evaluator's results in the run's
``metrics.json`` as ``classification/<name>`` (``<dataset>/classification/<name>`` with
several test datasets), which :mod:`cxr_det.utils.training_curves` draws like any metric
when its patterns select them: :func:`plot_classification_training_curves` passes
:data:`CLASSIFICATION_METRIC_PATTERNS` (also usable as ``tools/plot_training_curves.py
--metric '*classification/mAUC' --metric '*classification/AUC/*'``).
"""
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from cxr_det.utils.atomic import atomic_save
from cxr_det.utils.training_curves import plot_training_curves

__all__ = [
    "ROC_FILE",
    "PR_FILE",
    "CONFUSION_FILE",
    "CLASSIFICATION_METRIC_PATTERNS",
    "label_curves",
    "plot_roc_curves",
    "plot_pr_curves",
    "plot_confusion_matrix",
    "write_classification_plots",
    "plot_classification_training_curves",
]

logger = logging.getLogger(__name__)

ROC_FILE = "roc_curves.png"
PR_FILE = "pr_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
# fnmatch patterns of the classification metrics drawn over training: the headline numbers in
# one panel ("classification"), each label's AUC in another ("classification/AUC").
CLASSIFICATION_METRIC_PATTERNS = (
    "*classification/mAUC", "*classification/mAP", "*classification/microAUC",
    "*classification/accuracy", "*classification/balanced_accuracy", "*classification/AUC/*",
)
DPI = 100


def _figure(size, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, cols, i + 1) for i in range(cols)]


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def label_curves(scores: np.ndarray, targets: np.ndarray, weights,
                 class_names: Sequence[str]) -> "OrderedDict[str, dict]":
    """``{label: {"fpr", "tpr", "precision", "recall", "auc", "ap", "positives", "negatives"}}``
    from scikit-learn (``auc`` / ``ap`` in [0, 1]); a label with one class only among its
    included images gets empty curves and NaN values.

    Args:
        scores: (N, C); targets: (N, C) 0/1; weights: (N, C) (0 = excluded) or None.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones(scores.shape, dtype=bool) if weights is None else np.asarray(weights) > 0
    y = np.asarray(targets) > 0.5
    out = OrderedDict()
    for k, name in enumerate(class_names):
        s, t = scores[mask[:, k], k], y[mask[:, k], k]
        pos, neg = int(t.sum()), int((~t).sum())
        curve = dict(positives=pos, negatives=neg, fpr=np.zeros(0), tpr=np.zeros(0), precision=np.zeros(0),
                     recall=np.zeros(0), auc=float("nan"), ap=float("nan"))
        if pos and neg:
            curve["fpr"], curve["tpr"], _ = roc_curve(t, s)
            curve["precision"], curve["recall"], _ = precision_recall_curve(t, s)
            curve["auc"], curve["ap"] = float(roc_auc_score(t, s)), float(average_precision_score(t, s))
        out[name] = curve
    return out


def _legend(ax, n: int):
    if n > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small")
    else:
        ax.legend(loc="lower right" if ax.get_xlabel().startswith("false") else "lower left", fontsize="small")


def _save(fig, path: str) -> str:
    fig.tight_layout()
    return atomic_save(path, lambda f: fig.savefig(f, format="png"))


def plot_roc_curves(curves: Dict[str, dict], path: str, title: str = "ROC curves",
                    operating_points: Dict[str, tuple] = None) -> str:
    """All labels' ROC curves in one figure (false-positive rate against sensitivity), the
    chance diagonal, and each label's operating point at its threshold (``{label: (fpr,
    tpr)}``, drawn as a circle). Labels without both classes are listed as undefined."""
    wide = len(curves) > 6
    fig, (ax,) = _figure((10.5 if wide else 7.0, 6.0))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="chance (AUC 50)")
    for color, (name, c) in zip(_colors(len(curves)), curves.items()):
        if not np.isfinite(c["auc"]):
            ax.plot([], [], color=color, label=f"{name}: undefined ({c['positives']} pos / {c['negatives']} neg)")
            continue
        ax.plot(c["fpr"], c["tpr"], color=color, linewidth=1.5,
                label=f"{name}: AUC {100 * c['auc']:.1f} ({c['positives']} pos / {c['negatives']} neg)")
        if operating_points and name in operating_points and all(np.isfinite(operating_points[name])):
            ax.plot(*operating_points[name], marker="o", markersize=6, color=color, markeredgecolor="black")
    if operating_points:
        ax.plot([], [], marker="o", linestyle="", color="white", markeredgecolor="black", label="decision threshold")
    ax.set_title(title)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(curves))
    return _save(fig, path)


def plot_pr_curves(curves: Dict[str, dict], path: str, title: str = "Precision-recall curves") -> str:
    """All labels' precision-recall curves in one figure (step-wise, as average precision
    integrates them), each with its prevalence as a dotted line of its colour."""
    wide = len(curves) > 6
    fig, (ax,) = _figure((10.5 if wide else 7.0, 6.0))
    for color, (name, c) in zip(_colors(len(curves)), curves.items()):
        n = c["positives"] + c["negatives"]
        prevalence = c["positives"] / n if n else float("nan")
        if not np.isfinite(c["ap"]):
            ax.plot([], [], color=color, label=f"{name}: undefined ({c['positives']} pos / {c['negatives']} neg)")
            continue
        ax.step(c["recall"], c["precision"], where="post", color=color, linewidth=1.5,
                label=f"{name}: AP {100 * c['ap']:.1f} (prevalence {100 * prevalence:.1f}%)")
        ax.axhline(prevalence, color=color, linestyle=":", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(curves))
    return _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str,
                          title: str = "Confusion matrix") -> str:
    """Two panels: the counts, and the rows normalised to percent of each true class (the
    diagonal is each class's sensitivity). Rows = true class, columns = decided class."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = cm / cm.sum(axis=1, keepdims=True) * 100
    side = max(4.5, 0.9 * k + 2.5)
    fig, axes = _figure((2 * side + 1.5, side + 0.8), cols=2)
    panels = ((cm, "counts", "d", None), (rows, "% of each true class", ".1f", 100.0))
    for ax, (values, name, fmt, vmax) in zip(axes, panels):
        shown = np.nan_to_num(values.astype(np.float64))
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax or max(1, shown.max()))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        top = vmax or max(1, shown.max())
        for i in range(k):
            for j in range(k):
                text = "-" if np.isnan(values[i, j]) else format(values[i, j], fmt)
                ax.text(j, i, text, ha="center", va="center", fontsize="medium",
                        color="white" if shown[i, j] > 0.6 * top else "black")
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(class_names, rotation=30, ha="right")
        ax.set_yticklabels(class_names)
        ax.set_xlabel("decided class")
        ax.set_ylabel("true class")
        ax.set_title(name)
    fig.suptitle(title)
    return _save(fig, path)


def write_classification_plots(output_dir: str, inputs, metrics, title: str = "") -> List[str]:
    """Write ``roc_curves.png`` and ``pr_curves.png`` (every label; for binary single-label
    the positive class) and, for single-label, ``confusion_matrix.png``, into ``output_dir``.

    Args:
        inputs: :class:`~cxr_det.evaluation.classification.ClassificationInputs`.
        metrics: its :class:`~cxr_det.evaluation.classification.ClassificationMetrics`
            (operating points from its counts, the confusion matrix).

    Returns:
        The paths written.
    """
    names = list(inputs.class_names)
    curves = label_curves(inputs.scores, inputs.targets, inputs.weights, names)
    single = inputs.task == "single_label"
    if single and len(names) == 2:
        curves = OrderedDict([(names[1], curves[names[1]])])
    points = {}
    for name in curves:
        c = metrics.counts[name]
        neg, pos = c["FP"] + c["TN"], c["TP"] + c["FN"]
        points[name] = (c["FP"] / neg if neg else float("nan"), c["TP"] / pos if pos else float("nan"))
    suffix = f" - {title}" if title else ""
    kind = " (one-vs-rest)" if single and len(names) > 2 else ""
    written = [
        plot_roc_curves(curves, os.path.join(output_dir, ROC_FILE), f"ROC curves{kind}{suffix}", points),
        plot_pr_curves(curves, os.path.join(output_dir, PR_FILE), f"Precision-recall curves{kind}{suffix}"),
    ]
    if metrics.confusion_matrix is not None:
        images = int(metrics.confusion_matrix.sum())
        written.append(plot_confusion_matrix(metrics.confusion_matrix, names, os.path.join(output_dir, CONFUSION_FILE),
                                             f"Confusion matrix{suffix} ({images} images)"))
    logger.debug("classification plots written: %s", written)
    return written


def plot_classification_training_curves(
    metrics_file: str, output_dir: str, metric_patterns: Sequence[str] = CLASSIFICATION_METRIC_PATTERNS
) -> Dict[str, str]:
    """A classification run's curves from its ``metrics.json``: losses, learning rate and the
    classification metrics of every evaluation (:data:`CLASSIFICATION_METRIC_PATTERNS`), as
    :func:`cxr_det.utils.training_curves.plot_training_curves` draws them
    (``training_losses.png``, ``training_metrics.png``, ``training_lr.png``).

    Raises:
        FileNotFoundError: no ``metrics_file``.
    """
    return plot_training_curves(metrics_file, output_dir, metric_patterns)
