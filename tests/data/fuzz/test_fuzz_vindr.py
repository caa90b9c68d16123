"""Fuzzing of the VinDr-CXR reader (PhysioNet and Kaggle layouts): mutated annotation tables
and damaged DICOMs either load with every row accounted for, or raise a DatasetFormatError
naming the file and the place."""
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.vindr import BOX_OUTCOMES, load_vindr
from cxr_det.data.datasets.vindr_cache import SCALES_COLUMNS, build_png_cache
from cxr_det.data.datasets.vindr_annotations import ANNOTATION_ROW
from cxr_det.synthetic import make_vindr
from fuzzing import byte_edits, check_balanced, check_outcome, fuzz_settings, mutated, read_table_text, target_edits

COLUMNS = ("image_id", "rad_id", "class_name", "class_id", "x_min", "y_min", "x_max", "y_max")
LOGGERS = ("cxr_det.data.datasets.vindr", "cxr_det.data.dicom_header")


@pytest.fixture(scope="module")
def vindr(tmp_path_factory):
    """Synthetic VinDr-CXR roots (10 images, 48 px), PhysioNet and Kaggle, and their tables."""
    roots, files = {}, {}
    for layout in ("physionet", "kaggle"):
        roots[layout] = tmp_path_factory.mktemp(f"fuzz_vindr_{layout}")
        make_vindr(roots[layout], 10, seed=4, size=48, layout=layout)
    base = roots["physionet"] / "vindr-cxr"
    for name, layout, path in (
        ("physionet_train", "physionet", base / "annotations" / "annotations_train.csv"),
        ("physionet_test", "physionet", base / "annotations" / "annotations_test.csv"),
        ("kaggle_train", "kaggle", roots["kaggle"] / "vindr-cxr" / "train.csv"),
    ):
        files[name] = (layout, path, read_table_text(path))
    cache = roots["physionet"] / "png_cache"
    build_png_cache(roots["physionet"], cache, max_size=32)
    files["scales"] = ("physionet", cache / "scales.csv", read_table_text(cache / "scales.csv"))
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield roots, files
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def load(root, readers="all_readers"):
    skips = SkipLog("VinDr-CXR")
    return load_vindr(root, "all", readers=readers, classes=["all"], skip_log=skips), skips


def check_loaded(records, skips, readers):
    check_balanced(skips)
    boxes = sum(len(r["annotations"]) for r in records)
    kept = skips.outcomes[ANNOTATION_ROW][BOX_OUTCOMES[readers == "weighted_boxes_fusion"]]
    if readers == "weighted_boxes_fusion":
        assert boxes <= kept
    else:
        assert boxes == kept
    for r in records:
        for a in r["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"], a["bbox"]


@fuzz_settings(max_examples=100)
@given(target_and_edits=target_edits({name: COLUMNS for name in ("physionet_train", "physionet_test", "kaggle_train")}),
       raw=byte_edits(), readers=st.sampled_from(["all_readers", "weighted_boxes_fusion"]))
def test_mutated_annotation_tables_load_accounted_or_fail_clearly(vindr, target_and_edits, raw, readers):
    roots, files = vindr
    target, edits = target_and_edits
    layout, path, rows = files[target]
    with mutated(path, rows, edits, raw):
        kind, value = check_outcome(lambda: load(roots[layout], readers), [path])
    if kind == "loaded":
        check_loaded(*value, readers)


@fuzz_settings(max_examples=30)
@given(target_and_edits=target_edits({"scales": SCALES_COLUMNS}), raw=byte_edits())
def test_mutated_png_cache_scales_load_accounted_or_fail_clearly(vindr, target_and_edits, raw):
    """The PNG cache's scales.csv (written by tools/prepare_vindr.py, so rarely damaged by
    hand): a row with a bad size or scale is a counted skip of its image's rows."""
    roots, files = vindr
    _, path, rows = files["scales"]
    skips = SkipLog("VinDr-CXR")
    with mutated(path, rows, target_and_edits[1], raw):
        kind, value = check_outcome(
            lambda: load_vindr(roots["physionet"], "all", classes=["all"], image_cache=str(path.parent), skip_log=skips),
            [path, path.parent])
    if kind == "loaded":
        check_loaded(value, skips, "all_readers")


