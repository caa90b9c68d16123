"""Training curves from detectron2's ``metrics.json`` (one JSON object per line, JSONWriter).

Figures are drawn with matplotlib's object API on the Agg canvas, never through pyplot, so
plotting works headless and leaves pyplot's global state alone.
"""
import fnmatch
import json
import logging
import math
import os
from collections import OrderedDict, defaultdict
from typing import Dict, List, Sequence, Tuple

from cxr_det.utils.atomic import atomic_open

__all__ = ["DEFAULT_METRIC_PATTERNS", "load_metrics", "last_run", "metric_series", "training_figures", "plot_training_curves"]

logger = logging.getLogger(__name__)

# Summary metrics of cxr_det's protocols; "*" lets a dataset-name prefix through, per-class
# entries ("AP-Nodule") are left out.
DEFAULT_METRIC_PATTERNS = (
    "*bbox/AP", "*bbox/AP50", "*bbox/AP75", "*segm/AP", "*segm/AP50",
    "*vinbigdata/mAP*", "*iobb/AP", "*iobb/AR", "*froc/CPM", "*image/AUC", "*image/AP",
    "*classification/mAUC", "*classification/mAP", "*classification/accuracy", "*classification/balanced_accuracy",
)
FIGSIZE = (9.0, 5.0)
METRIC_PANEL_HEIGHT = 3.5
DPI = 100


