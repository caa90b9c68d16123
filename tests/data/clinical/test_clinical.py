"""Clinical table: MIMIC-IV-ED join, user CSV, VinDr DICOM headers, cleaning, featurizer statistics."""
import gzip
import json
import logging
import math

import numpy as np
import pytest

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from detectron2.config import get_cfg

from cxr_det.config import add_clinical_config
from cxr_det.data.clinical import (
    ClinicalFeaturizer,
    NotFittedError,
    attach_clinical,
    load_clinical_csv,
    load_clinical_table,
    load_reflacx_clinical,
    load_vindr_clinical,
    parse_number,
    vindr_clinical_from_dicom,
)
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.synthetic.dicom_writer import write_dicom
from helpers import write_csv

FEATURES_LOGGER = "cxr_det.data.clinical.features"
CXR_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
               "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
               "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
EDSTAYS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "race", "arrival_transport",
                   "disposition"]
TRIAGE_COLUMNS = ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain",
                  "acuity", "chiefcomplaint"]
PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
REFLACX_COLUMNS = ["id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id", "image_size_x",
                   "image_size_y"]


def cxr_row(dicom_id, subject, date, time):
    return [dicom_id, subject, 50000000 + subject, "CHEST (PA AND LAT)", "PA", 3056, 2544, date, time,
            "CHEST (PA AND LAT)", "postero-anterior", "Erect"]


def stay_row(subject, stay, intime, outtime, gender):
    return [subject, "", stay, intime, outtime, gender, "WHITE", "WALK IN", "HOME"]


def triage_row(subject, stay, temperature="98.6", heartrate="80", resprate="16", o2sat="98", sbp="120", dbp="70",
               pain="0", acuity="3", complaint="Dyspnea"):
    return [subject, stay, temperature, heartrate, resprate, o2sat, sbp, dbp, pain, acuity, complaint]


@pytest.fixture
def mimic(tmp_path):
    """Hand-written MIMIC-CXR-JPG metadata, MIMIC-IV-ED edstays/triage and MIMIC-IV patients.

    img_inside  (subject 1, 2180-05-06 10:30:00): stay 11 contains it; stay 12 ended 10 min
                before (closer start); subject 9's stay 91 also covers the time (other patient).
    img_nearest (subject 2, 2181-01-10 05:23:12.5, StudyTime without leading zero): stay 21
                starts 1 d 18:36:47.5 later; stay 22 ended 8 d 17:23:12.5 before.
    img_far     (subject 3, 2182-03-01 12:00): only stay 31, starting 10 days later.
    img_nostay  (subject 4): no ED stay at all.
    img_nopatient (subject 5): inside stay 51, but absent from patients.csv.
    """
    root = tmp_path / "datasets"
    write_csv(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv", CXR_COLUMNS, [
        cxr_row("img_inside", 1, 21800506, "103000.0"),
        cxr_row("img_nearest", 2, 21810110, "52312.5"),
        cxr_row("img_far", 3, 21820301, "120000"),
        cxr_row("img_nostay", 4, 21830715, "80000.125"),
        cxr_row("img_nopatient", 5, 21840101, "120000"),
        cxr_row("img_unrelated", 6, 21850101, "120000"),
    ])
    write_csv(root / "mimic-iv-ed/ed/edstays.csv", EDSTAYS_COLUMNS, [
        stay_row(1, 11, "2180-05-06 08:00:00", "2180-05-06 14:00:00", "M"),
        stay_row(1, 12, "2180-05-06 10:00:00", "2180-05-06 10:20:00", "M"),
        stay_row(9, 91, "2180-05-06 00:00:00", "2180-05-07 00:00:00", "F"),
        stay_row(2, 21, "2181-01-12 00:00:00", "2181-01-12 06:00:00", "F"),
        stay_row(2, 22, "2181-01-01 00:00:00", "2181-01-01 12:00:00", "F"),
        stay_row(3, 31, "2182-03-11 12:00:00", "2182-03-11 18:00:00", "M"),
        stay_row(5, 51, "2184-01-01 11:00:00", "2184-01-01 13:00:00", "F"),
    ])
    write_csv(root / "mimic-iv-ed/ed/triage.csv", TRIAGE_COLUMNS, [
        triage_row(1, 11, temperature="38.6", pain="unable", dbp="278", complaint="Fever"),
        triage_row(1, 12, temperature="99.1"),
        triage_row(9, 91, temperature="97.0"),
        triage_row(2, 21, temperature="", heartrate="112", pain="8-9"),
        triage_row(2, 22, temperature="96.0"),
        triage_row(3, 31, temperature="98.0"),
        triage_row(5, 51, pain="88"),
    ])
    write_csv(root / "mimic-iv/hosp/patients.csv", PATIENTS_COLUMNS, [
        [1, "M", 60, 2178, "2014 - 2016", ""],
        [2, "F", 91, 2181, "2017 - 2019", ""],
        [3, "M", 40, 2180, "2008 - 2010", ""],
        [4, "F", 30, 2183, "2011 - 2013", "2190-01-01"],
        [6, "M", 50, 2185, "2011 - 2013", ""],
        [9, "F", 70, 2180, "2011 - 2013", ""],
    ])
    return root