@fuzz_settings(max_examples=25)
@given(cut=st.floats(min_value=0.0, max_value=1.0), which=st.integers(min_value=0, max_value=100),
       garbage=st.sampled_from([b"", b"\x00" * 8, b"\xff" * 16, b"DICM", b"not a dicom"]))
def test_damaged_dicom_is_a_counted_skip(vindr, cut, which, garbage):
    """A truncated or overwritten DICOM: its image and rows are a counted skip (or, if every
    DICOM of a folder is unreadable, a DatasetFormatError naming the folder)."""
    roots, _ = vindr
    dicoms = sorted((roots["physionet"] / "vindr-cxr" / "train").glob("*.dicom"))
    path = dicoms[which % len(dicoms)]
    original = path.read_bytes()
    path.write_bytes(original[: int(len(original) * cut)] + garbage)
    try:
        kind, value = check_outcome(lambda: load(roots["physionet"]), [path, path.parent])
    finally:
        path.write_bytes(original)
    assert kind == "loaded"
    records, skips = value
    check_loaded(records, skips, "all_readers")


@pytest.mark.parametrize("layout", ["physionet", "kaggle"])
@pytest.mark.parametrize("readers", ["all_readers", "weighted_boxes_fusion"])
def test_unmutated_synthetic_root_balances(vindr, layout, readers):
    roots, files = vindr
    records, skips = load(roots[layout], readers)
    assert records and not len(skips)
    check_loaded(records, skips, readers)
    tables = [rows for name, (lay, _, rows) in files.items() if lay == layout and name != "scales"]
    assert skips.rows_read[ANNOTATION_ROW] == sum(len(rows) - 1 for rows in tables)


def test_first_row_longer_than_header_names_the_line(vindr):
    """Found by the fuzzing: pandas took the first column as the index when the first data
    row had one field more than the header, shifting every column (image ids read from the
    class names; the error then named 'Aortic enlargement.dicom'). Now the line is named."""
    from cxr_det.data.datasets.common import DatasetFormatError

    roots, files = vindr
    _, path, rows = files["kaggle_train"]
    with mutated(path, rows, [("long_row", 0, "extra")]):
        with pytest.raises(DatasetFormatError, match=r"train\.csv: cannot be parsed as CSV: line 2 has 9 fields, the header 8"):
            load(roots["kaggle"])


def test_rad_id_with_a_digit_int_rejects_sorts(vindr):
    """Found by the fuzzing: a rad_id of '²' (a digit to str.isdigit, not to int()) raised
    ValueError in the natural sort of reader ids; now it sorts as text."""
    roots, files = vindr
    _, path, rows = files["physionet_train"]
    with mutated(path, rows, [("set", 0, "rad_id", "²")]):
        records, skips = load(roots["physionet"], "weighted_boxes_fusion")
    assert any("²" in r["readers"] for r in records)
    check_loaded(records, skips, "weighted_boxes_fusion")


def test_png_cache_row_with_a_bad_size_is_a_counted_skip(vindr):
    """A scales.csv height that is not a number raised ValueError from int(); now the image
    and its rows are a counted skip."""
    roots, files = vindr
    _, path, rows = files["scales"]
    skips = SkipLog("VinDr-CXR")
    with mutated(path, rows, [("set", 0, "height", "abc")]):
        records = load_vindr(roots["physionet"], "all", classes=["all"], image_cache=str(path.parent), skip_log=skips)
    reason = next(r for r in skips.counts if r.startswith("PNG cache row with a size or scale"))
    assert skips.counts[reason] == 1
    check_loaded(records, skips, "all_readers")
