"""MIMIC-CXR-JPG image labels on hand-written tables (spelled out here, independent of the
schema module): per-study labels on each image, split file, ViewPosition, gzipped or not."""
import gzip

import numpy as np
import pytest

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog
from cxr_det.data.datasets.mimic_cxr_labels import load_mimic_cxr_labels, register_mimic_cxr_labels

LABEL_HEADER = (
    "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,"
    "Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,"
    "Pneumothorax,Support Devices"
)


def label_row(subject, study, atel="", card="", cons="", edema="", pe=""):
    return ",".join([subject, study, atel, card, cons, edema, "", "", "", "", "", pe, "", "", "", ""])


CHEXPERT = [
    label_row("10000032", "50414267", card="1.0", edema="-1.0", pe="0.0"),
    label_row("10000032", "53189527", atel="-1.0", card="0.0", cons="1.0", pe="1.0"),
    label_row("10000764", "57375967", atel="1.0", pe="-1.0"),
]
NEGBIO = [
    label_row("10000032", "50414267", card="0.0"),
    label_row("10000032", "53189527"),
    label_row("10000764", "57375967"),
]
SPLIT = [
    "d1,50414267,10000032,train", "d2,50414267,10000032,train", "d3,53189527,10000032,train",
    "d4,57375967,10000764,validate", "d5,57375967,10000764,validate", "d6,59999999,10000764,test",
    "d7,57375967,10000764,validate",
]
META = [  # d7 absent
    "d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531",
    "d2,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531",
    "d3,10000032,53189527,CHEST (PORTABLE AP),AP,3056,2544,21800101,80000",
    "d4,10000764,57375967,CHEST (PA AND LAT),PA,3056,2544,21321015,101010",
    "d5,10000764,57375967,CHEST (PA AND LAT),,3056,2544,21321015,101010",
    "d6,10000764,59999999,CHEST (PA AND LAT),PA,3056,2544,21330101,101010",
]
META_HEADER = "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime"


def write(root, gz=True, chexpert=CHEXPERT, images=True):
    base = root / "mimic-cxr-jpg"
    base.mkdir(parents=True, exist_ok=True)
    tables = {
        "mimic-cxr-2.0.0-chexpert.csv": [LABEL_HEADER] + chexpert,
        "mimic-cxr-2.0.0-negbio.csv": [LABEL_HEADER] + NEGBIO,
        "mimic-cxr-2.0.0-split.csv": ["dicom_id,study_id,subject_id,split"] + SPLIT,
        "mimic-cxr-2.0.0-metadata.csv": [META_HEADER] + META,
    }
    for name, lines in tables.items():
        text = ("\n".join(lines) + "\n").encode()
        if gz:
            (base / (name + ".gz")).write_bytes(gzip.compress(text))
        else:
            (base / name).write_bytes(text)
    if images:
        for line in SPLIT:
            d, study, subject, _ = line.split(",")
            p = base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"jpg")
    return root


def arrays(recs, key):
    return np.array([r[key] for r in recs])


def test_train_frontal_labels_per_study(tmp_path):
    recs = load_mimic_cxr_labels(write(tmp_path), "train")
    assert [r["dicom_id"] for r in recs] == ["d1", "d3"]
    np.testing.assert_array_equal(arrays(recs, "labels"), [[0, 1, 0, 0, 0], [0, 0, 1, 0, 1]])
    np.testing.assert_array_equal(arrays(recs, "label_weights"), np.ones((2, 5)))
    assert recs[0]["file_name"].endswith("mimic-cxr-jpg/files/p10/p10000032/s50414267/d1.jpg")
    assert recs[0]["subject_id"] == 10000032 and recs[0]["study_id"] == 50414267 and recs[0]["view_position"] == "PA"