IMAGES = ["img_inside", "img_nearest", "img_far", "img_nostay", "img_nopatient"]


def test_join_inside_nearest_none_and_age(mimic):
    table = load_reflacx_clinical(mimic, dicom_ids=IMAGES + ["not_in_metadata"])
    assert sorted(table) == sorted(IMAGES)  # an image absent from the metadata has no record

    inside = table["img_inside"]  # the containing stay 11 wins over stay 12 (10 min away) and subject 9's
    assert (inside["stay_id"], inside["match"], inside["gap_hours"]) == (11, "inside", 0.0)
    assert inside["temperature"] == 38.6 and inside["pain"] == "unable" and inside["dbp"] == 278.0  # raw values
    assert (inside["heartrate"], inside["acuity"], inside["chiefcomplaint"]) == (80.0, 3.0, "Fever")
    assert (inside["age"], inside["gender"]) == (62.0, "M")  # 60 + 2180 - 2178

    nearest = table["img_nearest"]  # 05:23:12.5 read from "52312.5"
    assert (nearest["stay_id"], nearest["match"]) == (21, "nearest")
    assert nearest["gap_hours"] == pytest.approx(42 + 36 / 60 + 47.5 / 3600, abs=1e-9)
    assert math.isnan(nearest["temperature"]) and nearest["pain"] == "8-9" and nearest["heartrate"] == 112.0
    assert (nearest["age"], nearest["gender"]) == (91.0, "F")

    far = table["img_far"]  # stay 31 is 10 days away: outside the default 7-day window
    assert (far["stay_id"], far["match"], far["gap_hours"]) == (None, "none", None)
    assert all(math.isnan(far[k]) for k in ("temperature", "heartrate", "pain", "acuity"))
    assert (far["age"], far["gender"]) == (42.0, "M")

    nostay = table["img_nostay"]
    assert (nostay["stay_id"], nostay["match"], nostay["age"], nostay["gender"]) == (None, "none", 30.0, "F")

    nopatient = table["img_nopatient"]  # not in patients.csv: age unknown, gender from the stay
    assert (nopatient["stay_id"], nopatient["match"], nopatient["gender"]) == (51, "inside", "F")
    assert math.isnan(nopatient["age"]) and nopatient["pain"] == 88.0


def test_join_window_is_configurable(mimic):
    wide = load_reflacx_clinical(mimic, window_days=10, dicom_ids=["img_far", "img_nearest"])
    far = wide["img_far"]
    assert (far["stay_id"], far["match"], far["gap_hours"]) == (31, "nearest", 240.0)
    narrow = load_reflacx_clinical(mimic, window_days=1, dicom_ids=["img_nearest", "img_inside"])
    assert narrow["img_nearest"]["match"] == "none"  # 1.78 days away
    assert narrow["img_inside"]["stay_id"] == 11
    with pytest.raises(ValueError, match="window_days"):
        load_reflacx_clinical(mimic, window_days=-1, dicom_ids=["img_far"])


