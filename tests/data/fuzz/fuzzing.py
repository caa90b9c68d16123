"""The machinery of the fuzz tests: deterministic hypothesis settings, mutations of tables and
files, and the property every reader must have.

The property (:func:`check_outcome`): a reader given a mutated input either loads, with every
input row accounted for (in the output or in a counted, reasoned skip: the
:class:`~cxr_det.data.datasets.common.SkipLog` ledger balances), or raises
:class:`~cxr_det.data.datasets.common.DatasetFormatError` whose message names the file and
the place (line, row, column, field or tag); any other exception (``KeyError``,
``IndexError``, ``TypeError``, ``UnicodeDecodeError``, pandas' ``EmptyDataError`` /
``ParserError``, pydicom's ``InvalidDicomError``, ...) escaping from inside pandas, pydicom or
numpy fails the test.

The mutations start from a valid file (written by :mod:`cxr_det.synthetic`) and apply one to
three edits: cells (wrong types, empty, huge, negative, NaN/inf, unicode, separators and
quotes), rows (missing or extra cells, duplicated, deleted), columns (dropped, renamed,
added), and the bytes of the file (truncated mid-line, a BOM, CRLF line ends, bytes that are
not UTF-8, empty file; for ``.gz`` tables, the compressed stream truncated or corrupted).
"""
import contextlib
import csv
import gzip
import io
import os
import re
import traceback
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from cxr_det.data.datasets.common import DatasetFormatError

__all__ = [
    "fuzz_settings",
    "NASTY_CELLS",
    "csv_edits",
    "target_edits",
    "byte_edits",
    "apply_csv_edits",
    "apply_byte_edits",
    "mutated",
    "read_table_text",
    "check_outcome",
    "check_balanced",
    "LOCATION_RE",
]


