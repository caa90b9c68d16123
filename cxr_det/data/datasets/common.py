"""Helpers shared by the dataset registrars: dataset root, table paths and CSV reading, class sets, skips."""
import gzip
import io
import logging
import math
import os
import zlib
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


GZIP_SUFFIX = ".gz"
# What a damaged .gz raises while it is read (gzip.BadGzipFile is an OSError).
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def _both_forms(path: Path):
    """``(name.csv, name.csv.gz)`` for either spelling of ``path``."""
    if path.name.endswith(GZIP_SUFFIX):
        return path.with_name(path.name[: -len(GZIP_SUFFIX)]), path
    return path, path.with_name(path.name + GZIP_SUFFIX)


def find_table(*candidates) -> Path:
    """The file of a table that may be shipped gzipped (``x.csv.gz``) or unzipped (``x.csv``).

    PhysioNet ships the MIMIC tables gzipped (``mimic-iv-ed/ed/edstays.csv.gz``,
    ``mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz``, ...) and users often gunzip them, so
    each candidate path is tried as given and in its other form (``.gz`` added or removed).
    Several candidates name alternative locations of one table (MIMIC-IV 1.0's
    ``core/patients.csv`` before ``hosp/patients.csv``); the first that exists wins. When
    both forms of a candidate exist the one given is used (logged).

    Raises :class:`DatasetFormatError` naming every path looked for when none exists.
    """
    if not candidates:
        raise ValueError("find_table: no path given")
    looked = []
    for candidate in candidates:
        given = Path(candidate)
        plain, zipped = _both_forms(given)
        other = zipped if given == plain else plain
        if given.is_file():
            if other.is_file():
                logger.info("%s and %s both exist; reading %s", given, other.name, given)
            return given
        if other.is_file():
            return other
        looked += [given, other]
    also = ", ".join(str(p) for p in looked[1:])
    raise DatasetFormatError(f"{looked[0]}: file not found (also looked for {also})")


def table_exists(*candidates) -> bool:
    """Whether :func:`find_table` would find a file (either form of any candidate)."""
    try:
        find_table(*candidates)
    except DatasetFormatError:
        return False
    return True


def open_table_text(path, encoding="utf-8-sig"):
    """A text stream of a (possibly gzipped) table; ``path`` is resolved by :func:`find_table`.

    Use as a context manager; a ``.gz`` name is decompressed while reading.
    """
    path = find_table(path)
    if path.name.endswith(GZIP_SUFFIX):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, newline="", encoding=encoding)


def read_csv(path, required_columns=(), **kwargs) -> pd.DataFrame:
    """Read a CSV, plain or gzipped (see :func:`find_table`), as a DataFrame.

    Fails with :class:`DatasetFormatError` naming the file when it is missing (both names
    looked for), cannot be parsed or decompressed, or lacks a column of ``required_columns``.
    """
    path = find_table(path)
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot be parsed as CSV ({e})") from e
    except _GZIP_ERRORS as e:
        if not path.name.endswith(GZIP_SUFFIX):
            raise
        raise DatasetFormatError(f"{path}: cannot be decompressed ({e})") from e
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


def box_problem(box):
    """Why an XYXY box cannot be a ground-truth instance, or None if it can.

    Reasons (the skip reasons of the loaders' bad-row policy): a coordinate that is not a
    finite number; ``x_max < x_min`` or ``y_max < y_min``; width or height zero. A box
    that passes has width > 0 and height > 0, so it can be matched by IoU at evaluation.
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return "box with a non-numeric coordinate"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return "box with a non-numeric coordinate"
    if x1 < x0 or y1 < y0:
        return "x_max < x_min or y_max < y_min"
    if x1 == x0 or y1 == y0:
        return "zero-area box (width or height 0)"
    return None


def clip_box(box, width, height):
    """Clip an XYXY box to the image ``[0, width] x [0, height]``."""
    x0, y0, x1, y1 = box
    return [
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    ]