def test_join_defaults_to_reflacx_images(mimic):
    write_csv(mimic / "reflacx/main_data/metadata_phase_3.csv", REFLACX_COLUMNS, [
        ["P300R000001", "train", "False", "physionet.org/files/mimic-cxr/2.0.0/files/p10/p1/s1/img_inside.dcm",
         "img_inside", 1, 2544, 3056],
        ["P300R000002", "test", "False", "physionet.org/files/mimic-cxr/2.0.0/files/p10/p3/s3/img_far.dcm",
         "img_far", 3, 2544, 3056],
    ])
    assert sorted(load_reflacx_clinical(mimic)) == ["img_far", "img_inside"]


@pytest.mark.parametrize("rel", ["mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv", "mimic-iv-ed/ed/edstays.csv",
                                 "mimic-iv-ed/ed/triage.csv", "mimic-iv/hosp/patients.csv"])
def test_join_missing_file_names_it(mimic, rel):
    (mimic / rel).unlink()
    with pytest.raises(DatasetFormatError, match=rel.split("/")[-1]):
        load_reflacx_clinical(mimic, dicom_ids=IMAGES)


MIMIC_TABLES = ["mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv", "mimic-iv-ed/ed/edstays.csv",
                "mimic-iv-ed/ed/triage.csv", "mimic-iv/hosp/patients.csv"]


def gzip_in_place(path, dest=None):
    """Replace ``x.csv`` by ``x.csv.gz`` (or ``dest``), as PhysioNet ships the MIMIC tables."""
    dest = dest or path.with_name(path.name + ".gz")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return dest


def test_join_reads_tables_as_physionet_ships_them_gzipped(mimic):
    """The four tables as shipped (.csv.gz): the same records as the unzipped .csv (before:
    "mimic-cxr-2.0.0-metadata.csv: file not found")."""
    unzipped = load_reflacx_clinical(mimic, dicom_ids=IMAGES)
    for rel in MIMIC_TABLES:
        gzip_in_place(mimic / rel)
        assert not (mimic / rel).exists()
    shipped = load_reflacx_clinical(mimic, dicom_ids=IMAGES)
    assert json.dumps(shipped, sort_keys=True) == json.dumps(unzipped, sort_keys=True)  # NaN == NaN as text
    assert (shipped["img_inside"]["stay_id"], shipped["img_inside"]["age"]) == (11, 62.0)
    # MIMIC-IV 1.0 kept patients in core/, not hosp/.
    (mimic / "mimic-iv/core").mkdir()
    (mimic / "mimic-iv/hosp/patients.csv.gz").rename(mimic / "mimic-iv/core/patients.csv.gz")
    assert json.dumps(load_reflacx_clinical(mimic, dicom_ids=IMAGES), sort_keys=True) == json.dumps(unzipped, sort_keys=True)
    (mimic / "mimic-iv/core/patients.csv.gz").unlink()
    with pytest.raises(DatasetFormatError, match=r"hosp/patients\.csv\.gz: file not found \(also looked for .*"
                       r"hosp/patients\.csv, .*core/patients\.csv\.gz, .*core/patients\.csv\)"):
        load_reflacx_clinical(mimic, dicom_ids=IMAGES)


def test_damaged_gzip_names_the_file(mimic):
    path = mimic / "mimic-iv-ed/ed/triage.csv.gz"
    path.write_bytes(gzip.compress((mimic / "mimic-iv-ed/ed/triage.csv").read_bytes())[:40])  # truncated
    (mimic / "mimic-iv-ed/ed/triage.csv").unlink()
    with pytest.raises(DatasetFormatError, match=r"triage\.csv\.gz: cannot be decompressed"):
        load_reflacx_clinical(mimic, dicom_ids=IMAGES)


def test_user_csv_gzipped(tmp_path):
    path = gzip_in_place(write_csv(tmp_path / "clinical.csv", ["dicom_id", "age"], [["a", "65"], ["b", ""]]))
    table, key = load_clinical_table(str(path), "reflacx")
    assert key == "dicom_id" and table["a"]["age"] == 65.0 and math.isnan(table["b"]["age"])


