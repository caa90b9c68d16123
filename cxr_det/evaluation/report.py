"""Tables and files of an evaluation: readable per-protocol tables, ``metrics.json``,
``per_class.csv`` and the PNG curves (see :mod:`cxr_det.evaluation.plots`). Titles and
CSV columns come from each protocol's registry entry (:mod:`cxr_det.evaluation.protocols`)."""
import csv
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
from tabulate import tabulate

from cxr_det.formats import NO_FINDING
from cxr_det.utils.atomic import atomic_open, atomic_write_json

from .image_level import ANY
from .protocols import registered_protocols

__all__ = ["title", "format_tables", "log_tables", "per_class_rows", "json_safe", "write_outputs"]

logger = logging.getLogger(__name__)

BOOTSTRAP_TITLE = "Bootstrap 95% confidence intervals over images (percentile)"


def title(task: str) -> str:
    """The table title of a results task ("bbox", "vinbigdata", "bootstrap", ...): the one
    its protocol registers; the task itself when none does."""
    if task == "bootstrap":
        return BOOTSTRAP_TITLE
    for protocol in registered_protocols():
        if task in protocol.titles:
            return protocol.titles[task]
    return task


def _split(results: Dict[str, float]):
    """Summary metrics (no "-") and a row x metric table from ``<metric>-<row>`` keys."""
    summary = OrderedDict((k, v) for k, v in results.items() if "-" not in k)
    rows, columns = OrderedDict(), []
    for key, value in results.items():
        if "-" not in key:
            continue
        metric, row = key.split("-", 1)
        if metric not in columns:
            columns.append(metric)
        rows.setdefault(row, {})[metric] = value
    return summary, rows, columns


def format_tables(results: Dict[str, Dict[str, float]]) -> "OrderedDict[str, str]":
    """One text table per protocol: its summary metrics, then one row per class."""
    tables = OrderedDict()
    for task, res in results.items():
        summary, rows, columns = _split(res)
        parts = []
        if summary:
            parts.append(tabulate([list(summary.values())], headers=list(summary), tablefmt="pipe", floatfmt=".3f"))
        if rows:
            body = [[row] + [values.get(c, float("nan")) for c in columns] for row, values in rows.items()]
            parts.append(tabulate(body, headers=["class"] + columns, tablefmt="pipe", floatfmt=".3f", numalign="left"))
        tables[task] = "\n\n".join(parts)
    return tables


def log_tables(results: Dict[str, Dict[str, float]]) -> None:
    """Log one table per results task, under its title."""
    for task, table in format_tables(results).items():
        logger.info("%s:\n%s", title(task), table)


def _columns(results, options) -> List[tuple]:
    """(CSV column, task, per-row metric, summary metric), protocol by protocol in the
    order of ``CXR_EVAL_PROTOCOLS``."""
    return [col for protocol in registered_protocols() for col in protocol.csv_columns(results, options)]


def per_class_rows(results, class_names: Sequence[str], options) -> List["OrderedDict[str, object]"]:
    """Rows of ``per_class.csv``: each class, "No finding" (VinBigData), "any" (image
    level) and "all" (the protocols' summaries, e.g. mAP and overall CPM)."""
    cols = _columns(results, options)
    single = len(class_names) == 1
    rows = []
    for name in list(class_names) + [NO_FINDING, ANY, "all"]:
        row = OrderedDict(class_name=name)
        for column, task, metric, summary_metric in cols:
            res = results[task]
            if name == "all":
                value = res.get(summary_metric) if summary_metric else None
            else:
                value = res.get(f"{metric}-{name}")
                if value is None and single and name == class_names[0]:
                    value = res.get(metric)  # COCO lists no per-class AP for a single class
            row[column] = value
        if name in (NO_FINDING, ANY) and all(v is None for k, v in row.items() if k != "class_name"):
            continue
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def json_safe(obj):
    """``obj`` with numpy scalars as Python numbers and NaN/inf as None (JSON's null)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) or math.isinf(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_outputs(output_dir: str, results, curves, class_names, options, summary) -> None:
    """Write ``metrics.json`` (results, with NaN as null, plus dataset counts and options),
    ``per_class.csv`` and, if ``options.plots``, the PNG curves; the JSON and CSV atomically."""
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(os.path.join(output_dir, "metrics.json"), json_safe({"results": results, **summary}), indent=2)
    rows = per_class_rows(results, class_names, options)
    with atomic_open(os.path.join(output_dir, "per_class.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(rows[0].keys()))
        for row in rows:
            writer.writerow([_fmt(v) for v in row.values()])
    if options.plots:
        from .plots import write_plots

        write_plots(output_dir, curves, options)
    logger.info("Evaluation written to %s", output_dir)
