"""VinDr-CXR image-level labels: reader rules, abnormal task (PhysioNet and Kaggle), splits, bad input.

The fixtures spell the PhysioNet v1.0.0 layout out by hand (not from cxr_det.formats):
``annotations/image_labels_train.csv`` with ``image_id, rad_ID`` and 0/1 label columns in an
order of their own, ``image_labels_test.csv`` without a reader column and with the
``Other disease`` spelling, DICOMs under ``train/`` and ``test/``.
"""
import hashlib
import math

import numpy as np
import pytest

from cxr_det.data.clinical.tables import vindr_clinical_from_dicom
from cxr_det.data.datasets.common import DatasetFormatError, SkipLog
from cxr_det.data.datasets.vindr import is_val_image
from cxr_det.data.datasets.vindr_image_labels import load_vindr_image_labels, register_vindr_image_labels
from cxr_det.synthetic.dicom_writer import write_dicom
from detectron2.data import DatasetCatalog, MetadataCatalog
from helpers import write_csv


def md5(name):
    return hashlib.md5(name.encode()).hexdigest()


A, B, C, D, T1, T2 = (md5(x) for x in "abcdeT")
LOCAL = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion",
]
GLOBAL_TRAIN = ["COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding"]
GLOBAL_TEST = ["COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other disease", "No finding"]
# (image, reader, positive labels)
TRAIN = [
    (A, "R1", {"Cardiomegaly"}),
    (A, "R2", {"Cardiomegaly", "Pneumonia"}),
    (A, "R3", {"No finding"}),
    (B, "R1", {"No finding"}),
    (B, "R4", {"No finding"}),
    (B, "R5", {"No finding"}),
    (C, "R1", {"Aortic enlargement"}),  # four readers: 2 of 4 is not a majority
    (C, "R2", {"Other diseases"}),
    (C, "R3", {"No finding"}),
    (C, "R6", {"No finding"}),
    (D, "R1", {"No finding"}),  # no DICOM for D
    (D, "R2", {"No finding"}),
    (D, "R3", {"No finding"}),
]
TEST = [(T1, {"Pneumonia", "Other disease"}), (T2, {"No finding"})]
AGES = {A: "065Y", B: None, C: "000Y", T1: "040Y", T2: "030Y"}


def write_images(base):
    for image_id, age in AGES.items():
        folder = "test" if image_id in (T1, T2) else "train"
        pixels = (np.add.outer(np.arange(40), np.arange(30)) * 8).astype(np.uint16)
        write_dicom(base / folder / f"{image_id}.dicom", pixels, bits_stored=12, patient_age=age, patient_sex="F")


def make_physionet(root, train=TRAIN, extra_train_rows=()):
    base = root / "vindr-cxr"
    labels = LOCAL + GLOBAL_TRAIN
    rows = [[i, r] + [int(x in pos) for x in labels] for i, r, pos in train] + list(extra_train_rows)
    write_csv(base / "annotations" / "image_labels_train.csv", ["image_id", "rad_ID"] + labels, rows)
    test_labels = LOCAL + GLOBAL_TEST
    write_csv(base / "annotations" / "image_labels_test.csv", ["image_id"] + test_labels,
              [[i] + [int(x in pos) for x in test_labels] for i, pos in TEST])
    write_images(base)
    return root


@pytest.fixture
def physionet(tmp_path):
    return make_physionet(tmp_path)


def by_id(records):
    return {r["vindr_image_id"]: r for r in records}


def positives(record, labels):
    return {name for name, v in zip(labels, record["labels"]) if v == 1.0}


ALL = LOCAL + GLOBAL_TRAIN
SELECTED = ["Cardiomegaly", "Aortic enlargement", "Pneumonia", "Other diseases", "No finding"]