def test_join_missing_column_names_file_and_column(mimic):
    write_csv(mimic / "mimic-iv-ed/ed/edstays.csv", ["subject_id", "stay_id", "intime"],
              [[1, 11, "2180-05-06 08:00:00"]])
    with pytest.raises(DatasetFormatError, match=r"edstays\.csv: missing column\(s\) \['outtime'\]"):
        load_reflacx_clinical(mimic, dicom_ids=IMAGES)


def test_join_without_reflacx_metadata_is_an_error(mimic):
    with pytest.raises(DatasetFormatError, match="metadata_phase"):
        load_reflacx_clinical(mimic)


def test_user_csv(tmp_path):
    path = write_csv(tmp_path / "clinical.csv", ["age", "dicom_id", "temperature", "pain", "gender", "bmi"], [
        ["65", " a ", "38.6", "unable", "M", ""],
        ["", "b", "99", "8-9", "", "31.5"],
        ["40", "", "98", "0", "F", "20"],  # blank key: skipped
    ])
    table = load_clinical_csv(path)
    assert sorted(table) == ["a", "b"]
    assert table["a"]["age"] == 65.0 and table["a"]["temperature"] == 38.6 and table["a"]["pain"] == "unable"
    assert table["a"]["gender"] == "M" and math.isnan(table["a"]["bmi"])
    assert math.isnan(table["b"]["age"]) and table["b"]["pain"] == "8-9" and table["b"]["bmi"] == 31.5
    assert set(table["b"]) == {"age", "temperature", "pain", "gender", "bmi"}
    again, key = load_clinical_table(str(path), "reflacx")
    assert key == "dicom_id" and sorted(again) == ["a", "b"] and again["a"]["pain"] == "unable"

    write_csv(tmp_path / "dupes.csv", ["dicom_id", "age"], [["a", 1], ["a", 2]])
    with pytest.raises(DatasetFormatError, match=r"dupes\.csv: duplicate dicom_id"):
        load_clinical_csv(tmp_path / "dupes.csv")
    with pytest.raises(DatasetFormatError, match=r"clinical\.csv: missing column\(s\) \['image_id'\]"):
        load_clinical_csv(path, key="image_id")
    with pytest.raises(DatasetFormatError, match="nowhere.csv: file not found"):
        load_clinical_csv(tmp_path / "nowhere.csv")


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")  # "40M" (not "040M") occurs in real headers
def test_vindr_dicom_age_and_sex(tmp_path):
    pixels = np.zeros((4, 4), dtype=np.uint16)
    base = tmp_path / "vindr-cxr" / "train"
    write_dicom(base / "aa.dicom", pixels, PatientAge="065Y", PatientSex="F")
    write_dicom(base / "bb.dicom", pixels, PatientAge="40M", PatientSex="M")
    write_dicom(base / "cc.dicom", pixels)
    write_dicom(base / "dd.dicom", pixels, PatientAge="000Y", PatientSex="O")
    assert vindr_clinical_from_dicom(base / "aa.dicom") == {"age": 65.0, "gender": "F", "patient_age_raw": "065Y"}
    months = vindr_clinical_from_dicom(base / "bb.dicom")
    assert months["age"] == pytest.approx(40 / 12) and months["gender"] == "M"
    missing = vindr_clinical_from_dicom(base / "cc.dicom")
    assert math.isnan(missing["age"]) and missing["gender"] is None
    assert math.isnan(vindr_clinical_from_dicom(base / "dd.dicom")["age"])  # 000Y: placeholder for unknown

    table = load_vindr_clinical(tmp_path, image_ids=["aa", "cc", "zz"])
    assert sorted(table) == ["aa", "cc"] and table["aa"]["age"] == 65.0
    table, key = load_clinical_table("dicom", "vindr", root=tmp_path)
    assert sorted(table) == ["aa", "bb", "cc", "dd"] and key == "vindr_image_id"
    with pytest.raises(ValueError, match="REFLACX only"):
        load_clinical_table("mimic-iv-ed", "vindr", root=tmp_path)


