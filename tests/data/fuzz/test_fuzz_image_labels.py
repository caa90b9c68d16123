"""Fuzzing of the image-label readers: MIMIC-CXR-JPG label, split and metadata tables, and
VinDr-CXR's image_labels_{train,test}.csv. Each mutated table either loads, with records of
the documented types, or raises a DatasetFormatError naming the file and the place."""
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.mimic_cxr_labels import load_mimic_cxr_labels
from cxr_det.data.datasets.vindr_image_labels import load_vindr_image_labels
from cxr_det.formats.chexpert_format import CHEXPERT_COMPETITION_LABELS
from cxr_det.synthetic.image_label_writers import make_vindr_image_labels
from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels
from fuzzing import byte_edits, check_outcome, fuzz_settings, mutated, read_table_text, target_edits

LOGGERS = ("cxr_det.data.datasets.mimic_cxr_labels", "cxr_det.data.datasets.vindr_image_labels",
           "cxr_det.data.datasets.observation_labels", "cxr_det.data.dicom_header")
MIMIC_TABLES = {
    "chexpert": ("mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz", ("subject_id", "study_id") + CHEXPERT_COMPETITION_LABELS),
    "split": ("mimic-cxr-jpg/mimic-cxr-2.0.0-split.csv.gz", ("dicom_id", "study_id", "subject_id", "split")),
    "metadata": ("mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", ("dicom_id", "ViewPosition", "StudyDate", "StudyTime")),
}
VINDR_TABLES = {
    "train": ("vindr-cxr/annotations/image_labels_train.csv", ("image_id", "rad_id", "Aortic enlargement", "No finding")),
    "test": ("vindr-cxr/annotations/image_labels_test.csv", ("image_id", "Aortic enlargement", "No finding")),
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    mimic, vindr = tmp_path_factory.mktemp("fuzz_mimic_labels"), tmp_path_factory.mktemp("fuzz_vindr_labels")
    make_mimic_cxr_labels(mimic, 6, seed=9, size=32)
    make_vindr_image_labels(vindr, 8, seed=9, size=32)
    files = {("mimic", name): (mimic / rel, read_table_text(mimic / rel)) for name, (rel, _) in MIMIC_TABLES.items()}
    files.update({("vindr", name): (vindr / rel, read_table_text(vindr / rel)) for name, (rel, _) in VINDR_TABLES.items()})
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield {"mimic": mimic, "vindr": vindr}, files
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def check_records(records, n_labels):
    for r in records:
        assert len(r["labels"]) == len(r["label_weights"]) == n_labels
        assert set(r["labels"]) <= {0.0, 1.0}
        assert isinstance(r["image_id"], int)
        if r["dataset"] == "vindr":
            assert isinstance(r["height"], int) and isinstance(r["width"], int) and r["height"] > 0 and r["width"] > 0
        else:
            assert isinstance(r["subject_id"], int) and isinstance(r["study_id"], int)


@fuzz_settings(max_examples=40)
@given(target_and_edits=target_edits({name: cols for name, (_, cols) in MIMIC_TABLES.items()}), raw=byte_edits(gz=True),
       views=st.sampled_from(["frontal", "all"]), max_studies=st.sampled_from([None, 1]))
def test_mutated_mimic_label_tables_load_or_fail_clearly(roots, target_and_edits, raw, views, max_studies):
    dirs, files = roots
    target, edits = target_and_edits
    path, rows = files[("mimic", target)]
    with mutated(path, rows, edits, raw):
        kind, records = check_outcome(
            lambda: load_mimic_cxr_labels(dirs["mimic"], "all", views=views, max_studies_per_patient=max_studies,
                                          skip_log=SkipLog("MIMIC-CXR labels")), [path])
    if kind == "loaded":
        check_records(records, len(CHEXPERT_COMPETITION_LABELS))


@fuzz_settings(max_examples=40)
@given(target_and_edits=target_edits({name: cols for name, (_, cols) in VINDR_TABLES.items()}), raw=byte_edits(),
       readers=st.sampled_from(["majority", "any"]))
def test_mutated_vindr_image_label_tables_load_or_fail_clearly(roots, target_and_edits, raw, readers):
    dirs, files = roots
    target, edits = target_and_edits
    path, rows = files[("vindr", target)]
    with mutated(path, rows, edits, raw):
        kind, records = check_outcome(
            lambda: load_vindr_image_labels(dirs["vindr"], "all", labels=["Aortic enlargement", "No finding"],
                                            readers=readers, skip_log=SkipLog("VinDr-CXR image labels")), [path])
    if kind == "loaded":
        check_records(records, 2)


def test_split_table_subject_id_that_is_not_a_number_is_a_counted_skip(roots):
    """Found by the fuzzing: a split-table subject_id of 'abc' raised ValueError from
    astype(int64) when the records were made; now the row is a counted skip."""
    dirs, files = roots
    path, rows = files[("mimic", "split")]
    skips = SkipLog("MIMIC-CXR labels")
    with mutated(path, rows, [("set", 0, "subject_id", "abc")]):
        records = load_mimic_cxr_labels(dirs["mimic"], "all", views="all", skip_log=skips)
    assert skips.counts["subject_id or study_id not a whole number in mimic-cxr-2.0.0-split.csv.gz"] == 1
    check_records(records, len(CHEXPERT_COMPETITION_LABELS))


def test_image_label_cell_inf_is_a_counted_skip(roots):
    """Found by the fuzzing: a label cell 'inf' raised IntCastingNaNError; now the row is a
    counted skip ('label value not 0 or 1') as any other bad cell."""
    dirs, files = roots
    path, rows = files[("vindr", "train")]
    skips = SkipLog("VinDr-CXR image labels")
    with mutated(path, rows, [("set", 0, "Aortic enlargement", "inf")]):
        records = load_vindr_image_labels(dirs["vindr"], "all", labels=["Aortic enlargement"], skip_log=skips)
    assert skips.counts["label value not 0 or 1"] == 1
    check_records(records, 1)
