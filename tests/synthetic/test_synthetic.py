"""Synthetic dataset generator: real on-disk layouts, determinism, look-alike signal, dirt."""
import gzip
import hashlib
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

import cxr_det  # noqa: F401  (compatibility fixes first)
from cxr_det.formats.reflacx_format import (
    REFLACX_LABELS,
    REFLACX_LESION_LABELS,
    REFLACX_PHASE1_LABELS,
    REFLACX_PHASE1_TO_LABEL,
)
from cxr_det.formats.vindr_format import VINDR_GLOBAL_LABELS, VINDR_KAGGLE_CLASSES, VINDR_LOCAL_LABELS
from cxr_det.synthetic import make_reflacx, make_vindr, render, render_background
from cxr_det.synthetic.dicom_writer import encode_display, write_dicom
from helpers import load_tool

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pragma: no cover
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

REPO = Path(__file__).resolve().parents[2]
META_HEAD = ["id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id", "image_size_x", "image_size_y"]
N_REFLACX, N_VINDR, SIZE = 60, 30, 256


def _strings(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def reflacx(tmp_path_factory):
    root = tmp_path_factory.mktemp("reflacx_a")
    return root, make_reflacx(root, N_REFLACX, seed=3, size=SIZE)


@pytest.fixture(scope="module")
def reflacx_meta(reflacx):
    root = reflacx[0]
    frames = []
    for phase in (1, 2, 3):
        m = _strings(root / f"reflacx/main_data/metadata_phase_{phase}.csv")
        m["phase"] = phase
        frames.append(m)
    return pd.concat(frames, ignore_index=True).fillna("")


@pytest.fixture(scope="module")
def ellipses(reflacx, reflacx_meta):
    """reading id -> ellipse DataFrame (labels as True/False strings)."""
    root = reflacx[0]
    return {rid: _strings(root / f"reflacx/main_data/{rid}/anomaly_location_ellipses.csv") for rid in reflacx_meta["id"]}


@pytest.fixture(scope="module")
def vindr_physionet(tmp_path_factory):
    root = tmp_path_factory.mktemp("vindr_p")
    return root, make_vindr(root, N_VINDR, seed=1, size=SIZE, layout="physionet")


@pytest.fixture(scope="module")
def vindr_kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("vindr_k")
    return root, make_vindr(root, N_VINDR, seed=1, size=SIZE, layout="kaggle")


def _true_labels(frame):
    """Per row, the label columns that are True."""
    cols = list(frame.columns[5:])
    return [[c for c in cols if row[c] == "True"] for _, row in frame.iterrows()]


# ----------------------------------------------------------------------------- REFLACX


def _csv_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.csv*"))}


def test_reflacx_is_deterministic_in_seed(reflacx, tmp_path):
    root, _ = reflacx
    same = make_reflacx(tmp_path / "same", N_REFLACX, seed=3, size=SIZE)
    a, b = _csv_bytes(root), _csv_bytes(tmp_path / "same")
    assert a.keys() == b.keys() and a == b
    jpgs = sorted(p.relative_to(root) for p in root.rglob("*.jpg"))
    assert jpgs and all((root / p).read_bytes() == (tmp_path / "same" / p).read_bytes() for p in jpgs[:10])
    assert same["files_written"] == reflacx[1]["files_written"]

    make_reflacx(tmp_path / "other", N_REFLACX, seed=4, size=SIZE)
    c = _csv_bytes(tmp_path / "other")
    for rel in ("reflacx/main_data/metadata_phase_3.csv", "mimic-iv-ed/ed/triage.csv.gz", "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz"):
        assert a[rel] != c[rel]


# The MIMIC tables as PhysioNet ships them (gzipped), relative to the dataset root.
MIMIC_TABLES = (
    "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz",
    "mimic-iv-ed/ed/edstays.csv.gz",
    "mimic-iv-ed/ed/triage.csv.gz",
    "mimic-iv/hosp/patients.csv.gz",
)


def test_reflacx_mimic_tables_gzipped_by_default_with_unzipped_option(reflacx, tmp_path):
    """Default: the 4 MIMIC tables are .csv.gz (and no .csv); ``gzip_tables=False`` writes the
    same text as .csv. Every other file is byte-identical, so the records do not change."""
    root, summary = reflacx
    for rel in MIMIC_TABLES:
        assert (root / rel).is_file() and not (root / rel[:-3]).exists(), rel
        raw = (root / rel).read_bytes()
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip magic; mtime 0: same bytes every run
    plain_root = tmp_path / "plain"
    plain = make_reflacx(plain_root, N_REFLACX, seed=3, size=SIZE, gzip_tables=False)
    assert plain["files_written"] == summary["files_written"]
    for rel in MIMIC_TABLES:
        assert not (plain_root / rel).exists()
        assert gzip.decompress((root / rel).read_bytes()) == (plain_root / rel[:-3]).read_bytes(), rel
    others = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix != ".gz")
    assert len(others) > len(MIMIC_TABLES)
    assert all((root / p).read_bytes() == (plain_root / p).read_bytes() for p in others)