def test_attach_clinical_keeps_images_without_record():
    records = [{"dicom_id": "a", "file_name": "a.jpg"}, {"dicom_id": "b", "file_name": "b.jpg"},
               {"dicom_id": "a", "file_name": "a.jpg", "reading_ids": ["P300R2"]}]
    table = {"a": {"age": 70.0, "gender": "F"}}
    counts = attach_clinical(records, table, key="dicom_id")
    assert counts == {"total": 3, "with_clinical": 2, "without_clinical": 1}
    assert [r["clinical"] for r in records] == [{"age": 70.0, "gender": "F"}, None, {"age": 70.0, "gender": "F"}]
    records[0]["clinical"]["age"] = 1.0  # copies: the table and the other record are unchanged
    assert table["a"]["age"] == 70.0 and records[2]["clinical"]["age"] == 70.0


@pytest.mark.parametrize("raw, value, event", [
    ("8-9", 8.5, "range_mean"), ("8 - 9", 8.5, "range_mean"), ("2 to 3", 2.5, "range_mean"),
    ("10+", 10.0, "lower_bound"), (" 7 ", 7.0, None), (7, 7.0, None), ("-1", -1.0, None),
    ("unable", math.nan, "non_numeric"), ("uta", math.nan, "non_numeric"), ("inf", math.nan, "non_numeric"),
    ("", math.nan, "blank"), (None, math.nan, "blank"), (float("nan"), math.nan, "blank"),
])
def test_parse_number(raw, value, event):
    v, e = parse_number(raw)
    assert e == event
    assert (math.isnan(v) and math.isnan(value)) or v == value


TRAIN = [
    {"temperature": 38.6, "pain": "8-9", "dbp": 80.0, "gender": "M"},
    {"temperature": "100.52", "pain": "unable", "dbp": 278.0, "gender": "f"},
    {"temperature": "", "pain": 88.0, "dbp": "60", "gender": None},
    None,
]
# Cleaned: temperature [101.48, 100.52, -, -] -> mean 101, std 0.48; pain [8.5, -, -, -] -> mean
# 8.5, std 0 -> 1; dbp [80, -, 60, -] -> mean 70, std 10; gender vocabulary F=1, M=2 (0 unknown).


def small_featurizer():
    return ClinicalFeaturizer(numeric=["temperature", "pain", "dbp"], categorical=["gender"])


def test_cleaning_of_dirty_values():
    f = small_featurizer()
    values, cats = f.clean(TRAIN[0])
    assert values.tolist() == pytest.approx([101.48, 8.5, 80.0], abs=1e-12) and cats == ["M"]
    values, cats = f.clean(TRAIN[1])
    assert values[0] == pytest.approx(100.52) and np.isnan(values[1:]).all() and cats == ["F"]
    values, cats = f.clean(TRAIN[2])
    assert np.isnan(values[:2]).all() and values[2] == 60.0 and cats == [None]


