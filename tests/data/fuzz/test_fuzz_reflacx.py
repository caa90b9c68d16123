"""Fuzzing of the REFLACX reader: mutated metadata tables and ellipse CSVs either load with
every row accounted for, or raise a DatasetFormatError naming the file and the place."""
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.reflacx import load_reflacx
from cxr_det.data.datasets.reflacx_readings import ELLIPSE_ROW, METADATA_ROW
from cxr_det.formats.reflacx_format import REFLACX_ELLIPSE_COLUMNS, REFLACX_METADATA_COLUMNS
from cxr_det.synthetic import make_reflacx
from fuzzing import byte_edits, check_balanced, check_outcome, fuzz_settings, mutated, read_table_text, target_edits


@pytest.fixture(scope="module")
def reflacx(tmp_path_factory):
    """A 12-image synthetic REFLACX root (64 px), its tables read once: ``(root, {name: (path, rows)})``."""
    root = tmp_path_factory.mktemp("fuzz_reflacx")
    make_reflacx(root, 12, seed=3, size=64)
    main = root / "reflacx" / "main_data"
    ellipses = sorted(main.glob("*/anomaly_location_ellipses.csv"), key=lambda p: -p.stat().st_size)
    files = {
        "metadata_phase_3": main / "metadata_phase_3.csv",
        "metadata_phase_1": main / "metadata_phase_1.csv",
        "ellipses": ellipses[0],
        "ellipses_2": ellipses[1],
    }
    logging.getLogger("cxr_det.data.datasets.reflacx").setLevel(logging.ERROR)
    yield root, {name: (path, read_table_text(path)) for name, path in files.items()}
    logging.getLogger("cxr_det.data.datasets.reflacx").setLevel(logging.NOTSET)


def _load(root, readers, min_certainty):
    skips = SkipLog("reflacx")
    records = load_reflacx(root, "all", readers=readers, min_certainty=min_certainty, skip_log=skips, log_certainty=False)
    return records, skips


def _check_loaded(records, skips, readers):
    check_balanced(skips)
    readings = sum(len(r["reading_ids"]) for r in records)
    assert skips.outcomes[METADATA_ROW]["reading in the output"] == readings
    if readers != "mean_ellipse":  # merged ellipses give fewer annotations than rows
        kept_rows = skips.outcomes[ELLIPSE_ROW]["ellipse in the output"]
        annotations = sum(len(r["annotations"]) for r in records)
        assert kept_rows <= annotations, (kept_rows, annotations)  # one row, one or more labels
    for r in records:
        for a in r["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"], a["bbox"]
            assert a["certainty"] in (1, 2, 3, 4, 5)


# The columns the reader parses, per table.
TARGETS = {
    "metadata_phase_3": REFLACX_METADATA_COLUMNS,
    "metadata_phase_1": REFLACX_METADATA_COLUMNS,
    "ellipses": REFLACX_ELLIPSE_COLUMNS + ("Atelectasis", "Consolidation", "Pleural abnormality"),
    "ellipses_2": REFLACX_ELLIPSE_COLUMNS + ("Atelectasis", "Consolidation", "Pleural abnormality"),
}
MODES = st.sampled_from(["all_readers", "per_reading", "mean_ellipse"])


@fuzz_settings(max_examples=100)
@given(target_and_edits=target_edits(TARGETS), raw=byte_edits(), readers=MODES, min_certainty=st.sampled_from([0, 3]))
def test_mutated_tables_load_accounted_or_fail_clearly(reflacx, target_and_edits, raw, readers, min_certainty):
    root, files = reflacx
    target, edits = target_and_edits
    path, rows = files[target]
    with mutated(path, rows, edits, raw):
        kind, value = check_outcome(lambda: _load(root, readers, min_certainty), [path])
    if kind == "loaded":
        _check_loaded(*value, readers)


@pytest.mark.parametrize("readers", ["all_readers", "per_reading", "mean_ellipse"])
def test_unmutated_synthetic_root_balances(reflacx, readers):
    """The property's base case: the valid root loads, nothing skipped, every row in the ledger."""
    root, _ = reflacx
    records, skips = _load(root, readers, 0)
    assert records and not len(skips)
    _check_loaded(records, skips, readers)
    tables = sorted((root / "reflacx" / "main_data").glob("metadata_phase_*.csv"))
    assert skips.rows_read[METADATA_ROW] == sum(len(read_table_text(t)) - 1 for t in tables)


def test_ellipse_csv_that_is_not_utf8_names_file_and_line(reflacx):
    """Found by the fuzzing: a byte that is not UTF-8 in an ellipse CSV escaped as
    UnicodeDecodeError from the csv module; now a DatasetFormatError naming file and line."""
    from cxr_det.data.datasets.common import DatasetFormatError

    root, files = reflacx
    path, rows = files["ellipses"]
    with mutated(path, rows, [("set", 0, "xmin", "12")], [("garbage", 0.99, b"\xff\xfe")]):
        with pytest.raises(DatasetFormatError, match=rf"{path.name}: cannot be parsed as CSV: line {len(rows)} is not UTF-8"):
            _load(root, "all_readers", 0)