def _make_synthetic_tool():
    return load_tool("make_synthetic")


def test_make_synthetic_cli_unzipped_tables(tmp_path):
    make_synthetic_main = _make_synthetic_tool().main
    assert make_synthetic_main(["--format", "reflacx", "--out", str(tmp_path / "z"), "--images", "6", "--size", "96"]) == 0
    assert make_synthetic_main(
        ["--format", "reflacx", "--out", str(tmp_path / "u"), "--images", "6", "--size", "96", "--unzipped-tables"]
    ) == 0
    for rel in MIMIC_TABLES:
        assert (tmp_path / "z" / rel).is_file() and not (tmp_path / "z" / rel[:-3]).exists()
        assert (tmp_path / "u" / rel[:-3]).is_file() and not (tmp_path / "u" / rel).exists()


def test_reflacx_metadata_columns_and_ids(reflacx, reflacx_meta):
    root, summary = reflacx
    for phase, labels in ((1, REFLACX_PHASE1_LABELS), (2, REFLACX_LABELS), (3, REFLACX_LABELS)):
        header = (root / f"reflacx/main_data/metadata_phase_{phase}.csv").read_text().splitlines()[0].split(",")
        assert header == META_HEAD + sorted(labels)
    m = reflacx_meta
    assert m["id"].is_unique
    pattern = {1: r"^P1\d\dR\d{6}$", 2: r"^P2\d\dR\d{6}$", 3: r"^P300R\d{6}$"}
    assert all(re.match(pattern[p], rid) for rid, p in zip(m["id"], m["phase"]))
    assert all(re.match(r"^1\d{7}$", s) for s in m["subject_id"])
    assert all(re.match(r"^([0-9a-f]{8}-){4}[0-9a-f]{8}$", d) for d in m["dicom_id"])
    # Phases: >= 2 images in phases 1 and 2 with 5 readings each, one reading per phase-3 image.
    per_image = m.groupby("dicom_id").agg(phase=("phase", "first"), readings=("id", "size"), phases=("phase", "nunique"))
    assert (per_image["phases"] == 1).all() and per_image.shape[0] == N_REFLACX
    for phase in (1, 2):
        assert (per_image["phase"] == phase).sum() >= 2
        assert (per_image.loc[per_image["phase"] == phase, "readings"] == 5).all()
    assert (per_image.loc[per_image["phase"] == 3, "readings"] == 1).all()
    # Splits per subject, all three present.
    assert set(m["split"]) == {"train", "validate", "test"}
    assert (m.groupby("subject_id")["split"].nunique() == 1).all()
    assert summary["images_per_split"]["train"] > summary["images_per_split"]["test"] > 0
    # Image path points into MIMIC-CXR; label cells are certainties / booleans / text.
    for _, row in m.iterrows():
        s = row["subject_id"]
        assert re.match(rf"^physionet\.org/files/mimic-cxr/2\.0\.0/files/p{s[:2]}/p{s}/s5\d{{7}}/{row['dicom_id']}\.dcm$", row["image"])
    assert set(m["eye_tracking_data_discarded"]) == {"True", "False"}
    assert set(m["Support devices"]) <= {"True", "False"}
    lesion_cells = m[[c for c in REFLACX_LABELS if c in REFLACX_LESION_LABELS]].to_numpy().ravel()
    assert set(lesion_cells) <= {"", "0", "1", "2", "3", "4", "5"} and {"3", "4", "5"} & set(lesion_cells)