def test_fit_reports_cleaning_once(caplog):
    f = small_featurizer()
    with caplog.at_level(logging.INFO, logger=FEATURES_LOGGER):
        f.fit(TRAIN, dataset="reflacx_train")
    warnings = [r for r in caplog.records if r.name == FEATURES_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "reflacx_train" in warnings[0].getMessage()
    assert f.report["reflacx_train"] == {
        "records": 4,
        "no_record": 1,
        "numeric": {
            "temperature": {"missing": 2, "blank": 1, "celsius_to_fahrenheit": 1},
            "pain": {"missing": 3, "range_mean": 1, "non_numeric": 1, "out_of_range": 1},
            "dbp": {"missing": 2, "out_of_range": 1},
        },
        "categorical": {"gender": {"missing": 2, "unknown": 0}},
    }
    assert f.mean.tolist() == pytest.approx([101.0, 8.5, 70.0])
    assert f.std.tolist() == pytest.approx([0.48, 1.0, 10.0])
    assert f.vocab == {"gender": ["F", "M"]} and f.categorical_cardinalities == [3]


def test_transform_uses_training_statistics():
    f = small_featurizer().fit(TRAIN)
    numeric, missing, cats = f.transform({"temperature": 102.44, "pain": 7.5, "dbp": 90, "gender": "M"})
    assert numeric.dtype == np.float32 and missing.dtype == np.float32 and cats.dtype == np.int64
    np.testing.assert_allclose(numeric, [3.0, -1.0, 2.0], atol=1e-5)
    assert missing.tolist() == [0.0, 0.0, 0.0] and cats.tolist() == [2]

    numeric, missing, cats = f.transform({"temperature": "uta", "pain": "3-4", "gender": "X"})
    np.testing.assert_allclose(numeric, [0.0, -5.0, 0.0], atol=1e-6)
    assert missing.tolist() == [1.0, 0.0, 1.0] and cats.tolist() == [0]  # absent dbp, unseen gender

    numeric, missing, cats = f.transform(None)  # no clinical data at all
    assert numeric.tolist() == [0.0, 0.0, 0.0] and missing.tolist() == [1.0, 1.0, 1.0] and cats.tolist() == [0]

    test = [{"temperature": 38.6, "pain": 88, "dbp": 278.0, "gender": "F"}, {"gender": "X"}, None]
    n, m, c = f.transform_many(test, dataset="test")
    assert n.shape == m.shape == (3, 3) and c.shape == (3, 1)
    np.testing.assert_allclose(n[0], [1.0, 0.0, 0.0], atol=1e-5)  # (101.48 - 101) / 0.48
    assert m.tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]] and c[:, 0].tolist() == [1, 0, 0]
    assert f.report["test"]["numeric"]["dbp"] == {"missing": 3, "blank": 1, "out_of_range": 1}
    assert f.report["test"]["categorical"]["gender"] == {"missing": 1, "unknown": 1}
    assert f.mean.tolist() == pytest.approx([101.0, 8.5, 70.0])  # transforming does not refit


def test_default_features_record_missing_row():
    f = ClinicalFeaturizer().fit([{"age": 50.0, "temperature": 98.0, "gender": "F"}, {"age": 70.0, "gender": "M"}])
    numeric, missing, cats = f.transform(None)
    assert numeric.shape == (9,) and missing.tolist() == [1.0] * 9 and cats.tolist() == [0]
    numeric, missing, _ = f.transform({"age": 60.0, "acuity": 9})  # acuity 9: out of 1..5
    assert missing.tolist() == [0.0] + [1.0] * 8 and numeric[0] == 0.0  # (60 - 60) / 10


def test_clip_policy():
    f = ClinicalFeaturizer(numeric=["dbp"], categorical=[], ranges={"dbp": (20, 180, "clip")})
    f.fit([{"dbp": 278}, {"dbp": 100}])
    assert f.mean.tolist() == [140.0]  # 278 clipped to 180
    assert f.report["train"]["numeric"]["dbp"] == {"missing": 0, "clipped": 1}
    with pytest.raises(ValueError, match="policy"):
        ClinicalFeaturizer(numeric=["dbp"], ranges={"dbp": (20, 180, "drop")})


def test_save_load_round_trip(tmp_path):
    f = small_featurizer().fit(TRAIN)
    path = f.save(tmp_path / "out" / "clinical_stats.json")
    state = json.loads(path.read_text())
    assert state["mean"] == pytest.approx([101.0, 8.5, 70.0]) and state["vocab"] == {"gender": ["F", "M"]}
    g = ClinicalFeaturizer.load(path)
    records = TRAIN + [{"temperature": 102.44, "pain": "3-4", "dbp": 90, "gender": "M"}]
    for a, b in zip(f.transform_many(records), g.transform_many(records)):
        assert np.array_equal(a, b)

    h = small_featurizer().load_state_dict(json.loads(json.dumps(f.state_dict())))  # e.g. from a checkpoint
    assert np.array_equal(h.transform(records[-1])[0], f.transform(records[-1])[0])
    with pytest.raises(ValueError, match="differ from the configured"):
        ClinicalFeaturizer(numeric=["pain"], categorical=["gender"]).load_state_dict(f.state_dict())


