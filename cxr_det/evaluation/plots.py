"""PNG curves of an evaluation: precision-recall per class, FROC, ROC.

Figures are drawn with matplotlib's object API on the Agg canvas, never through pyplot,
so plotting works headless and leaves pyplot's global state (and backend) alone.
"""
import logging
from typing import Dict, List

import numpy as np

from cxr_det.utils.atomic import atomic_save

__all__ = ["plot_pr_curves", "plot_froc", "plot_roc", "write_plots"]

logger = logging.getLogger(__name__)


def _figure(title: str, xlabel: str, ylabel: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: str) -> str:
    ax = fig.axes[0]
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return atomic_save(path, lambda f: fig.savefig(f, format="png"))


def _label(name: str, value_name: str, value) -> str:
    return f"{name} ({value_name} {value * 100:.1f})" if value is not None and np.isfinite(value) else f"{name}"


def plot_pr_curves(curves: Dict[str, dict], title: str, path: str) -> str:
    """One precision-recall line per class (classes without ground truth or predictions left out)."""
    fig, ax = _figure(title, "recall", "precision")
    for name, c in curves.items():
        recall = np.asarray(c["recall"])
        if recall.size and np.isnan(recall).any():
            continue
        if recall.size == 0:
            continue
        precision = np.asarray(c["precision"])
        ax.plot(np.r_[0.0, recall], np.r_[precision[0], precision], label=_label(name, "AP", c.get("ap")))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    return _save(fig, path)


def plot_froc(curves: dict, fps, path: str) -> str:
    """Sensitivity against FPs per image (log scale): overall bold, then each class."""
    fig, ax = _figure("FROC", "false positives per image", "lesion sensitivity")
    entries = [("overall", curves["overall"], 2.5)] + [(n, c, 1.0) for n, c in curves["classes"].items()]
    for name, c, width in entries:
        if c is None or c["num_gt"] == 0:
            continue
        fppi = np.r_[0.0, c["fppi"]]
        sens = np.r_[0.0, c["sensitivity"]]
        x = np.maximum(fppi, min(fps) / 4)  # keep 0 FP visible on the log axis
        ax.step(x, sens, where="post", linewidth=width, label=_label(name, "CPM", c.get("cpm")))
    for rate in fps:
        ax.axvline(rate, color="grey", linewidth=0.5, alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(fps) / 4, max(fps) * 2)
    ax.set_ylim(0, 1.02)
    return _save(fig, path)


def plot_roc(curves: Dict[str, dict], path: str) -> str:
    """Image-level ROC per class and for "any" abnormality."""
    fig, ax = _figure("Image-level ROC", "false positive rate", "true positive rate")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    for name, c in curves.items():
        if not np.isfinite(c["auc"]):
            continue
        ax.plot(c["fpr"], c["tpr"], linewidth=2.5 if name == "any" else 1.0, label=_label(name, "AUC", c["auc"]))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    return _save(fig, path)


def write_plots(output_dir: str, curves: dict, options) -> List[str]:
    """Write the PNGs of the protocols that were computed (each protocol's registered
    ``plots``, e.g. ``pr_vinbigdata.png``, ``pr_iobb.png``, ``froc.png``,
    ``roc_image.png``, ``pr_image.png``); returns their paths."""
    from .protocols import registered_protocols

    written = []
    for protocol in registered_protocols():
        if protocol.plots is not None and any(task in curves for task in protocol.titles):
            written += protocol.plots(output_dir, curves, options)
    logger.debug("plots written: %s", written)
    return written