def test_reflacx_ellipses(reflacx_meta, ellipses):
    phase_of = dict(zip(reflacx_meta["id"], reflacx_meta["phase"]))
    phase1_only = set(REFLACX_PHASE1_TO_LABEL)  # names that exist only in phase 1
    later_only = set(REFLACX_LABELS) - set(REFLACX_PHASE1_LABELS)
    n_rows = multi = empty_files = 0
    for rid, frame in ellipses.items():
        labels = REFLACX_PHASE1_LABELS if phase_of[rid] == 1 else REFLACX_LABELS
        assert list(frame.columns) == ["xmin", "ymin", "xmax", "ymax", "certainty"] + sorted(labels)
        if frame.empty:
            empty_files += 1
            continue
        rows = _true_labels(frame)
        assert all(len(r) >= 1 for r in rows), rid
        used = {l for r in rows for l in r}
        if phase_of[rid] == 1:
            assert not used & later_only
        else:
            assert not used & phase1_only
        for col in ("xmin", "ymin", "xmax", "ymax"):
            assert frame[col].str.fullmatch(r"-?\d+").all()
        assert (frame["xmin"].astype(int) < frame["xmax"].astype(int)).all()
        assert frame["certainty"].isin(list("12345")).all()
        n_rows += len(frame)
        multi += sum(len(r) >= 2 for r in rows)
    assert empty_files >= 1  # normal images
    assert 0 < multi < 0.2 * n_rows


def test_reflacx_reading_folders_and_gaze(reflacx, reflacx_meta):
    root = reflacx[0]
    for rid in reflacx_meta["id"]:
        folder = root / "reflacx/main_data" / rid
        for name in ("chest_bounding_box.csv", "fixations.csv", "timestamps_transcription.csv", "transcription.txt"):
            assert (folder / name).is_file(), f"{rid}/{name}"
        assert (root / "reflacx/gaze_data" / rid / "gaze.csv").is_file()
    chest = _strings(root / "reflacx/main_data" / reflacx_meta["id"][0] / "chest_bounding_box.csv")
    assert list(chest.columns) == ["xmin", "ymin", "xmax", "ymax"] and len(chest) == 1
    words = _strings(root / "reflacx/main_data" / reflacx_meta["id"][0] / "timestamps_transcription.csv")
    assert list(words.columns) == ["word", "timestamp_start_word", "timestamp_end_word"] and len(words) > 0


