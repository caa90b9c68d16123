"""The classification datasets registered from the config (chexpert_*, mimic_cxr_*,
vindr_labels_*, folder_*): config values translated to registrar options, exact label
counts under uncertainty policies set through the config keys, one name one meaning, and
the MIMIC-IV-ED join for MIMIC-CXR records. Expected counts are computed from the files
the synthetic writers wrote, read here with the csv module."""
import csv
import gzip
import math
from datetime import datetime, timedelta

import numpy as np
import pytest

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data import (
    DatasetRegistrationError,
    cxr_dataset_names,
    register_cxr_datasets,
    register_from_config,
    unregister_cxr_datasets,
)
from cxr_det.data.clinical import pipeline
from cxr_det.data.clinical.tables import vindr_clinical_from_dicom
from cxr_det.data.datasets.builtin import dataset_options
from cxr_det.data.datasets.chexpert import load_chexpert
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.formats.chexpert_format import CHEXPERT_COMPETITION_LABELS
from cxr_det.formats.mimic_iv_ed_format import (
    EDSTAYS,
    EDSTAYS_COLUMNS,
    PATIENTS,
    PATIENTS_COLUMNS,
    TRIAGE,
    TRIAGE_COLUMNS,
)
from cxr_det.formats.vindr_format import VINDR_IMAGE_LABEL_COLUMNS
from cxr_det.synthetic.chexpert_writer import make_chexpert
from cxr_det.synthetic.image_label_writers import make_image_folder, make_vindr_image_labels
from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels

