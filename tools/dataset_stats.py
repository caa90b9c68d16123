#!/usr/bin/env python
"""Statistics of a registered dataset: images, and per class its boxes (detection) or its labels (classification).

    tools/dataset_stats.py --dataset reflacx_train
    tools/dataset_stats.py --dataset chexpert_train --config-file cfg.yaml --json stats.json \
        CXR.CHEXPERT.UNCERTAINTY ignore

Any name cxr_det registers (``register_from_config`` with the config's ``CXR.*`` options, so
the counts are those of the dataset a training run with that config reads) or that other
code registered in detectron2's catalogs. Per class:

* detection (records with ``annotations``): the boxes of the class and the images holding at
  least one of them;
* multi-label classification (``labels`` / ``label_weights``): positives and negatives among
  the counted labels (weight > 0), ignored labels (weight 0: an uncertain cell under the
  U-Ignore policy), and prevalence = positives / (positives + negatives);
* single-label classification (``label``): images of the class and their share.

Images are distinct ``file_name`` values; records may be more (REFLACX ``per_reading``: one
per reading). The table is printed; ``--json`` also writes the figures as JSON, with the
options the name was registered with (``cxr_options``).
"""
import argparse
import sys
from collections import Counter

import numpy as np
from tabulate import tabulate

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

from cxr_det.config import get_cxr_cfg
from cxr_det.data.datasets.builtin import cxr_dataset_names, register_from_config
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.utils.atomic import atomic_write_json

TASKS = ("detection", "multi_label", "single_label")


def dataset_task(records, metadata) -> str:
    """``"detection"``, ``"multi_label"`` or ``"single_label"``: the metadata's ``task`` for
    ``evaluator_type="cxr_classification"``, ``"detection"`` for ``cxr_detection``; without
    either, what the first record holds (``annotations``, ``labels``, ``label``).

    Raises ValueError when neither the metadata nor the records say.
    """
    evaluator = metadata.get("evaluator_type")
    if evaluator == "cxr_detection":
        return "detection"
    task = metadata.get("task")
    if task in TASKS:
        return task
    for key, found in (("annotations", "detection"), ("labels", "multi_label"), ("label", "single_label")):
        if records and key in records[0]:
            return found
    raise ValueError("the records hold neither 'annotations', 'labels' nor 'label' and the metadata gives no task")


def _detection(records, classes):
    boxes = Counter()
    images = {}
    without = set()
    for record in records:
        annotations = record.get("annotations") or []
        if not annotations:
            without.add(record["file_name"])
        for annotation in annotations:
            boxes[annotation["category_id"]] += 1
            images.setdefault(annotation["category_id"], set()).add(record["file_name"])
    without -= set().union(*images.values()) if images else set()
    rows = [{"class": name, "boxes": boxes[i], "images": len(images.get(i, ()))} for i, name in enumerate(classes)]
    return rows, {"boxes": sum(boxes.values()), "images_without_boxes": len(without)}


def _multi_label(records, classes):
    n = len(classes)
    targets = np.asarray([r["labels"] for r in records], dtype=np.float32).reshape(-1, n)
    weights = np.asarray([r.get("label_weights", [1.0] * n) for r in records], dtype=np.float32).reshape(-1, n)
    counted = weights > 0
    positive = (counted & (targets >= 0.5)).sum(axis=0)
    negative = (counted & (targets < 0.5)).sum(axis=0)
    ignored = (~counted).sum(axis=0)
    rows = []
    for j, name in enumerate(classes):
        total = int(positive[j] + negative[j])
        rows.append({
            "class": name, "positive": int(positive[j]), "negative": int(negative[j]), "ignored": int(ignored[j]),
            "prevalence": float(positive[j]) / total if total else None,
        })
    return rows, {}


def _single_label(records, classes):
    counts = Counter(int(r["label"]) for r in records)
    total = len(records)
    rows = [
        {"class": name, "images": counts[i], "share": counts[i] / total if total else None}
        for i, name in enumerate(classes)
    ]
    return rows, {}