def test_reflacx_images_match_metadata(reflacx, reflacx_meta):
    root = reflacx[0]
    cxr = _strings(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    assert list(cxr.columns) == [
        "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
        "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ]
    cxr = cxr.set_index("dicom_id")
    sizes = set()
    for _, row in reflacx_meta.drop_duplicates("dicom_id").iterrows():
        c = cxr.loc[row["dicom_id"]]
        s = row["subject_id"]
        img = cv2.imread(str(root / f"mimic-cxr-jpg/files/p{s[:2]}/p{s}/s{c['study_id']}/{row['dicom_id']}.jpg"), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.ndim == 2 and img.dtype == np.uint8
        assert img.shape == (int(row["image_size_y"]), int(row["image_size_x"]))
        assert (int(c["Rows"]), int(c["Columns"])) == img.shape
        assert 2110 <= int(c["StudyDate"][:4]) <= 2190 and c["ViewPosition"] in ("PA", "AP")
        sizes.add(img.shape)
    heights, widths = zip(*sizes)
    assert len(sizes) > 5 and any(h > w for h, w in sizes) and any(w > h for h, w in sizes)
    assert 0.8 * SIZE <= min(heights + widths) and max(heights + widths) <= 1.2 * SIZE


def _study_times(root):
    cxr = _strings(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    out = {}
    for _, row in cxr.iterrows():
        t = float(row["StudyTime"])
        hhmmss = f"{int(t):06d}"
        frac = t - int(t)
        out[row["dicom_id"]] = (
            int(row["subject_id"]),
            datetime.strptime(row["StudyDate"] + hhmmss, "%Y%m%d%H%M%S") + timedelta(seconds=frac),
        )
    return out


def _image_labels(reflacx_meta, ellipses):
    """dicom_id -> set of labels (phase-2/3 names) over all its readings."""
    labels = defaultdict(set)
    for rid, dicom_id in zip(reflacx_meta["id"], reflacx_meta["dicom_id"]):
        for row in _true_labels(ellipses[rid]):
            labels[dicom_id].update(REFLACX_PHASE1_TO_LABEL.get(l, l) for l in row)
    return labels


def test_lookalikes_never_cooccur_and_differ_clinically(reflacx, reflacx_meta, ellipses):
    root = reflacx[0]
    labels = _image_labels(reflacx_meta, ellipses)
    for dicom_id, group in reflacx_meta.groupby("dicom_id"):
        in_meta = {c for c in ("Consolidation", "Pulmonary edema") if group[c].isin(list("12345")).any()}
        assert not ({"Consolidation", "Pulmonary edema"} <= (labels[dicom_id] | in_meta)), dicom_id
    assert render.REFLACX_CLASS_PAINTERS["Consolidation"] == render.REFLACX_CLASS_PAINTERS["Pulmonary edema"]

    times = _study_times(root)
    stays = _strings(root / "mimic-iv-ed/ed/edstays.csv.gz")
    triage = _strings(root / "mimic-iv-ed/ed/triage.csv.gz").set_index("stay_id")
    patients = _strings(root / "mimic-iv/hosp/patients.csv.gz").set_index("subject_id")
    values = {"Consolidation": defaultdict(list), "Pulmonary edema": defaultdict(list)}
    matched = 0
    for dicom_id, (subject, when) in times.items():
        mine = stays[stays["subject_id"] == str(subject)]
        inside = mine[(pd.to_datetime(mine["intime"]) <= when) & (when <= pd.to_datetime(mine["outtime"]))]
        if inside.empty:
            continue
        matched += 1
        kind = [k for k in values if k in labels[dicom_id]]
        if not kind:
            continue
        tri = triage.loc[inside["stay_id"].iloc[0]]
        temp = pd.to_numeric(tri["temperature"], errors="coerce")
        if 90 < temp < 110:  # Fahrenheit, not missing or Celsius
            values[kind[0]]["temperature"].append(temp)
        sbp = pd.to_numeric(tri["sbp"], errors="coerce")
        if 60 < sbp < 250:
            values[kind[0]]["sbp"].append(sbp)
        p = patients.loc[str(subject)]
        values[kind[0]]["age"].append(int(p["anchor_age"]) + when.year - int(p["anchor_year"]))
    assert 0.6 * N_REFLACX <= matched <= 0.95 * N_REFLACX
    cons, edema = values["Consolidation"], values["Pulmonary edema"]
    assert len(cons["temperature"]) >= 3 and len(edema["temperature"]) >= 3
    assert np.mean(cons["temperature"]) > np.mean(edema["temperature"]) + 1.5
    assert np.mean(edema["sbp"]) > np.mean(cons["sbp"]) + 20
    assert np.mean(edema["age"]) > np.mean(cons["age"])


def test_clinical_tables_layout_and_dirt(reflacx):
    root, summary = reflacx
    stays = _strings(root / "mimic-iv-ed/ed/edstays.csv.gz")
    triage = _strings(root / "mimic-iv-ed/ed/triage.csv.gz")
    patients = _strings(root / "mimic-iv/hosp/patients.csv.gz")
    assert list(stays.columns) == ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "race", "arrival_transport", "disposition"]
    assert list(triage.columns) == ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity", "chiefcomplaint"]
    assert list(patients.columns) == ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
    assert stays["stay_id"].is_unique and set(triage["stay_id"]) == set(stays["stay_id"])
    assert stays["intime"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
    assert patients["anchor_year_group"].str.fullmatch(r"\d{4} - \d{4}").all()
    ages = patients["anchor_age"].astype(int)
    assert ages.max() <= 91 and not (ages == 90).any()
    # Decoys: stays of subjects that have no REFLACX image.
    cxr_subjects = set(_strings(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")["subject_id"])
    assert not set(stays["subject_id"]) <= cxr_subjects

    temp = pd.to_numeric(triage["temperature"], errors="coerce")
    assert ((temp > 30) & (temp < 45)).any()  # entered in Celsius
    assert (temp.dropna() > 90).mean() > 0.8  # mostly Fahrenheit
    for col in ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity"):
        assert not (triage[col] == "").all()
    assert (triage[["temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity"]] == "").any(axis=None)
    assert {"unable", "uta", "8-9"} <= set(triage["pain"])
    assert "88" in set(triage["pain"])
    assert (pd.to_numeric(triage["dbp"], errors="coerce") == 278).any()
    assert (pd.to_numeric(triage["resprate"], errors="coerce") == 62).any()
    assert (pd.to_numeric(triage["o2sat"], errors="coerce") == 58).any()
    # Never more than one kind of dirt in one row.
    dirty = (
        ((temp > 30) & (temp < 45)).astype(int)
        + (~triage["pain"].str.fullmatch(r"\d*")).astype(int)
        + (triage["pain"] == "88").astype(int)
        + (pd.to_numeric(triage["dbp"], errors="coerce") == 278).astype(int)
        + (pd.to_numeric(triage["resprate"], errors="coerce") == 62).astype(int)
        + (pd.to_numeric(triage["o2sat"], errors="coerce") == 58).astype(int)
    )
    assert dirty.max() == 1
    assert summary["images_with_ed_stay"]["nearby"] >= 1


def test_reflacx_dicoms_and_overwrite_rules(tmp_path):
    root = tmp_path / "d"
    make_reflacx(root, 6, seed=0, size=96, write_dicom=True)
    dcms = sorted((root / "mimic-cxr").rglob("*.dcm"))
    assert len(dcms) == 6
    ds = pydicom.dcmread(dcms[0])
    jpg = next((root / "mimic-cxr-jpg").rglob(dcms[0].stem + ".jpg"))
    assert ds.pixel_array.shape == cv2.imread(str(jpg), 0).shape
    make_reflacx(root, 6, seed=1, size=96, write_dicom=True)  # own output is replaced
    assert len(list((root / "mimic-cxr").rglob("*.dcm"))) == 6
    foreign = tmp_path / "real"
    (foreign / "reflacx").mkdir(parents=True)
    (foreign / "reflacx" / "precious.csv").write_text("x\n")
    with pytest.raises(FileExistsError):
        make_reflacx(foreign, 6, seed=0, size=96)
    assert (foreign / "reflacx" / "precious.csv").is_file()


# ----------------------------------------------------------------------------- VinDr


def _display(ds):
    """Display-correct float image: modality LUT, VOI/window, MONOCHROME1 inversion."""
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if "WindowCenter" in ds:
        values = apply_voi_lut(values, ds).astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = values.max() - values
    return values


def test_vindr_dicoms(vindr_physionet):
    root, summary = vindr_physionet
    files = sorted((root / "vindr-cxr").rglob("*.dicom"))
    assert len(files) == N_VINDR
    photometric, bits = set(), set()
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{32}", path.stem)
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.BitsAllocated == 16 and ds.BitsStored in (12, 14, 16)
        assert int(ds.pixel_array.max()) < 2 ** ds.BitsStored
        assert 0.8 * SIZE <= ds.Rows <= 1.2 * SIZE and 0.8 * SIZE <= ds.Columns <= 1.2 * SIZE
        photometric.add(ds.PhotometricInterpretation)
        bits.add(int(ds.BitsStored))
        img = _display(ds)
        h, w = img.shape
        mediastinum = img[int(0.3 * h) : int(0.45 * h), int(0.48 * w) : int(0.52 * w)].mean()
        lung = img[int(0.35 * h) : int(0.45 * h), int(0.25 * w) : int(0.32 * w)].mean()
        assert mediastinum > lung, f"{path.name} ({ds.PhotometricInterpretation}) displays inverted"
    assert photometric == {"MONOCHROME1", "MONOCHROME2"} and len(bits) >= 2
    assert summary["images_per_split"] == {"train": len(list((root / "vindr-cxr/train").iterdir())), "test": len(list((root / "vindr-cxr/test").iterdir()))}


def test_vindr_physionet_annotations(vindr_physionet):
    root, _ = vindr_physionet
    ann = root / "vindr-cxr/annotations"
    train = _strings(ann / "annotations_train.csv")
    test = _strings(ann / "annotations_test.csv")
    for frame in (train, test):
        assert list(frame.columns) == ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"]
        assert set(frame["class_name"]) <= set(VINDR_KAGGLE_CLASSES) | {"No finding"}
        nf = frame["class_name"] == "No finding"
        assert nf.any() and (frame.loc[nf, ["x_min", "y_min", "x_max", "y_max"]] == "").all(axis=None)
        boxes = frame.loc[~nf, ["x_min", "y_min", "x_max", "y_max"]].astype(float)
        assert len(boxes) and (boxes["x_min"] < boxes["x_max"]).all() and (boxes["y_min"] < boxes["y_max"]).all()
    readers = train.groupby("image_id")["rad_id"].apply(lambda r: sorted(set(r)))
    assert all(len(r) == 3 for r in readers) and set(train["rad_id"]) <= {f"R{i}" for i in range(1, 18)}
    assert set(readers.index) == {p.stem for p in (root / "vindr-cxr/train").iterdir()}
    assert (test["rad_id"] == "").all()
    assert set(test["image_id"]) == {p.stem for p in (root / "vindr-cxr/test").iterdir()}
    labels_train = _strings(ann / "image_labels_train.csv")
    labels_test = _strings(ann / "image_labels_test.csv")
    cols = list(VINDR_LOCAL_LABELS) + list(VINDR_GLOBAL_LABELS)
    assert list(labels_train.columns) == ["image_id", "rad_id"] + cols
    assert list(labels_test.columns) == ["image_id"] + cols
    assert len(labels_train) == 3 * len(readers)
    assert set(labels_train[cols].to_numpy().ravel()) <= {"0", "1"}
    # A reader's image labels agree with the boxes they drew.
    for _, row in labels_train.head(20).iterrows():
        drawn = set(train[(train["image_id"] == row["image_id"]) & (train["rad_id"] == row["rad_id"])]["class_name"]) - {"No finding"}
        assert drawn == {c for c in VINDR_LOCAL_LABELS if row[c] == "1"}
        assert (row["No finding"] == "1") == (not drawn)


def test_vindr_kaggle_layout(vindr_kaggle, vindr_physionet):
    root, _ = vindr_kaggle
    train = _strings(root / "vindr-cxr/train.csv")
    assert list(train.columns) == ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
    names = list(VINDR_KAGGLE_CLASSES) + ["No finding"]
    assert all(names[int(cid)] == name for cid, name in zip(train["class_id"], train["class_name"]))
    nf = train["class_id"] == "14"
    assert nf.any() and (train.loc[nf, ["x_min", "y_min", "x_max", "y_max"]] == "").all(axis=None)
    assert not (root / "vindr-cxr/annotations").exists()
    test_ids = {p.stem for p in (root / "vindr-cxr/test").iterdir()}
    assert test_ids and not test_ids & set(train["image_id"])
    stems = {p.stem for p in (root / "vindr-cxr").rglob("*.dicom")}
    assert stems == {hashlib.md5(f"1-{k}".encode()).hexdigest() for k in range(N_VINDR)}
    # Same seed -> same images whatever the layout.
    other = vindr_physionet[0]
    for p in sorted((root / "vindr-cxr/train").iterdir())[:3]:
        assert p.read_bytes() == (other / "vindr-cxr/train" / p.name).read_bytes()


def test_vindr_deterministic(vindr_kaggle, tmp_path):
    make_vindr(tmp_path, N_VINDR, seed=1, size=SIZE, layout="kaggle")
    assert (tmp_path / "vindr-cxr/train.csv").read_bytes() == (vindr_kaggle[0] / "vindr-cxr/train.csv").read_bytes()
    make_vindr(tmp_path, N_VINDR, seed=2, size=SIZE, layout="kaggle")
    assert (tmp_path / "vindr-cxr/train.csv").read_bytes() != (vindr_kaggle[0] / "vindr-cxr/train.csv").read_bytes()


# ----------------------------------------------------------------------------- render, writer, tool


def test_every_class_has_a_painter_and_boxes_cover_lesions():
    assert set(REFLACX_LESION_LABELS) <= set(render.REFLACX_CLASS_PAINTERS)
    assert set(VINDR_KAGGLE_CLASSES) == set(render.VINDR_CLASS_PAINTERS)
    vindr_specs = list(render.VINDR_CLASS_PAINTERS.values())
    assert len({(p, tuple(sorted(k.items()))) for p, k in vindr_specs}) == len(vindr_specs)  # all distinct
    rng = np.random.default_rng(0)
    for name, fn in render.PAINTERS.items():
        for _ in range(3):
            img, anat = render_background(rng, 520, 480)
            paint = fn(img, anat, rng)
            assert paint is not None, name
            x0, y0, x1, y1 = paint.box
            assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 520, name
            assert max(x1 - x0, y1 - y0) >= 15 and max(x1 - x0, y1 - y0) <= 400, name
            full = np.zeros_like(img)
            h, w = paint.delta.shape
            full[paint.y0 : paint.y0 + h, paint.x0 : paint.x0 + w] = np.abs(paint.delta)
            inside = full[y0:y1, x0:x1].sum()
            assert inside >= 0.7 * full.sum(), f"{name}: box misses the painted lesion"


def test_dicom_writer_round_trip(tmp_path):
    display = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (32, 1))
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        stored, (lo, hi) = encode_display(display, 12, photometric)
        path = write_dicom(tmp_path / f"{photometric}.dcm", stored, bits_stored=12, photometric=photometric,
                           window=((lo + hi) / 2 - 1024, hi - lo), rescale=(1.0, -1024.0), patient_age="065Y", patient_sex="F")
        ds = pydicom.dcmread(path)
        assert np.array_equal(ds.pixel_array, stored) and ds.PatientAge == "065Y"
        shown = _display(ds)[0]
        assert np.all(np.diff(shown) >= 0) and shown[-1] > shown[0]
    with pytest.raises(ValueError):
        write_dicom(tmp_path / "bad.dcm", np.full((4, 4), 5000, np.uint16), bits_stored=12)


def test_tool_runs_and_prints_summary(tmp_path, capsys):
    tool = load_tool("make_synthetic")
    assert tool.main(["--format", "vindr", "--layout", "kaggle", "--out", str(tmp_path), "--images", "5", "--seed", "0", "--size", "96"]) == 0
    out = capsys.readouterr().out
    assert "files written: 6" in out and "images per split" in out and "annotations per class" in out
    assert (tmp_path / "vindr-cxr/train.csv").is_file()
