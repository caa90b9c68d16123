"""Fuzzing of the CheXpert reader: mutated train.csv / valid.csv either load with every row
accounted for, or raise a DatasetFormatError naming the file and the line or column."""
import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from cxr_det.data.datasets.chexpert import TABLE_ROW, load_chexpert
from cxr_det.data.datasets.common import SkipLog
from cxr_det.formats.chexpert_format import CHEXPERT_COMPETITION_LABELS, CHEXPERT_META_COLUMNS
from cxr_det.synthetic.chexpert_writer import make_chexpert
from fuzzing import byte_edits, check_balanced, check_outcome, fuzz_settings, mutated, read_table_text, target_edits

LOGGERS = ("cxr_det.data.datasets.chexpert", "cxr_det.data.datasets.observation_labels")


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    """A synthetic CheXpert-v1.0-small (8 training patients, 32 px) and its two tables."""
    root = tmp_path_factory.mktemp("fuzz_chexpert")
    make_chexpert(root, 8, seed=6, size=32)
    folder = root / "chexpert" / "CheXpert-v1.0-small"
    files = {name: (folder / f"{name}.csv", read_table_text(folder / f"{name}.csv")) for name in ("train", "valid")}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield root, files
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def load(root, views, max_studies):
    skips = SkipLog("CheXpert")
    records = load_chexpert(root, "all", views=views, max_studies_per_patient=max_studies, uncertainty="ignore",
                            skip_log=skips)
    return records, skips


def check_loaded(records, skips):
    check_balanced(skips)
    assert skips.outcomes[TABLE_ROW]["image in the output"] == len(records)
    for r in records:
        assert len(r["labels"]) == len(r["label_weights"]) == len(CHEXPERT_COMPETITION_LABELS)
        assert set(r["labels"]) <= {0.0, 1.0} and set(r["label_weights"]) <= {0.0, 1.0}
        age = r["clinical"]["age"]
        assert age is None or (math.isfinite(age) and age > 0), age
        assert r["clinical"]["sex"] in (None, "Male", "Female")
        assert isinstance(r["study_id"], int)


@fuzz_settings(max_examples=60)
@given(target_and_edits=target_edits({t: CHEXPERT_META_COLUMNS + CHEXPERT_COMPETITION_LABELS for t in ("train", "valid")}),
       raw=byte_edits(), views=st.sampled_from(["frontal", "all", "ap"]), max_studies=st.sampled_from([None, 1]))
def test_mutated_tables_load_accounted_or_fail_clearly(chexpert, target_and_edits, raw, views, max_studies):
    root, files = chexpert
    target, edits = target_and_edits
    path, rows = files[target]
    with mutated(path, rows, edits, raw):
        kind, value = check_outcome(lambda: load(root, views, max_studies), [path])
    if kind == "loaded":
        check_loaded(*value)


@pytest.mark.parametrize("value", ["study١", "study99999999999999999999999", "study"])
def test_odd_study_numbers_are_counted_path_skips(chexpert, value):
    """A Path whose study number is not ASCII digits or does not fit an int64 is a counted skip
    (they used to raise ValueError/OverflowError from pandas' astype(int))."""
    root, files = chexpert
    path, rows = files["train"]
    bad = rows[1][0].replace("study1", value)
    with mutated(path, rows, [("set", 0, "Path", bad)]):
        records, skips = load(root, "all", None)
    assert skips.counts["Path not in the CheXpert layout"] == 1
    check_loaded(records, skips)


def test_unmutated_synthetic_root_balances(chexpert):
    root, files = chexpert
    records, skips = load(root, "all", None)
    assert records and not len(skips)
    check_loaded(records, skips)
    assert skips.rows_read[TABLE_ROW] == sum(len(rows) - 1 for _, rows in files.values()) == len(records)