def test_unfitted_featurizer_raises(tmp_path):
    f = small_featurizer()
    with pytest.raises(NotFittedError, match="not fitted"):
        f.transform({"pain": 3})
    with pytest.raises(NotFittedError, match="not fitted"):
        f.transform_many([None])
    with pytest.raises(NotFittedError):
        f.save(tmp_path / "x.json")
    with pytest.raises(ValueError, match="no training records"):
        f.fit([])


def test_config():
    cfg = get_cfg()
    cxr_det.add_cxr_config(cfg)
    add_clinical_config(cfg)
    c = cfg.CXR.CLINICAL
    assert (c.ENABLED, c.SOURCE, c.CATEGORICAL, c.MATCH_WINDOW_DAYS) == (False, "mimic-iv-ed", ["gender"], 7)
    assert c.NUMERIC == ["age", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity"]
    cfg.merge_from_list(["CXR.CLINICAL.NUMERIC", ["age", "sbp"], "CXR.CLINICAL.MATCH_WINDOW_DAYS", 3])
    f = ClinicalFeaturizer.from_config(cfg)
    assert (f.numeric, f.categorical, cfg.CXR.CLINICAL.MATCH_WINDOW_DAYS) == (["age", "sbp"], ["gender"], 3)


def test_join_matches_brute_force_reference(tmp_path):
    """The vectorised join equals a direct reading of the rule on random stays of a few patients."""
    from datetime import datetime, timedelta

    rng = np.random.default_rng(7)
    t0, day = datetime(2150, 1, 1), 86400.0
    images = {f"img{i}": (int(rng.integers(1, 7)), t0 + timedelta(seconds=float(rng.uniform(0, 60 * day)) // 1))
              for i in range(40)}
    stays = []
    for k in range(60):  # subject 6 has no stay
        start = t0 + timedelta(seconds=float(rng.uniform(-5 * day, 65 * day)) // 1)
        stays.append((int(rng.integers(1, 6)), 100 + k, start, start + timedelta(hours=float(rng.uniform(1, 30)) // 1)))
    fmt = "%Y-%m-%d %H:%M:%S"
    root = tmp_path / "d"
    write_csv(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv", CXR_COLUMNS,  # StudyTime as a float writes it
              [cxr_row(d, s, t.strftime("%Y%m%d"), t.strftime("%H%M%S").lstrip("0") or "0")
               for d, (s, t) in images.items()])
    write_csv(root / "mimic-iv-ed/ed/edstays.csv", EDSTAYS_COLUMNS,
              [stay_row(s, k, a.strftime(fmt), b.strftime(fmt), "F") for s, k, a, b in stays])
    write_csv(root / "mimic-iv-ed/ed/triage.csv", TRIAGE_COLUMNS, [triage_row(s, k) for s, k, _, _ in stays])
    write_csv(root / "mimic-iv/hosp/patients.csv", PATIENTS_COLUMNS, [[s, "F", 50, 2150, "x", ""] for s in range(1, 7)])

    def reference(subject, t, window_days):
        inside = [(a, k) for s, k, a, b in stays if s == subject and a <= t <= b]
        if inside:
            return max(inside)[1], "inside"  # latest arrival
        near = [(max((a - t).total_seconds(), (t - b).total_seconds()), k) for s, k, a, b in stays if s == subject]
        near = [(g, k) for g, k in near if g <= window_days * day]
        return (min(near)[1], "nearest") if near else (None, "none")

    for window in (1, 7):
        table = load_reflacx_clinical(root, window_days=window, dicom_ids=list(images))
        got = {d: (r["stay_id"], r["match"]) for d, r in table.items()}
        want = {d: reference(s, t, window) for d, (s, t) in images.items()}
        assert got == want
        assert {m for _, m in got.values()} == {"inside", "nearest", "none"}  # every branch exercised
