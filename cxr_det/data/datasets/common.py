"""Helpers shared by the dataset registrars: dataset root, CSV reading, class sets, skips."""
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

DATASET_ROOT_ENV = "CXR_DATASETS"

logger = logging.getLogger(__name__)


class DatasetFormatError(ValueError):
    """A dataset file does not have the layout its owner ships (missing file, column, bad value)."""


def dataset_root(root=None) -> Path:
    """``root`` if given, else ``$CXR_DATASETS``, else ``./datasets``."""
    return Path(root or os.environ.get(DATASET_ROOT_ENV) or "datasets").expanduser()


def read_csv(path, required_columns=(), **kwargs) -> pd.DataFrame:
    """Read a CSV, failing with the file name when it is missing or lacks a required column."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot be parsed as CSV ({e})") from e
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing}; columns present: {list(frame.columns)}"
        )
    return frame


def resolve_classes(requested, available, dataset):
    """Validate a class selection; ``["all"]`` (or empty) selects every available class."""
    requested = list(requested or [])
    if not requested or requested == ["all"]:
        return list(available)
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ValueError(f"{dataset}: unknown class name(s) {unknown}; valid names: {list(available)}")
    if len(set(requested)) != len(requested):
        raise ValueError(f"{dataset}: class list has duplicates: {requested}")
    return requested


class SkipLog:
    """Counts rows or records skipped while loading a dataset, by reason, and reports them once.

    ``skip(reason, where)`` records one skip; ``report()`` logs one warning listing each
    reason with its count and the first few places it happened.
    """

    def __init__(self, dataset: str, examples: int = 3):
        self.dataset = dataset
        self.examples = examples
        self.counts = Counter()
        self.where = defaultdict(list)

    def skip(self, reason: str, where: str = "") -> None:
        self.counts[reason] += 1
        if where and len(self.where[reason]) < self.examples:
            self.where[reason].append(where)

    def __len__(self):
        return sum(self.counts.values())

    def as_rows(self):
        """[(reason, count)] sorted by count, for summary tables."""
        return self.counts.most_common()

    def report(self, log=None) -> None:
        if not self.counts:
            return
        lines = [f"{self.dataset}: skipped {len(self)} item(s):"]
        for reason, n in self.counts.most_common():
            examples = "; ".join(self.where[reason])
            lines.append(f"  {n} x {reason}" + (f" (e.g. {examples})" if examples else ""))
        (log or logger).warning("\n".join(lines))


def clip_box(box, width, height):
    """Clip an XYXY box to the image ``[0, width] x [0, height]``."""
    x0, y0, x1, y1 = box
    return [
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    ]