FIVE = list(CHEXPERT_COMPETITION_LABELS)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One dataset root with the four classification datasets, tiny."""
    root = tmp_path_factory.mktemp("classification")
    make_chexpert(root, 24, seed=3, size=32)
    make_mimic_cxr_labels(root, 8, seed=3, size=32)
    make_vindr_image_labels(root, 8, seed=3, size=32)
    make_image_folder(root, "chest_xray", 2, seed=3, layout="split")
    return root


def _cfg(root, *opts):
    return get_cxr_cfg(opts=["CXR.DATASET_ROOT", str(root), *opts])


def _rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def _expected(cells_per_label, policy):
    """{label: (positive, negative, ignored)} from raw cells under {label: policy}."""
    out = {}
    for label, cells in cells_per_label.items():
        cells = [c.strip() for c in cells]
        positive, uncertain = cells.count("1.0"), cells.count("-1.0")
        positive += uncertain if policy[label] == "ones" else 0
        ignored = uncertain if policy[label] == "ignore" else 0
        out[label] = (positive, len(cells) - positive - ignored, ignored)
    return out


def _counts(records, labels):
    targets = np.array([r["labels"] for r in records])
    weights = np.array([r["label_weights"] for r in records])
    counted = weights > 0
    return {
        label: (int((counted[:, j] & (targets[:, j] == 1)).sum()), int((counted[:, j] & (targets[:, j] == 0)).sum()),
                int((~counted[:, j]).sum()))
        for j, label in enumerate(labels)
    }


def _chexpert_cells(root):
    folder = root / "chexpert/CheXpert-v1.0-small"
    rows = _rows(folder / "train.csv") + _rows(folder / "valid.csv")
    return {label: [r[label] for r in rows] for label in FIVE}


def _mimic_cells(root):
    """Per image of the split table (every view), its study's cells."""
    base = root / "mimic-cxr-jpg"
    studies = {r["study_id"]: r for r in _rows(base / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    images = _rows(base / "mimic-cxr-2.0.0-split.csv.gz")
    return {label: [studies[i["study_id"]][label] for i in images] for label in FIVE}


def _uncertainty_config(node, cells, which):
    """Config overrides and the {label: policy} they mean. The exceptions go to the two labels
    with the most uncertain cells in the data (so that each policy changes some count):
    0: U-Zeros except U-Ones and U-Ignore for those two; 1: U-Ignore except U-Ones for one."""
    a, b = sorted(FIVE, key=lambda label: -cells[label].count("-1.0"))[:2]
    assert cells[a].count("-1.0") and cells[b].count("-1.0")  # the data has uncertain cells there
    if which == 0:
        opts = [f"CXR.{node}.UNCERTAINTY", "zeros", f"CXR.{node}.UNCERTAINTY_BY_LABEL", f"['{a}:ones', '{b}:ignore']"]
        return opts, {**{label: "zeros" for label in FIVE}, a: "ones", b: "ignore"}
    opts = [f"CXR.{node}.UNCERTAINTY", "ignore", f"CXR.{node}.UNCERTAINTY_BY_LABEL", f"['{a} : ones']"]
    return opts, {**{label: "ignore" for label in FIVE}, a: "ones"}


@pytest.mark.parametrize("which", [0, 1])
def test_chexpert_counts_under_uncertainty_configs(root, which):
    cells = _chexpert_cells(root)
    opts, policy = _uncertainty_config("CHEXPERT", cells, which)
    cfg = _cfg(root, "CXR.CHEXPERT.VIEWS", "all", *opts)
    names = register_cxr_datasets(cfg, datasets=("chexpert",))
    assert names == ["chexpert_train", "chexpert_val", "chexpert_valid", "chexpert_all"]
    meta = MetadataCatalog.get("chexpert_all")
    assert meta.thing_classes == FIVE and meta.task == "multi_label"
    assert meta.cxr_options["registrar"]["uncertainty"] == policy
    assert meta.cxr_options["registrar"]["labels"] == "competition5"
    records = DatasetCatalog.get("chexpert_all")
    assert _counts(records, FIVE) == _expected(cells, policy)
    # train and val partition train.csv by patient; valid is valid.csv
    train, val, valid = (DatasetCatalog.get(f"chexpert_{s}") for s in ("train", "val", "valid"))
    train_rows = _rows(root / "chexpert/CheXpert-v1.0-small/train.csv")
    assert len(train) + len(val) == len(train_rows) and len(valid) == len(records) - len(train_rows)
    assert not {r["patient_id"] for r in train} & {r["patient_id"] for r in val}


@pytest.mark.parametrize("which", [0, 1])
def test_mimic_cxr_counts_under_uncertainty_configs(root, which):
    cells = _mimic_cells(root)
    opts, policy = _uncertainty_config("MIMIC_CXR", cells, which)
    cfg = _cfg(root, "CXR.MIMIC_CXR.VIEWS", "all", *opts)
    names = register_cxr_datasets(cfg, datasets=("mimic_cxr",))
    assert names == [f"mimic_cxr_{s}" for s in ("train", "val", "test", "all")]
    assert MetadataCatalog.get("mimic_cxr_val").cxr_options["registrar"]["uncertainty"] == policy
    records = DatasetCatalog.get("mimic_cxr_all")
    assert _counts(records, FIVE) == _expected(cells, policy)
    split_rows = _rows(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-split.csv.gz")
    for split, shipped in (("train", "train"), ("val", "validate"), ("test", "test")):
        assert len(DatasetCatalog.get(f"mimic_cxr_{split}")) == sum(r["split"] == shipped for r in split_rows)


def test_config_values_become_registrar_options(root):
    options = dataset_options(_cfg(root), "chexpert")["registrar"]
    assert options == {"labels": "competition5", "uncertainty": {label: "zeros" for label in FIVE}, "views": "frontal",
                       "max_studies_per_patient": None, "val_fraction": 0.1, "seed": 0}
    options = dataset_options(_cfg(root, "CXR.CHEXPERT.LABELS", "['Edema', 'Atelectasis']",
                                   "CXR.CHEXPERT.MAX_STUDIES_PER_PATIENT", "2", "CXR.CHEXPERT.SPLIT_SEED", "7"),
                              "chexpert")["registrar"]
    assert options["labels"] == ["Edema", "Atelectasis"]
    assert options["uncertainty"] == {"Edema": "zeros", "Atelectasis": "zeros"}
    assert (options["max_studies_per_patient"], options["seed"]) == (2, 7)
    assert dataset_options(_cfg(root, "CXR.CHEXPERT.LABELS", "['all14']"), "chexpert")["registrar"]["labels"] == "all14"
    negbio = dataset_options(_cfg(root, "CXR.MIMIC_CXR.LABELER", "negbio"), "mimic_cxr")
    assert negbio["registrar"]["labeler"] == "negbio"

    register_cxr_datasets(_cfg(root, "CXR.CHEXPERT.LABELS", "['Edema', 'Atelectasis']"), datasets=("chexpert",))
    assert MetadataCatalog.get("chexpert_valid").thing_classes == ["Edema", "Atelectasis"]


@pytest.mark.parametrize("node", ["CHEXPERT", "MIMIC_CXR"])
@pytest.mark.parametrize("opts,message", [
    (["UNCERTAINTY_BY_LABEL", "['Atelectasis']"],
     r"UNCERTAINTY_BY_LABEL: entry 'Atelectasis' is not '<label>:<policy>'"),
    (["UNCERTAINTY_BY_LABEL", "[':ones']"], r"UNCERTAINTY_BY_LABEL: entry ':ones' is not"),
    (["UNCERTAINTY_BY_LABEL", "['Atelectasis:maybe']"],
     r"UNCERTAINTY_BY_LABEL: entry 'Atelectasis:maybe': unknown policy 'maybe'"),
    (["UNCERTAINTY_BY_LABEL", "['Pneumonia:ones']"], r"UNCERTAINTY_BY_LABEL: .*'Pneumonia' is not in the label set"),
    (["UNCERTAINTY_BY_LABEL", "['Edema:ones', 'Edema:zeros']"],
     r"UNCERTAINTY_BY_LABEL: label 'Edema' is given more than once"),
    (["UNCERTAINTY", "maybe"], r"UNCERTAINTY: unknown uncertainty policy 'maybe'"),
    (["LABELS", "['Nope']"], r"LABELS: .*unknown observation"),
    (["MAX_STUDIES_PER_PATIENT", "-1"], r"MAX_STUDIES_PER_PATIENT: must be >= 0"),
])
def test_bad_config_values_name_the_key_and_register_nothing(root, node, opts, message):
    cfg = _cfg(root, f"CXR.{node}.{opts[0]}", opts[1])
    with pytest.raises(ValueError, match=rf"CXR\.{node}\.{message}"):
        register_from_config(cfg)
    assert not [n for n in DatasetCatalog.list() if n in cxr_dataset_names()]


@pytest.mark.parametrize("key,value,message", [
    ("CXR.MIMIC_CXR.VIEWS", "oblique", r"CXR\.MIMIC_CXR: MIMIC-CXR: unknown views 'oblique'"),
    ("CXR.CHEXPERT.VIEWS", "oblique", r"CXR\.CHEXPERT: CheXpert: unknown views 'oblique'"),
    ("CXR.MIMIC_CXR.LABELER", "radgraph", r"CXR\.MIMIC_CXR: MIMIC-CXR: unknown labeler 'radgraph'"),
    ("CXR.VINDR_LABELS.TASK", "boxes", r"CXR\.VINDR_LABELS: .*task must be one of"),
])
def test_option_a_registrar_refuses_names_the_node_and_registers_nothing(root, key, value, message):
    with pytest.raises(ValueError, match=message):
        register_from_config(_cfg(root, key, value))
    assert not [n for n in DatasetCatalog.list() if n in cxr_dataset_names()]  # reflacx_* undone too
    assert not [n for n in MetadataCatalog.list() if n in cxr_dataset_names()]


def test_vindr_labels_default_labels_abnormal_task_and_splits(root):
    register_cxr_datasets(_cfg(root), datasets=("vindr_labels",))
    meta = MetadataCatalog.get("vindr_labels_train")
    assert meta.cxr_options["registrar"]["labels"] is None  # LABELS [] -> the registrar's default
    assert meta.thing_classes == list(VINDR_IMAGE_LABEL_COLUMNS) and meta.task == "multi_label"
    train, val, test = (DatasetCatalog.get(f"vindr_labels_{s}") for s in ("train", "val", "test"))
    train_ids = {r["image_id"] for r in _rows(root / "vindr-cxr/annotations/image_labels_train.csv")}
    assert {r["vindr_image_id"] for r in train + val} == train_ids
    assert len(test) == len(_rows(root / "vindr-cxr/annotations/image_labels_test.csv"))

    unregister_cxr_datasets()
    register_cxr_datasets(_cfg(root, "CXR.VINDR_LABELS.TASK", "abnormal", "CXR.VINDR_LABELS.LABELS", "['COPD']"),
                          datasets=("vindr_labels",))
    meta = MetadataCatalog.get("vindr_labels_all")
    assert meta.task == "single_label" and meta.thing_classes == ["No finding", "Abnormal"]
    assert {r["label"] for r in DatasetCatalog.get("vindr_labels_all")} <= {0, 1}


def test_image_folder_registered_only_when_named(root):
    assert not any(n.startswith("folder_") for n in register_from_config(_cfg(root)))
    assert not any(n.startswith("folder_") for n in cxr_dataset_names())
    unregister_cxr_datasets()
    cfg = _cfg(root, "CXR.IMAGE_FOLDER.NAME", "chest_xray")
    names = register_from_config(cfg)
    assert sorted(names) == sorted(cxr_dataset_names(cfg)) and "folder_test" in names and len(names) == 24
    meta = MetadataCatalog.get("folder_train")
    assert meta.thing_classes == ["NORMAL", "PNEUMONIA"] and meta.task == "single_label"
    assert meta.cxr_options["registrar"]["folder"] == "chest_xray"
    for split in ("train", "val", "test"):
        records = DatasetCatalog.get(f"folder_{split}")
        assert sorted(r["label"] for r in records) == [0, 0, 1, 1]
    assert len(DatasetCatalog.get("folder_all")) == 12
    with pytest.raises(ValueError, match=r"CXR\.IMAGE_FOLDER\.NAME is empty"):
        register_cxr_datasets(_cfg(root), datasets=("folder",))
    assert "folder_train" in unregister_cxr_datasets() and "folder_train" not in DatasetCatalog.list()


def test_missing_folders_do_not_fail_registration(tmp_path):
    cfg = _cfg(tmp_path / "empty", "CXR.IMAGE_FOLDER.NAME", "not_there")
    names = register_from_config(cfg)
    assert len(names) == 24
    for name in ("chexpert_train", "mimic_cxr_val", "vindr_labels_test", "folder_train"):
        with pytest.raises(DatasetFormatError):
            DatasetCatalog.get(name)


def test_same_options_once_other_options_refused(root):
    cfg = _cfg(root, "CXR.CHEXPERT.UNCERTAINTY_BY_LABEL", "['Edema:ones']")
    names = register_cxr_datasets(cfg, datasets=("chexpert", "mimic_cxr"))
    assert register_cxr_datasets(cfg.clone(), datasets=("chexpert", "mimic_cxr")) == names
    key = MetadataCatalog.get("chexpert_train").cxr_options_key
    assert len(key) == 12 and key != MetadataCatalog.get("mimic_cxr_train").cxr_options_key

    other = _cfg(root, "CXR.CHEXPERT.UNCERTAINTY_BY_LABEL", "['Edema:ones', 'Atelectasis:ignore']")
    with pytest.raises(DatasetRegistrationError,
                       match=r"chexpert_train.*registrar\.uncertainty\.Atelectasis: 'zeros' -> 'ignore'"):
        register_cxr_datasets(other, datasets=("reflacx", "chexpert"))
    assert "reflacx_train" not in DatasetCatalog.list()  # a refused call registers nothing
    assert MetadataCatalog.get("chexpert_train").cxr_options["registrar"]["uncertainty"]["Atelectasis"] == "zeros"
    with pytest.raises(DatasetRegistrationError, match=r"mimic_cxr_train.*views: 'frontal' -> 'all'"):
        register_cxr_datasets(_cfg(root, "CXR.CHEXPERT.UNCERTAINTY_BY_LABEL", "['Edema:ones']",
                                   "CXR.MIMIC_CXR.VIEWS", "all"))

    unregister_cxr_datasets()
    register_cxr_datasets(other, datasets=("chexpert",))
    assert MetadataCatalog.get("chexpert_train").cxr_options["registrar"]["uncertainty"]["Atelectasis"] == "ignore"


def test_own_clinical_records_are_not_attached_again(root):
    """CheXpert (Sex/Age), VinDr image labels (DICOM header) and the folder carry their own
    clinical record: CXR.CLINICAL.ENABLED changes neither their options nor their records."""
    datasets = ("chexpert", "vindr_labels", "folder")
    register_cxr_datasets(_cfg(root, "CXR.IMAGE_FOLDER.NAME", "chest_xray"), datasets=datasets)
    enabled = _cfg(root, "CXR.IMAGE_FOLDER.NAME", "chest_xray", "CXR.CLINICAL.ENABLED", "True")
    register_cxr_datasets(enabled, datasets=datasets)  # same options: no conflict
    assert MetadataCatalog.get("chexpert_train").cxr_options["clinical"] is None

    chexpert = DatasetCatalog.get("chexpert_valid")
    assert [r["clinical"] for r in chexpert] == [r["clinical"] for r in load_chexpert(root, "valid")]
    assert all(set(r["clinical"]) == {"age", "sex"} for r in chexpert)
    for record in DatasetCatalog.get("vindr_labels_test"):
        expected = vindr_clinical_from_dicom(record["file_name"])
        assert record["clinical"]["gender"] == expected["gender"]
        age = record["clinical"]["age"]
        assert age == expected["age"] or (math.isnan(age) and math.isnan(expected["age"]))
    assert all(r["clinical"] is None for r in DatasetCatalog.get("folder_val"))


# ------------------------------------------------------------------ MIMIC-IV-ED join of MIMIC-CXR records


def _write_gz(path, header, rows):
    """A table at its shipped ``.csv.gz`` path, replacing whatever a writer put there (either spelling)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name[: -len(".gz")]).unlink(missing_ok=True)
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def mimic_ed(tmp_path_factory):
    """A MIMIC-CXR-JPG label root plus hand-made MIMIC-IV-ED / MIMIC-IV tables (replacing any the
    writer wrote), so that every expected match is known: the first half
    of the subjects have one ED stay per study day (00:00 to the next 00:00, so the stay of an
    image's own study day contains it); the others have none; the first subject is missing from patients."""
    root = tmp_path_factory.mktemp("mimic_ed")
    make_mimic_cxr_labels(root, 8, seed=4, size=32)
    meta = _rows(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    subjects = sorted({int(r["subject_id"]) for r in meta})
    with_stays = set(subjects[: len(subjects) // 2])
    stays, triage, expected = [], [], {}
    stay_of_day = {}
    for row in sorted(meta, key=lambda r: (int(r["subject_id"]), r["StudyDate"])):
        subject, day = int(row["subject_id"]), row["StudyDate"]
        if subject in with_stays and (subject, day) not in stay_of_day:
            stay = 30_000_000 + len(stay_of_day)
            stay_of_day[subject, day] = stay
            start = datetime.strptime(day, "%Y%m%d")
            end = start + timedelta(days=1)
            stays.append([subject, "", stay, f"{start:%Y-%m-%d} 00:00:00", f"{end:%Y-%m-%d} 00:00:00", "F",
                          "WHITE", "WALK IN", "HOME"])
            temperature = f"{97 + len(stay_of_day) / 10:.1f}"
            triage.append([subject, stay, temperature, "80", "16", "98", "120", "70", "0", "3", "Cough"])
        stay = stay_of_day.get((subject, day))
        age = math.nan if subject == subjects[0] else 50.0 + int(day[:4]) - 2150
        expected[row["dicom_id"]] = (stay, "inside" if stay else "none", age)
    _write_gz(root / EDSTAYS, EDSTAYS_COLUMNS, stays)
    _write_gz(root / TRIAGE, TRIAGE_COLUMNS, triage)
    _write_gz(root / PATIENTS, PATIENTS_COLUMNS, [[s, "M", 50, 2150, "2014 - 2016", ""] for s in subjects[1:]])
    temperatures = {row[1]: float(row[2]) for row in triage}
    return root, expected, temperatures


def test_mimic_cxr_records_get_the_ed_join(mimic_ed, monkeypatch):
    root, expected, temperatures = mimic_ed
    joined = []
    original = pipeline.load_clinical_table

    def spy(source, dataset, **kwargs):
        joined.append(sorted(kwargs["keys"]))
        return original(source, dataset, **kwargs)

    monkeypatch.setattr(pipeline, "load_clinical_table", spy)
    cfg = _cfg(root, "CXR.CLINICAL.ENABLED", "True", "CXR.MIMIC_CXR.VIEWS", "all")
    register_cxr_datasets(cfg, datasets=("mimic_cxr",))
    clinical_options = MetadataCatalog.get("mimic_cxr_train").cxr_options["clinical"]
    assert clinical_options == {"source": "mimic-iv-ed", "match_window_days": 7}
    records = DatasetCatalog.get("mimic_cxr_train")
    assert joined == [sorted(r["dicom_id"] for r in records)]  # joined for the split's own images
    assert records and {r["clinical"]["match"] for r in DatasetCatalog.get("mimic_cxr_all")} == {"inside", "none"}
    for record in DatasetCatalog.get("mimic_cxr_all"):
        stay, match, age = expected[record["dicom_id"]]
        clinical = record["clinical"]
        assert (clinical["stay_id"], clinical["match"]) == (stay, match)
        assert clinical["age"] == age or (math.isnan(age) and math.isnan(clinical["age"]))
        # gender from MIMIC-IV patients, else (the first subject) from the stay
        assert clinical["gender"] == ("F" if math.isnan(age) else "M")
        if stay:
            assert clinical["temperature"] == temperatures[stay]
        else:
            assert math.isnan(clinical["temperature"])

    # without ENABLED the records carry no clinical record, and the name's meaning differs
    with pytest.raises(DatasetRegistrationError, match=r"mimic_cxr_train.*clinical"):
        register_cxr_datasets(_cfg(root, "CXR.MIMIC_CXR.VIEWS", "all"), datasets=("mimic_cxr",))
    unregister_cxr_datasets()
    register_cxr_datasets(_cfg(root, "CXR.MIMIC_CXR.VIEWS", "all"), datasets=("mimic_cxr",))
    assert all("clinical" not in r for r in DatasetCatalog.get("mimic_cxr_test"))


def test_mimic_cxr_dicom_source_is_refused_at_load(mimic_ed):
    root, _, _ = mimic_ed
    cfg = _cfg(root, "CXR.CLINICAL.ENABLED", "True", "CXR.CLINICAL.SOURCE", "dicom")
    register_cxr_datasets(cfg, datasets=("mimic_cxr",))
    with pytest.raises(ValueError, match="'dicom' applies to VinDr-CXR only"):
        DatasetCatalog.get("mimic_cxr_train")
