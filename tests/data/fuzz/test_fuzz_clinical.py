"""Fuzzing of the clinical tables: the MIMIC-IV-ED / MIMIC-IV / MIMIC-CXR-JPG join with
mutated (gzipped) tables, a user CSV, and the cleaning of raw values (triage text, units,
huge and unicode values). Each table either loads, with records of the documented types
that the featurizer can clean, or raises a DatasetFormatError naming the file and the place."""
import logging
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxr_det.data.clinical.cleaning import FEATURE_RANGES, clean_category, clean_numeric, parse_number
from cxr_det.data.clinical.features import ClinicalFeaturizer
from cxr_det.data.clinical.tables import MATCH_KINDS, TRIAGE_FIELDS, load_clinical_csv, load_reflacx_clinical
from cxr_det.data.values import NUMBER_EVENTS
from cxr_det.data.values import parse_number as parse_value
from cxr_det.synthetic import make_reflacx
from fuzzing import NASTY_CELLS, byte_edits, check_outcome, csv_edits, fuzz_settings, mutated, read_table_text, target_edits

LOGGERS = ("cxr_det.data.clinical.tables", "cxr_det.data.clinical.features")
TABLES = {
    "triage": "mimic-iv-ed/ed/triage.csv.gz",
    "edstays": "mimic-iv-ed/ed/edstays.csv.gz",
    "patients": "mimic-iv/hosp/patients.csv.gz",
    "metadata": "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz",
}
# The columns the join parses, per table.
COLUMNS = {
    "triage": ("subject_id", "stay_id") + TRIAGE_FIELDS,
    "edstays": ("subject_id", "stay_id", "intime", "outtime", "gender"),
    "patients": ("subject_id", "gender", "anchor_age", "anchor_year"),
    "metadata": ("dicom_id", "subject_id", "StudyDate", "StudyTime"),
}
CLEANING_EVENTS = set(NUMBER_EVENTS) | {"celsius_to_fahrenheit", "out_of_range", "clipped"}


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    """A synthetic REFLACX root (12 images) with its gzipped MIMIC tables, read once."""
    root = tmp_path_factory.mktemp("fuzz_clinical")
    make_reflacx(root, 12, seed=8, size=48)
    files = {name: (root / rel, read_table_text(root / rel)) for name, rel in TABLES.items()}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield root, files
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def check_records(table):
    for key, record in table.items():
        assert isinstance(key, str) and key
        for name in TRIAGE_FIELDS:
            value = record[name]
            assert isinstance(value, (str, int, float, np.number)) and not isinstance(value, bool), (name, value)
        assert isinstance(record["age"], float)
        assert record["gender"] is None or isinstance(record["gender"], str)
        assert record["match"] in MATCH_KINDS
        assert record["stay_id"] is None or isinstance(record["stay_id"], int)
    featurizer = ClinicalFeaturizer()
    records = list(table.values())
    if records:
        featurizer.fit(records)
        numeric, missing, categories = (np.asarray(a) for a in featurizer.transform_many(records)[:3])
        assert np.isfinite(numeric).all() and set(np.unique(missing)) <= {0.0, 1.0}
        assert (categories >= 0).all()


@fuzz_settings(max_examples=30)
@given(target_and_edits=target_edits(COLUMNS), raw=byte_edits(gz=True))
def test_mutated_mimic_tables_join_or_fail_clearly(mimic, target_and_edits, raw):
    root, files = mimic
    target, edits = target_and_edits
    path, rows = files[target]
    with mutated(path, rows, edits, raw):
        kind, table = check_outcome(lambda: load_reflacx_clinical(root), [path])
    if kind == "loaded":
        check_records(table)


@fuzz_settings(max_examples=40)
@given(edits=csv_edits(columns=("dicom_id", "age", "temperature")), raw=byte_edits(gz=False))
def test_mutated_user_csv_loads_or_fails_clearly(tmp_path_factory, edits, raw):
    path = tmp_path_factory.getbasetemp() / "user_clinical.csv"
    rows = [["dicom_id", "age", "temperature", "gender"], ["a1", "65", "98.6", "M"], ["a2", "40", "37.5", "F"],
            ["a3", "", "unable", ""]]
    path.write_text("")
    with mutated(path, rows, edits, raw):
        kind, table = check_outcome(lambda: load_clinical_csv(path), [path])
    if kind == "loaded":
        featurizer = ClinicalFeaturizer(numeric=["age", "temperature"], categorical=["gender"])
        records = list(table.values())
        if records:
            featurizer.fit(records)
            numeric = np.asarray(featurizer.transform_many(records)[0])
            assert np.isfinite(numeric).all()


RAW_VALUES = st.one_of(
    NASTY_CELLS,
    st.none(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=6),
    st.sampled_from(["8-9", "8 - 9", "8–9", "8 to 9", "10+", "9" * 400 + "-1", "1e999 to 2", "9" * 400 + "+", "38.6"]),
)


@fuzz_settings(max_examples=300)
@given(feature=st.sampled_from(sorted(FEATURE_RANGES) + ["extra"]), value=RAW_VALUES)
def test_cleaning_returns_a_finite_number_or_nan(feature, value):
    v, events = clean_numeric(feature, value)
    assert isinstance(v, float) and (math.isnan(v) or math.isfinite(v)), v
    assert set(events) <= CLEANING_EVENTS, events
    if feature in FEATURE_RANGES and not math.isnan(v):
        low, high, _ = FEATURE_RANGES[feature]
        assert low <= v <= high
    number, event = parse_number(value)
    assert math.isnan(number) or math.isfinite(number)
    number, event = parse_value(value)
    assert number is None or math.isfinite(number)
    category = clean_category("gender", value)
    assert category is None or (isinstance(category, str) and category.strip() == category and category)


def test_huge_integers_and_ranges_are_non_numeric_not_overflow():
    """Cases the fuzzing found: Python ints beyond float range raised OverflowError from
    ``float()``, and a range whose end overflows gave inf, not a finite number."""
    assert parse_value(10**400) == (None, "non_numeric")
    assert parse_value("9" * 400 + "-1", text_forms=True) == (None, "non_numeric")
    assert parse_value("9" * 400 + "+", text_forms=True) == (None, "non_numeric")
    assert parse_value("8-9", text_forms=True) == (8.5, "range_mean")


@pytest.mark.parametrize("target, column, value", [
    ("edstays", "subject_id", "9" * 40),       # TypeError: cannot safely cast float64 to int64
    ("triage", "stay_id", "1e309"),            # OverflowError: cannot convert float infinity to integer
    ("metadata", "StudyDate", "-21690507"),    # OutOfBoundsDatetime (year -2169)
    ("edstays", "intime", "0001-01-01 00:00:00"),
])
def test_ids_and_dates_beyond_int64_and_timestamps_read_as_invalid(mimic, target, column, value):
    """Found by the fuzzing: such cells escaped from pandas; now an id beyond 2**53 or a date
    outside pandas' nanosecond timestamps is invalid, like any other bad cell (a counted skip
    of the stay, no match for the image)."""
    root, files = mimic
    path, rows = files[target]
    with mutated(path, rows, [("set", 0, column, value)]):
        table = load_reflacx_clinical(root)
    check_records(table)