def test_majority_and_any(physionet):
    skips = SkipLog("test")
    major = by_id(load_vindr_image_labels(physionet, "all", labels=SELECTED, readers="majority", val_fraction=0.0, skip_log=skips))
    anyp = by_id(load_vindr_image_labels(physionet, "all", labels=SELECTED, readers="any", val_fraction=0.0))
    assert sorted(major) == sorted([A, B, C, T1, T2])
    assert positives(major[A], SELECTED) == {"Cardiomegaly"}
    assert positives(anyp[A], SELECTED) == {"Cardiomegaly", "Pneumonia", "No finding"}
    assert positives(major[B], SELECTED) == positives(anyp[B], SELECTED) == {"No finding"}
    assert positives(major[C], SELECTED) == set()  # 2 of 4 readers is not strictly more than half
    assert positives(anyp[C], SELECTED) == {"Aortic enlargement", "Other diseases", "No finding"}
    # the test file's "Other disease" column is read as "Other diseases"; one consensus row
    assert positives(major[T1], SELECTED) == positives(anyp[T1], SELECTED) == {"Pneumonia", "Other diseases"}
    assert major[A]["readers"] == ["R1", "R2", "R3"] and major[T1]["readers"] == ["consensus"]
    assert major[A]["label_weights"] == [1.0] * 5
    assert skips.counts == {"DICOM file missing": 1}


def test_default_labels_are_all_28_in_schema_order(physionet):
    records = load_vindr_image_labels(physionet, "test")
    assert len(records[0]["labels"]) == 28
    t1 = by_id(records)[T1]
    assert positives(t1, ALL) == {"Pneumonia", "Other diseases"}


def test_abnormal_task(physionet):
    major = by_id(load_vindr_image_labels(physionet, "all", task="abnormal", val_fraction=0.0))
    anyp = by_id(load_vindr_image_labels(physionet, "all", task="abnormal", readers="any", val_fraction=0.0))
    # abnormal when more than half of the readers reported a finding (C: 2 of 4 is not)
    assert {k: r["label"] for k, r in major.items()} == {A: 1, B: 0, C: 0, T1: 1, T2: 0}
    # any: abnormal as soon as one reader reported a finding
    assert {k: r["label"] for k, r in anyp.items()} == {A: 1, B: 0, C: 1, T1: 1, T2: 0}
    assert "labels" not in major[A]


def test_clinical_from_dicom_header(physionet):
    records = by_id(load_vindr_image_labels(physionet, "all", val_fraction=0.0))
    for image_id, record in records.items():
        expected = vindr_clinical_from_dicom(record["file_name"])
        got = record["clinical"]
        assert got["gender"] == expected["gender"] == "F"
        assert got["patient_age_raw"] == expected["patient_age_raw"]
        assert (math.isnan(got["age"]) and math.isnan(expected["age"])) or got["age"] == expected["age"]
    assert records[A]["clinical"]["age"] == 65.0
    assert math.isnan(records[B]["clinical"]["age"]) and math.isnan(records[C]["clinical"]["age"])
    assert (records[A]["height"], records[A]["width"]) == (40, 30)


def test_splits_partition_without_leakage(physionet):
    fraction = 0.8  # C (and D, without a DICOM) in val; A and B in train
    parts = {s: load_vindr_image_labels(physionet, s, val_fraction=fraction) for s in ("train", "val", "test", "all")}
    ids = {s: {r["vindr_image_id"] for r in recs} for s, recs in parts.items()}
    assert not ids["train"] & ids["val"] and not (ids["train"] | ids["val"]) & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == ids["all"] == {A, B, C, T1, T2}
    assert ids["test"] == {T1, T2}
    for image_id in (A, B, C):
        assert (image_id in ids["val"]) == is_val_image(image_id, fraction)
    assert ids["val"] == {C} and ids["train"] == {A, B}
    assert all(r["split"] == s for s in ("train", "val", "test") for r in parts[s])
    assert [r["image_id"] for r in parts["all"]] == list(range(5))


def test_bad_label_value_and_repeated_row_are_counted(tmp_path):
    labels = LOCAL + GLOBAL_TRAIN
    bad = [B, "R7"] + ["2" if x == "Cardiomegaly" else 0 for x in labels]
    blank = [B, "R8"] + ["" if x == "Edema" else 0 for x in labels]
    repeat = [B, "R1"] + [int(x == "Cardiomegaly") for x in labels]
    root = make_physionet(tmp_path, extra_train_rows=[bad, blank, repeat])
    skips = SkipLog("test")
    records = by_id(load_vindr_image_labels(root, "train", val_fraction=0.0, skip_log=skips))
    assert skips.counts == {"label value not 0 or 1": 2, "repeated (image_id, reader) row; first kept": 1, "DICOM file missing": 1}
    assert records[B]["readers"] == ["R1", "R4", "R5"]
    assert any("'Cardiomegaly'" in w and "line 15" in w for w in skips.where["label value not 0 or 1"])


