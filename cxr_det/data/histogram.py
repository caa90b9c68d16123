"""Per-class instance counts of a dataset, logged as a table when a loader is built."""
import logging
from collections import Counter

from tabulate import tabulate
from termcolor import colored


def count_instances(dataset_dicts, num_classes):
    """Number of non-crowd instances of each class; raises on an out-of-range ``category_id``."""
    counts = Counter()
    for record in dataset_dicts:
        for anno in record.get("annotations", []):
            if anno.get("iscrowd", 0):
                continue
            cid = anno["category_id"]
            if not 0 <= cid < num_classes:
                raise ValueError(
                    f"{record.get('file_name', '?')}: category_id {cid} is outside 0..{num_classes - 1}"
                )
            counts[cid] += 1
    return [counts[i] for i in range(num_classes)]


def log_class_histogram(dataset_dicts, class_names):
    """Log a table of instances per class (detectron2's ``print_instances_class_histogram``)."""
    counts = count_instances(dataset_dicts, len(class_names))
    rows = list(zip(class_names, counts)) + [("total", sum(counts))]
    table = tabulate(rows, headers=["category", "#instances"], tablefmt="pipe", numalign="left")
    logging.getLogger("detectron2.data.build").info(
        f"Distribution of instances among all {len(class_names)} categories:\n" + colored(table, "cyan")
    )