def load_metrics(path: str) -> List[dict]:
    """The records of a ``metrics.json``; lines that are not a JSON object (a run killed
    mid-write) are skipped with a warning."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"metrics file {path!r} does not exist: detectron2's JSONWriter writes it as "
            f"OUTPUT_DIR/metrics.json during training"
        )
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning(f"{path}:{lineno}: not valid JSON, skipped")
                continue
            if isinstance(record, dict) and "iteration" in record:
                records.append(record)
    return last_run(records, path)


def last_run(records: Sequence[dict], source: str = "metrics.json") -> List[dict]:
    """The records of the last training run in a ``metrics.json`` that holds several.

    A new run in the same ``OUTPUT_DIR`` (before cxr_det set earlier runs aside) appended
    its lines after the old ones: a run starts where the iteration falls back to the file's
    first logged iteration or below. A resumed run only overlaps the tail of the run it
    continues; its later lines win in :func:`metric_series`. Earlier runs are dropped with
    a warning.
    """
    if not records:
        return []
    its = [int(r["iteration"]) for r in records]
    starts = [i for i in range(1, len(its)) if its[i] < its[i - 1] and its[i] <= its[0]]
    if not starts:
        return list(records)
    logger.warning(f"{source} holds {len(starts) + 1} training runs (the iteration falls back to {its[starts[-1]]} "
                   f"at record {starts[-1] + 1}); plotting the last one")
    return list(records[starts[-1]:])


def metric_series(records: Sequence[dict]) -> Dict[str, Tuple[List[int], List[float]]]:
    """``{key: (iterations, values)}`` sorted by iteration, finite numbers only.

    A resumed run appends to the same file and repeats iterations: the later line wins.
    """
    points = defaultdict(dict)
    for record in records:
        it = int(record["iteration"])
        for key, value in record.items():
            if key == "iteration" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                points[key][it] = float(value)
            else:
                points[key].pop(it, None)
    return OrderedDict(
        (key, ([i for i in sorted(p)], [p[i] for i in sorted(p)])) for key, p in sorted(points.items()) if p
    )


def _is_loss(key: str) -> bool:
    key = key[len("val_"):] if key.startswith("val_") else key
    return key == "total_loss" or key.startswith("loss_")


def _figure(height: float, rows: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGSIZE[0], height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, 1, r + 1) for r in range(rows)]


def _finish(fig, extra_handles=()):
    """Grid, legends outside the axes on the right (never over a curve), tight layout.

    ``extra_handles`` (line styles, e.g. training vs validation) are appended to the first
    axes' legend below its entries.
    """
    for i, ax in enumerate(fig.axes):
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if i == 0 and extra_handles:
            handles, labels = handles + list(extra_handles), labels + [h.get_label() for h in extra_handles]
        if handles:
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                      fontsize="medium", frameon=True)
    fig.tight_layout()
    return fig


def _losses_figure(series):
    """Training losses as lines, validation losses dashed with markers, one colour per loss;
    the legend names each loss once (its colour) and the two line styles."""
    from matplotlib.lines import Line2D

    fig, (ax,) = _figure(FIGSIZE[1])
    names = sorted({k[len("val_"):] if k.startswith("val_") else k for k in series})
    names.sort(key=lambda n: n != "total_loss")
    validation = dict(linestyle="--", marker="o", markersize=4)
    for color, name in enumerate(names):
        style = {"color": f"C{color % 10}", "linewidth": 2.0 if name == "total_loss" else 1.2}
        if name in series:
            ax.plot(*series[name], label=name, **style)
        if "val_" + name in series:
            ax.plot(*series["val_" + name], label=None if name in series else name, **validation, **style)
    extra = ()
    if any(k.startswith("val_") for k in series) and any(not k.startswith("val_") for k in series):
        extra = (Line2D([], [], color="0.3", label="training"), Line2D([], [], color="0.3", label="validation", **validation))
    ax.set_title("losses")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    return _finish(fig, extra)


def _metrics_figure(series):
    """One panel per protocol (the key without its last part: "bbox", "froc", "<dataset>/bbox")."""
    groups = OrderedDict()
    for key in series:
        groups.setdefault(key.rpartition("/")[0], []).append(key)
    fig, axes = _figure(METRIC_PANEL_HEIGHT * len(groups), rows=len(groups))
    for ax, (group, keys) in zip(axes, groups.items()):
        for key in keys:
            ax.plot(*series[key], marker="o", markersize=3, label=key.rpartition("/")[2])
        ax.set_title(group)
        ax.set_ylabel("value")
    axes[-1].set_xlabel("iteration")
    return _finish(fig)


def _lr_figure(series):
    fig, (ax,) = _figure(FIGSIZE[1] * 0.6)
    ax.plot(*series, color="C0")
    ax.set_title("learning rate")
    ax.set_xlabel("iteration")
    ax.set_ylabel("lr")
    return _finish(fig)


def training_figures(series, metric_patterns: Sequence[str] = DEFAULT_METRIC_PATTERNS):
    """The figures of :func:`metric_series` output, each with its legend outside the axes.

    Returns:
        ``{"losses" | "metrics" | "lr": matplotlib Figure}`` (Agg canvas, ``DPI`` dots per inch,
        ``FIGSIZE[0]`` inches wide); a figure without data is left out.
    """
    figures = {}
    losses = OrderedDict((k, v) for k, v in series.items() if _is_loss(k))
    if losses:
        figures["losses"] = _losses_figure(losses)
    metrics = OrderedDict(
        (k, v) for k, v in series.items() if any(fnmatch.fnmatchcase(k, p) for p in metric_patterns)
    )
    if metrics:
        figures["metrics"] = _metrics_figure(metrics)
    if "lr" in series:
        figures["lr"] = _lr_figure(series["lr"])
    return figures


def plot_training_curves(
    metrics_file: str, output_dir: str, metric_patterns: Sequence[str] = DEFAULT_METRIC_PATTERNS
) -> Dict[str, str]:
    """Write ``training_losses.png``, ``training_metrics.png`` and ``training_lr.png`` to
    ``output_dir`` from ``metrics_file``; a figure without data is not written.

    Args:
        metric_patterns: ``fnmatch`` patterns of the evaluation metrics to draw.

    Returns:
        ``{"losses" | "metrics" | "lr": path}`` of the figures written.
    """
    series = metric_series(load_metrics(metrics_file))
    os.makedirs(output_dir, exist_ok=True)
    written = {}
    for kind, fig in training_figures(series, metric_patterns).items():
        written[kind] = os.path.join(output_dir, f"training_{kind}.png")
        with atomic_open(written[kind], "wb") as f:  # never a half-written PNG
            fig.savefig(f, format="png")
    if not written:
        logger.warning(f"{metrics_file}: no losses, metrics or learning rate to plot")
    else:
        logger.info(f"Training curves written to {', '.join(written.values())}")
    return written