def test_missing_label_column_names_it(tmp_path):
    base = tmp_path / "vindr-cxr" / "annotations"
    write_csv(base / "image_labels_train.csv", ["image_id", "rad_id", "Cardiomegaly"], [[A, "R1", 1]])
    with pytest.raises(DatasetFormatError, match="missing label column 'No finding'"):
        load_vindr_image_labels(tmp_path, "train", task="abnormal")
    with pytest.raises(DatasetFormatError, match="image_labels_train.csv"):
        load_vindr_image_labels(tmp_path, "train", labels=["Edema"])


def test_missing_dicoms_everywhere_is_an_error(tmp_path):
    labels = LOCAL + GLOBAL_TRAIN
    write_csv(tmp_path / "vindr-cxr" / "annotations" / "image_labels_train.csv", ["image_id", "rad_id"] + labels,
              [[D, "R1"] + [0] * len(labels)])
    with pytest.raises(DatasetFormatError, match="none of the 1 labelled images"):
        load_vindr_image_labels(tmp_path, "train", val_fraction=0.0)


def test_kaggle_layout_abnormal(tmp_path):
    base = tmp_path / "vindr-cxr"
    rows = [
        [A, "Cardiomegaly", 3, "R1", 1, 1, 9, 9],
        [A, "Cardiomegaly", 3, "R2", 1, 1, 9, 9],
        [A, "No finding", 14, "R3", "", "", "", ""],
        [B, "No finding", 14, "R1", "", "", "", ""],
        [B, "No finding", 14, "R4", "", "", "", ""],
        [B, "No finding", 14, "R5", "", "", "", ""],
        [C, "Aortic enlargement", 0, "R1", 1, 1, 9, 9],
        [C, "Aortic enlargement", 0, "R2", 2, 2, 9, 9],
        [C, "Nodule/Mass", 8, "R2", 2, 2, 5, 5],
    ]
    write_csv(base / "train.csv", ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"], rows)
    write_images(base)
    major = by_id(load_vindr_image_labels(tmp_path, "all", task="abnormal", val_fraction=0.0))
    anyp = by_id(load_vindr_image_labels(tmp_path, "all", task="abnormal", readers="any", val_fraction=0.0))
    assert {k: r["label"] for k, r in major.items()} == {A: 1, B: 0, C: 1}
    assert {k: r["label"] for k, r in anyp.items()} == {A: 1, B: 0, C: 1}
    assert major[C]["readers"] == ["R1", "R2"]
    with pytest.raises(ValueError, match="use task='abnormal'"):
        load_vindr_image_labels(tmp_path, "train")
    with pytest.raises(ValueError, match="no test labels"):
        load_vindr_image_labels(tmp_path, "test", task="abnormal")


def test_bad_options(physionet):
    with pytest.raises(ValueError, match="readers must be one of"):
        load_vindr_image_labels(physionet, "train", readers="R1")
    with pytest.raises(ValueError, match="task must be one of"):
        load_vindr_image_labels(physionet, "train", task="binary")
    with pytest.raises(ValueError, match="unknown label"):
        load_vindr_image_labels(physionet, "train", labels=["Cardiomegally"])
    with pytest.raises(DatasetFormatError, match="no VinDr-CXR image labels found"):
        load_vindr_image_labels(physionet / "nowhere", "train")


def test_register(physionet, catalog_names):
    catalog_names += ["t12_vindr_labels", "t12_vindr_abnormal"]
    register_vindr_image_labels("t12_vindr_labels", physionet, "test", labels=SELECTED)
    register_vindr_image_labels("t12_vindr_abnormal", physionet, "validate", task="abnormal", readers="any")
    meta = MetadataCatalog.get("t12_vindr_labels")
    assert meta.thing_classes == SELECTED and meta.evaluator_type == "cxr_classification"
    assert (meta.task, meta.label_task, meta.readers, meta.split) == ("multi_label", "multi_label", "majority", "test")
    assert len(DatasetCatalog.get("t12_vindr_labels")) == 2
    meta = MetadataCatalog.get("t12_vindr_abnormal")
    assert meta.thing_classes == ["No finding", "Abnormal"] and meta.task == "single_label" and meta.split == "val"
    with pytest.raises(TypeError, match="unknown option"):
        register_vindr_image_labels("t12_other", physionet, "train", classes=["x"])