def fuzz_settings(max_examples):
    """Deterministic settings (no example database, derandomized: the examples depend on the
    test's source only, so CI runs the same inputs every time), no deadline (the cores are
    shared), health checks that do not apply to file-writing tests off.

    For a deeper search by hand: ``CXR_FUZZ_SCALE=20`` multiplies ``max_examples``, and
    ``CXR_FUZZ_RANDOM=1`` draws fresh examples each run (with pytest's
    ``--hypothesis-seed=N`` to repeat one); ``--hypothesis-show-statistics`` shows the
    outcomes drawn.
    """
    scale = float(os.environ.get("CXR_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        derandomize=os.environ.get("CXR_FUZZ_RANDOM", "") != "1",
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Cell values a hand-edited or badly exported table holds.
_NASTY = [
    "", " ", "nan", "NaN", "NA", "null", "None", "inf", "-inf", "Infinity", "1e308", "1e309", "-1e309",
    "-1", "0", "-0", "0.0", "1.5", "-7.25", "9" * 40, "1e-320", "+5", " 3 ", "1_000", "0x10", "1,5",
    "abc", "True", "FALSE", "yes", "0xxY", "065Y", "-3", "١٢", "１２", "é", "\u00a0", "💥", "\u200b",
    '"', "'", "a\nb", "a,b", ";", "\t", "\\", "../../etc/passwd", "R1", "No finding", "Cardiomegaly",
    "train", "validate", "test", "Frontal", "Lateral", "AP", "PA", "Male", "Female", "Unknown",
    "1e19", str(2**63), "-21690507", "00010101", "0001-01-01 00:00:00", "-2169-05-07 13:40:51",
    "9999-12-31 23:59:59", "2169-13-45", "25:61:61",
]
# Numbers at the edges of what the readers convert (int64, float, nanosecond timestamps).
_EXTREMES = ["9" * 40, "1e308", "1e309", "inf", "-inf", "nan", "-1", "0", "1e19", str(2**63), str(2**53 + 1),
             "-21690507", "00010101", "99999999", "-0.5", "2.5"]
EXTREME_CELLS = st.sampled_from(_EXTREMES)
NASTY_CELLS = st.one_of(
    st.sampled_from(_NASTY),
    EXTREME_CELLS,
    st.text(max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

# Position draws are reduced modulo the table's size when applied, so any integer is valid.
_INDEX = st.integers(min_value=0, max_value=10_000)


def csv_edits(columns=(), max_edits=3):
    """A strategy of lists of table edits (tuples; see :func:`apply_csv_edits`).

    ``columns``: header names to aim cell edits at more often than by chance (the columns the
    reader parses); any column can still be drawn.
    """
    named = st.sampled_from(list(columns))
    column = st.one_of(named, named, _INDEX) if columns else _INDEX
    edit = st.one_of(
        st.tuples(st.just("set"), _INDEX, column, NASTY_CELLS),
        st.tuples(st.just("set"), _INDEX, column, NASTY_CELLS),
        st.tuples(st.just("set"), _INDEX, column, NASTY_CELLS),
        st.tuples(st.just("set"), _INDEX, named if columns else column, EXTREME_CELLS),
        st.tuples(st.just("short_row"), _INDEX, _INDEX),
        st.tuples(st.just("long_row"), _INDEX, NASTY_CELLS),
        st.tuples(st.just("duplicate_row"), _INDEX),
        st.tuples(st.just("delete_row"), _INDEX),
        st.tuples(st.just("blank_row"), _INDEX),
        st.tuples(st.just("drop_column"), column),
        st.tuples(st.just("rename_column"), column, NASTY_CELLS),
        st.tuples(st.just("add_column"), NASTY_CELLS, NASTY_CELLS),
        st.tuples(st.just("header_only")),
        st.tuples(st.just("no_header")),
    )
    return st.lists(edit, min_size=1, max_size=max_edits)


def target_edits(columns_by_target, max_edits=3):
    """A strategy of ``(target, [table edits])``: a target name (a key of
    ``columns_by_target``) and :func:`csv_edits` aimed at that table's parsed columns."""
    targets = sorted(columns_by_target)
    return st.sampled_from(targets).flatmap(
        lambda t: st.tuples(st.just(t), csv_edits(columns=columns_by_target[t], max_edits=max_edits))
    )


def byte_edits(gz=False):
    """A strategy of lists (0-2) of edits of the serialised file's bytes (see
    :func:`apply_byte_edits`); ``gz`` adds edits of the compressed stream."""
    edit = st.one_of(
        st.tuples(st.just("truncate"), st.floats(min_value=0.0, max_value=1.0)),
        st.tuples(st.just("bom")),
        st.tuples(st.just("crlf")),
        st.tuples(st.just("garbage"), st.floats(min_value=0.0, max_value=1.0), st.sampled_from(
            [b"\xff\xfe", b"\x00", b"\x80abc", b"\xc3", b'"', b"\n\n", b",,,,", b"\r"])),
        st.tuples(st.just("empty")),
    )
    if gz:
        edit = st.one_of(
            edit,
            st.tuples(st.just("gz_truncate"), st.floats(min_value=0.0, max_value=1.0)),
            st.tuples(st.just("gz_flip"), st.floats(min_value=0.0, max_value=1.0)),
            st.tuples(st.just("not_gzip")),
        )
    # Mostly none: a file whose bytes are broken fails as a whole, before its cells are read.
    return st.one_of(st.just([]), st.just([]), st.lists(edit, min_size=1, max_size=2))


def _column_index(header, column):
    if isinstance(column, str):
        return header.index(column) if column in header else None
    return column % len(header) if header else None


def apply_csv_edits(rows, edits):
    """``rows`` (header first, as :mod:`csv` reads them) with ``edits`` applied, a new list.

    Edits: ``("set", row, column, value)`` (a data row's cell; the row is padded if short),
    ``("short_row", row, keep)`` (cells cut after ``keep`` mod length), ``("long_row", row,
    value)`` (an extra cell), ``("duplicate_row", row)``, ``("delete_row", row)``,
    ``("blank_row", row)`` (an empty line inserted), ``("drop_column", column)``,
    ``("rename_column", column, name)``, ``("add_column", name, value)``,
    ``("header_only",)`` (data rows removed), ``("no_header",)`` (header removed).
    Row numbers count data rows (mod their number); a column is an index (mod width) or a name.
    """
    rows = [list(r) for r in rows]
    for edit in edits:
        kind, args = edit[0], edit[1:]
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        if kind in ("set", "short_row", "long_row", "duplicate_row", "delete_row", "blank_row") and not body:
            continue
        if kind == "set":
            r, c, value = args
            i = r % len(body) + 1
            j = _column_index(header, c)
            if j is None:
                continue
            rows[i] += [""] * (j + 1 - len(rows[i]))
            rows[i][j] = value
        elif kind == "short_row":
            i = args[0] % len(body) + 1
            rows[i] = rows[i][: args[1] % max(1, len(rows[i]))]
        elif kind == "long_row":
            rows[args[0] % len(body) + 1].append(args[1])
        elif kind == "duplicate_row":
            i = args[0] % len(body) + 1
            rows.insert(i, list(rows[i]))
        elif kind == "delete_row":
            del rows[args[0] % len(body) + 1]
        elif kind == "blank_row":
            rows.insert(args[0] % len(body) + 1, [])
        elif kind == "drop_column":
            j = _column_index(header, args[0])
            if j is not None:
                rows = [r[:j] + r[j + 1:] for r in rows]
        elif kind == "rename_column":
            j = _column_index(header, args[0])
            if j is not None:
                rows[0][j] = args[1]
        elif kind == "add_column":
            rows = [rows[0] + [args[0]]] + [r + [args[1]] for r in rows[1:]]
        elif kind == "header_only":
            rows = rows[:1]
        elif kind == "no_header":
            rows = rows[1:]
        else:
            raise ValueError(f"unknown edit {edit!r}")
    return rows


def serialise(rows):
    """UTF-8 CSV bytes of ``rows`` (``\\n`` line ends, :mod:`csv` quoting)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8", errors="surrogatepass")


def apply_byte_edits(data, edits, gz=False):
    """The bytes of a file: ``data`` (uncompressed CSV) with ``edits`` applied, gzipped when
    ``gz``. Edits: ``("truncate", fraction)`` (cut mid-line), ``("bom",)``, ``("crlf",)``,
    ``("garbage", fraction, bytes)`` (bytes inserted), ``("empty",)``; on the compressed
    stream: ``("gz_truncate", fraction)``, ``("gz_flip", fraction)`` (one byte inverted),
    ``("not_gzip",)`` (the plain bytes under the ``.gz`` name)."""
    plain = [e for e in edits if not e[0].startswith("gz_") and e[0] != "not_gzip"]
    for edit in plain:
        kind = edit[0]
        if kind == "truncate":
            data = data[: int(len(data) * edit[1])]
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif kind == "garbage":
            at = int(len(data) * edit[1])
            data = data[:at] + edit[2] + data[at:]
        elif kind == "empty":
            data = b""
    if not gz:
        return data
    if any(e[0] == "not_gzip" for e in edits):
        return data
    packed = gzip.compress(data, mtime=0)
    for edit in edits:
        if edit[0] == "gz_truncate":
            packed = packed[: int(len(packed) * edit[1])]
        elif edit[0] == "gz_flip" and packed:
            at = min(int(len(packed) * edit[1]), len(packed) - 1)
            packed = packed[:at] + bytes([packed[at] ^ 0xFF]) + packed[at + 1:]
    return packed


def read_table_text(path):
    """The rows of a valid CSV (``.csv`` or ``.csv.gz``), header first."""
    path = Path(path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


@contextlib.contextmanager
def mutated(path, rows, csv_edit_list=(), byte_edit_list=()):
    """Write ``rows`` with the edits over ``path`` for the ``with`` block, then restore the file."""
    path = Path(path)
    original = path.read_bytes()
    gz = path.name.endswith(".gz")
    data = apply_byte_edits(serialise(apply_csv_edits(rows, csv_edit_list)), byte_edit_list, gz=gz)
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.write_bytes(original)


# Where an error message can point inside a file: a line or row, a column or field, a DICOM
# tag; or what is wrong with the file as a whole.
LOCATION_RE = re.compile(
    r"\blines? \[?\d+|\brow \d+|\bcolumns?\b|\bfield|\btags?\b|\bheader\b|\([0-9A-F]{4},\s*[0-9A-F]{4}\)|"
    r"\bempty\b|cannot be (parsed|decompressed|read)|not a DICOM|file not found|Rows/Columns",
    re.IGNORECASE,
)


def check_outcome(load, files):
    """Run ``load()`` and classify its outcome: ``("loaded", value)`` or ``("error", exc)``.

    Fails the test (AssertionError with the traceback) when ``load`` raises anything but a
    :class:`DatasetFormatError`, or one whose message names none of ``files`` (their names) or
    no place in it (:data:`LOCATION_RE`).
    """
    names = [Path(f).name for f in files]
    try:
        value = load()
    except DatasetFormatError as e:
        message = str(e)
        assert any(name in message for name in names), f"error names none of {names}: {message}"
        assert LOCATION_RE.search(message), f"error names no line/row/column/field: {message}"
        event("error: " + re.sub(r"[^a-z ]", "", message.split(": ", 1)[-1][:30].lower()).strip())
        return "error", e
    except Exception as e:  # noqa: BLE001  (the property: nothing else may escape)
        raise AssertionError(
            f"uncaught {type(e).__name__} (not a DatasetFormatError naming the file):\n{traceback.format_exc()}"
        ) from e
    event("loaded")
    return "loaded", value


def check_balanced(skips):
    """Every input row a load read is accounted for: the ledger of ``skips`` (a SkipLog) has,
    for each kind of row, as many outcomes (output or counted skip) as rows read."""
    unbalanced = skips.unbalanced()
    assert not unbalanced, f"rows read != rows accounted for: {unbalanced}\n{skips.ledger_table()}"