def dataset_statistics(name, records, metadata) -> dict:
    """The statistics of one dataset as a JSON-able dict.

    Args:
        name: the dataset name (recorded).
        records: its detectron2 dataset dicts.
        metadata: its detectron2 ``Metadata`` (``thing_classes``; ``task``, ``cxr_options``
            when set).

    Returns:
        ``{"dataset", "task", "records", "images", "classes": [row per class], ...}`` where a
        row is ``{"class", "boxes", "images"}`` (detection, plus totals ``boxes`` and
        ``images_without_boxes``), ``{"class", "positive", "negative", "ignored",
        "prevalence"}`` (multi-label; prevalence in [0, 1], None when no label counts) or
        ``{"class", "images", "share"}`` (single-label; share in [0, 1]); ``options``: the
        registration's ``cxr_options`` (None for a name other code registered).

    Raises:
        ValueError: no class names in the metadata, or a label index outside them.
    """
    task = dataset_task(records, metadata)
    classes = list(metadata.get("thing_classes", None) or [])
    if not classes:
        raise ValueError(f"{name}: the metadata has no thing_classes")
    compute = {"detection": _detection, "multi_label": _multi_label, "single_label": _single_label}[task]
    rows, totals = compute(records, classes)
    if task == "single_label":
        outside = sorted({int(r["label"]) for r in records} - set(range(len(classes))))
        if outside:
            raise ValueError(f"{name}: label(s) {outside} outside the {len(classes)} classes {classes}")
    return {
        "dataset": name,
        "task": task,
        "records": len(records),
        "images": len({r["file_name"] for r in records}),
        **totals,
        "classes": rows,
        "options": metadata.get("cxr_options", None),
    }


def statistics_table(stats) -> str:
    """The statistics of :func:`dataset_statistics` as text: a summary line and one table row
    per class (prevalence and share in percent)."""
    head = f"{stats['dataset']} ({stats['task']}): {stats['images']} images"
    if stats["records"] != stats["images"]:
        head += f", {stats['records']} records"
    if stats["task"] == "detection":
        head += f", {stats['boxes']} boxes, {stats['images_without_boxes']} images without boxes"
    rows = []
    for row in stats["classes"]:
        row = dict(row)
        for key in ("prevalence", "share"):
            if key in row:
                row[key] = "-" if row[key] is None else f"{100 * row[key]:.1f}%"
        rows.append(row)
    align = ("left",) + ("right",) * (len(rows[0]) - 1 if rows else 0)
    return head + "\n" + tabulate(rows, headers="keys", tablefmt="github", colalign=align)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered name, e.g. reflacx_train or chexpert_valid")
    parser.add_argument("--config-file", default="", help="config whose CXR.* options the datasets are registered with")
    parser.add_argument("--json", default="", help="also write the statistics to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser, parser.parse_args(argv)


def main(argv=None):
    """Register, load the dataset, print the table (and write the JSON); returns the statistics.

    Exits with a message (status 2) for an unknown dataset name, listing cxr_det's names
    under the config, and (status 1) when the dataset cannot be loaded (missing files).
    """
    parser, args = parse_args(argv)
    cfg = get_cxr_cfg(args.config_file or None, args.opts)
    register_from_config(cfg)
    if args.dataset not in DatasetCatalog.list():
        ours = cxr_dataset_names(cfg)
        others = len(set(DatasetCatalog.list()) - set(ours))
        parser.error(
            f"dataset {args.dataset!r} is not registered. cxr_det's datasets under this config: {', '.join(ours)} "
            f"(folder_* when CXR.IMAGE_FOLDER.NAME is set); {others} other names (e.g. detectron2's COCO) are in "
            "detectron2.data.DatasetCatalog.list()"
        )
    try:
        records = DatasetCatalog.get(args.dataset)
    except (DatasetFormatError, FileNotFoundError) as e:
        sys.exit(f"dataset_stats.py: {args.dataset} cannot be loaded: {e}")
    stats = dataset_statistics(args.dataset, records, MetadataCatalog.get(args.dataset))
    print(statistics_table(stats))
    if args.json:
        atomic_write_json(args.json, stats, indent=2)
        print(f"wrote {args.json}")
    return stats


if __name__ == "__main__":
    setup_logger(name="cxr_det", abbrev_name="cxr")  # here, not in main(): it stops propagation to the root logger
    main()
