"""Tables and files of an evaluation: readable per-protocol tables, ``metrics.json``,
``per_class.csv`` and the PNG curves (see :mod:`cxr_det.evaluation.plots`)."""
import csv
import json
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
from tabulate import tabulate

from .image_level import ANY
from .protocols import NO_FINDING, threshold_tag

__all__ = ["format_tables", "log_tables", "per_class_rows", "json_safe", "write_outputs"]

logger = logging.getLogger(__name__)

TITLES = {
    "bbox": "COCO bbox",
    "segm": "COCO segm",
    "vinbigdata": "VinBigData (PASCAL VOC AP, IoU > threshold, with 'No finding')",
    "iobb": "MDF-Net IoBB",
    "froc": "FROC (lesion sensitivity at FPs per image)",
    "image": "Image-level findings (specificity and FP_per_normal_image at the threshold)",
    "bootstrap": "Bootstrap 95% confidence intervals over images (percentile)",
}


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
    """Log the tables of the non-COCO protocols (CXRCOCOEvaluator logs COCO's itself)."""
    for task, table in format_tables(results).items():
        if task not in ("bbox", "segm"):
            logger.info("%s:\n%s", TITLES.get(task, task), table)


def _columns(results, options) -> List[tuple]:
    """(CSV column, protocol, per-row metric, summary metric)."""
    tag = threshold_tag(options.vinbigdata_iou)
    cols = []
    for task in ("bbox", "segm"):
        if task in results:
            cols += [(f"{task}_AP", task, "AP", "AP"), (f"{task}_AP50", task, "AP50", "AP50")]
    if "vinbigdata" in results:
        cols.append((f"vinbigdata_AP{tag}", "vinbigdata", f"AP{tag}", f"mAP{tag}"))
    if "iobb" in results:
        cols += [("iobb_AP", "iobb", "AP", "AP"), ("iobb_AR", "iobb", "AR", "AR")]
    if "froc" in results:
        cols.append(("froc_CPM", "froc", "CPM", "CPM"))
    if "image" in results:
        for m in ("AUC", "AP", "recall", "precision", "F1", "F2", "specificity", "FP_per_normal_image"):
            summary = m if m in ("AUC", "AP", "specificity", "FP_per_normal_image") else None
            cols.append((f"image_{m}", "image", m, summary))
        cols.append(("image_bestF2_threshold", "image", "bestF2_threshold", None))
    return cols


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
                if value is None and single and task in ("bbox", "segm") and name == class_names[0]:
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
    ``per_class.csv`` and, if ``options.plots``, the PNG curves."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(json_safe({"results": results, **summary}), f, indent=2)
    rows = per_class_rows(results, class_names, options)
    with open(os.path.join(output_dir, "per_class.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(rows[0].keys()))
        for row in rows:
            writer.writerow([_fmt(v) for v in row.values()])
    if options.plots:
        from .plots import write_plots

        write_plots(output_dir, curves, options)
    logger.info("Evaluation written to %s", output_dir)