@pytest.mark.parametrize("policy,labels,weights", [
    ("zeros", [[1, 0, 0, 0, 0]], [[1, 1, 1, 1, 1]]),
    ("ones", [[1, 0, 0, 0, 1]], [[1, 1, 1, 1, 1]]),
    ("ignore", [[1, 0, 0, 0, 0]], [[1, 1, 1, 1, 0]]),
])
def test_val_from_validate_and_policies(tmp_path, policy, labels, weights):
    skips = SkipLog("t")
    recs = load_mimic_cxr_labels(write(tmp_path), "val", uncertainty=policy, skip_log=skips)
    assert [r["dicom_id"] for r in recs] == ["d4"] and recs[0]["split"] == "val"
    np.testing.assert_array_equal(arrays(recs, "labels"), labels)
    np.testing.assert_array_equal(arrays(recs, "label_weights"), weights)
    assert skips.counts["image not in the metadata table (view unknown)"] == 1


@pytest.mark.parametrize("views,split,ids", [
    ("all", "train", ["d1", "d2", "d3"]), ("lateral", "train", ["d2"]), ("ap", "train", ["d3"]),
    ("pa", "train", ["d1"]), ("all", "val", ["d4", "d5", "d7"]), ("all", "all", ["d1", "d2", "d3", "d4", "d5", "d7"]),
])
def test_view_filters(tmp_path, views, split, ids):
    recs = load_mimic_cxr_labels(write(tmp_path), split, views=views)
    assert [r["dicom_id"] for r in recs] == ids


def test_study_without_labels_is_a_counted_skip(tmp_path):
    skips = SkipLog("t")
    assert load_mimic_cxr_labels(write(tmp_path), "test", skip_log=skips) == []
    assert skips.counts["study has no row in mimic-cxr-2.0.0-chexpert.csv.gz"] == 1


def test_negbio_and_unzipped_tables(tmp_path):
    recs = load_mimic_cxr_labels(write(tmp_path, gz=False), "train", labeler="negbio", labels=["Cardiomegaly"])
    np.testing.assert_array_equal(arrays(recs, "labels"), [[0], [0]])
    recs = load_mimic_cxr_labels(tmp_path, "train", labels=["Cardiomegaly"])
    np.testing.assert_array_equal(arrays(recs, "labels"), [[1], [0]])
    with pytest.raises(ValueError, match="labeler"):
        load_mimic_cxr_labels(tmp_path, "train", labeler="chexbert")


def test_max_studies_by_study_date(tmp_path):
    recs = load_mimic_cxr_labels(write(tmp_path), "train", views="all", max_studies_per_patient=1)
    # study 53189527 (2180-01-01) precedes 50414267 (2180-05-06) though its id is larger
    assert [r["dicom_id"] for r in recs] == ["d3"]


def test_bad_cell_names_file_line_column(tmp_path):
    bad = list(CHEXPERT)
    bad[1] = label_row("10000032", "53189527", edema="yes")
    write(tmp_path, chexpert=bad)
    with pytest.raises(DatasetFormatError, match=r"chexpert\.csv\.gz: line 3, column 'Edema'"):
        load_mimic_cxr_labels(tmp_path, "train")


def test_missing_jpg_is_a_counted_skip(tmp_path):
    write(tmp_path)
    (tmp_path / "mimic-cxr-jpg/files/p10/p10000032/s53189527/d3.jpg").unlink()
    skips = SkipLog("t")
    recs = load_mimic_cxr_labels(tmp_path, "train", skip_log=skips)
    assert [r["dicom_id"] for r in recs] == ["d1"] and skips.counts["image file missing"] == 1


def test_missing_table_is_an_error(tmp_path):
    write(tmp_path)
    (tmp_path / "mimic-cxr-jpg/mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(DatasetFormatError, match="split.csv"):
        load_mimic_cxr_labels(tmp_path, "train")


def test_register(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    write(tmp_path)
    name = "test_mimic_cxr_labels_val"
    try:
        register_mimic_cxr_labels(name, tmp_path, "validate", labels="all14", uncertainty="ignore")
        meta = MetadataCatalog.get(name)
        assert len(meta.thing_classes) == 14 and meta.evaluator_type == "cxr_classification"
        assert meta.split == "val" and meta.task == "multi_label" and meta.labeler == "chexpert"
        assert [r["dicom_id"] for r in DatasetCatalog.get(name)] == ["d4"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(TypeError):
        register_mimic_cxr_labels("x", tmp_path, "train", view="all")
