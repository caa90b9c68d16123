"""Helpers shared by the dataset registrars: dataset root, table paths and CSV reading, class sets, skips."""
import csv
import gzip
import io
import logging
import math
import os
import warnings
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


def first_undecodable_line(path, encoding="utf-8-sig"):
    """The number (1-based) of the first line of a (possibly gzipped) table that is not text
    in ``encoding``, or None (also when the file cannot be read)."""
    try:
        opener = gzip.open if Path(path).name.endswith(GZIP_SUFFIX) else open
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8" if number > 1 else encoding)
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _first_long_line(path):
    """``(line number, fields, header fields)`` of the first row of a table holding a
    non-empty field beyond the header's, or None."""
    try:
        with open_table_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for row in reader:
                if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                    return reader.line_num, len(row), len(header)
    except (csv.Error, UnicodeDecodeError, *_GZIP_ERRORS):
        return None
    return None


def read_csv(path, required_columns=(), **kwargs) -> pd.DataFrame:
    """Read a CSV, plain or gzipped (see :func:`find_table`), as a DataFrame.

    Fails with :class:`DatasetFormatError` naming the file when it is missing (both names
    looked for), cannot be parsed or decompressed, has a row with more (non-empty) fields
    than its header (naming the line), or lacks a column of ``required_columns``.

    The first column is never taken as the index (``index_col=False`` unless given): pandas
    would otherwise make it the index when the first data row has one field more than the
    header, shifting every column by one (image ids read as reader ids) without a word; a
    trailing empty field (``a,b,c,``) is still read as no field.
    """
    path = find_table(path)
    kwargs.setdefault("index_col", False)
    try:
        with warnings.catch_warnings():
            # pandas warns, and drops the extra fields, when a row is longer than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, **kwargs)
    except pd.errors.ParserWarning as e:
        long = _first_long_line(path)
        where = f"line {long[0]} has {long[1]} fields, the header {long[2]}" if long else "a row is longer than the header"
        raise DatasetFormatError(f"{path}: cannot be parsed as CSV: {where} ({e})") from e
    except UnicodeDecodeError as e:
        line = first_undecodable_line(path)
        where = f"line {line} is not UTF-8 text" if line else "not UTF-8 text"
        raise DatasetFormatError(f"{path}: cannot be parsed as CSV: {where} ({e})") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
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
    """Counts rows or records skipped while loading a dataset, by reason, and reports them once;
    and keeps the ledger of where every input row went.

    ``skip(reason, where)`` records one skip; ``report()`` logs one warning listing each
    reason with its count and the first few places it happened.

    The ledger makes a conversion's accounting checkable: a loader declares the rows it reads
    of each kind (``read(unit, rows)``, e.g. ``"annotation row"``) and the outcome of every
    one of them: an output or another outcome that is not a fault (``account(unit, outcome,
    rows)``, e.g. "box in the output", "No finding row", "image of another split"), or a
    counted skip (``skip(reason, where, unit=unit, rows=rows)``; ``rows`` lets one skipped item,
    such as an image without its file, stand for all its rows). :meth:`unbalanced` lists the
    kinds whose outcomes do not add up to the rows read (none, for a correct loader);
    :meth:`ledger_rows` is the table a conversion summary prints. Skips without ``unit`` are
    counted as before and stay outside the ledger.
    """

    SKIPPED = "skipped: "

    def __init__(self, dataset: str, examples: int = 3):
        self.dataset = dataset
        self.examples = examples
        self.counts = Counter()
        self.where = defaultdict(list)
        self.rows_read = Counter()
        self.outcomes = defaultdict(Counter)

    def skip(self, reason: str, where: str = "", *, unit: str = None, rows: int = 1) -> None:
        self.counts[reason] += 1
        if where and len(self.where[reason]) < self.examples:
            self.where[reason].append(where)
        if unit is not None:
            self.outcomes[unit][self.SKIPPED + reason] += int(rows)

    def read(self, unit: str, rows: int) -> None:
        """Declare ``rows`` input rows of kind ``unit`` read (each must get one outcome)."""
        self.rows_read[unit] += int(rows)
        self.outcomes[unit]  # noqa: B018  (a kind read with no outcome yet is listed)

    def account(self, unit: str, outcome: str, rows: int = 1) -> None:
        """Record that ``rows`` input rows of kind ``unit`` ended in ``outcome`` (not a skip)."""
        if rows:
            self.outcomes[unit][outcome] += int(rows)

    def __len__(self):
        return sum(self.counts.values())

    def as_rows(self):
        """[(reason, count)] sorted by count, for summary tables."""
        return self.counts.most_common()

    def unbalanced(self) -> dict:
        """``{unit: (rows read, rows with an outcome)}`` for the kinds where the two differ."""
        out = {}
        for unit in sorted(set(self.rows_read) | set(self.outcomes)):
            accounted = sum(self.outcomes[unit].values())
            if accounted != self.rows_read[unit]:
                out[unit] = (self.rows_read[unit], accounted)
        return out

    def ledger_rows(self):
        """``[(unit, outcome, rows)]``: per kind of row, a ``"read"`` line, then each outcome
        (outputs and other outcomes first, by count, then ``"skipped: <reason>"`` lines)."""
        rows = []
        for unit in sorted(set(self.rows_read) | set(self.outcomes)):
            rows.append((unit, "read", self.rows_read[unit]))
            outcomes = self.outcomes[unit].most_common()
            rows += [(unit, o, n) for o, n in outcomes if not o.startswith(self.SKIPPED)]
            rows += [(unit, o, n) for o, n in outcomes if o.startswith(self.SKIPPED)]
        return rows

    def ledger_table(self) -> str:
        """:meth:`ledger_rows` as text, each kind ending with its total of outcomes."""
        lines = []
        for unit, outcome, n in self.ledger_rows():
            if outcome == "read":
                total = sum(self.outcomes[unit].values())
                lines.append(f"{unit}: {n} read, {total} accounted for")
            else:
                lines.append(f"  {n:>8}  {outcome}")
        return "\n".join(lines)

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
