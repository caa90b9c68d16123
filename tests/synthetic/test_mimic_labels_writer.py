"""Synthetic MIMIC-CXR-JPG image labels: read back by the registrar, joined to MIMIC-IV-ED /
MIMIC-IV as REFLACX images are, the clinical-only label predicted by the joined age."""
import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr_det.data.clinical.tables import load_reflacx_clinical
from cxr_det.data.datasets.mimic_cxr_labels import load_mimic_cxr_labels
from cxr_det.data.datasets.observation_labels import resolve_label_set
from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_OBSERVATIONS
from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels
from helpers import ROOT


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_mimic_labels_writer_reads_back(tmp_path):
    """The synthetic MIMIC-CXR-JPG label tables load with every image of the split file."""
    s = make_mimic_cxr_labels(tmp_path, 8, seed=2, size=32)
    assert (tmp_path / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz").is_file()
    recs = load_mimic_cxr_labels(tmp_path, "all", views="all", labels="all14", uncertainty="ignore")
    assert len(recs) == s["images"]
    assert sum(r["split"] == "val" for r in recs) == s["images_per_split"]["validate"] >= 1
    assert any(0.0 in r["label_weights"] for r in recs)
    frontal = load_mimic_cxr_labels(tmp_path, "all")
    assert len(frontal) == s["views"]["PA"] + s["views"]["AP"]
    make_mimic_cxr_labels(tmp_path / "plain", 3, seed=2, size=32, gzipped=False)
    assert (tmp_path / "plain" / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-split.csv").is_file()
    assert (tmp_path / "plain" / "mimic-iv-ed" / "ed" / "triage.csv").is_file()


def test_join_gives_the_age_that_made_atelectasis(tmp_path):
    """Every image joins a clinical record (the REFLACX join, by dicom_id); images of a study share
    its time and labels; Atelectasis is predicted by the joined age, not by the other labels."""
    s = make_mimic_cxr_labels(tmp_path, 120, seed=0, size=16)
    recs = load_mimic_cxr_labels(tmp_path, "all", views="all", labels="all14", uncertainty="ones")
    names = resolve_label_set("all14", MIMIC_CXR_OBSERVATIONS, "test")
    table = load_reflacx_clinical(tmp_path, dicom_ids=[r["dicom_id"] for r in recs])
    assert len(table) == len(recs) == s["images"]
    assert {r["match"] for r in table.values()} == {"inside", "nearest", "none"}
    age = np.array([table[r["dicom_id"]]["age"] for r in recs])
    assert not np.isnan(age).any() and 18 <= age.min() and age.max() <= 100
    y = np.array([r["labels"] for r in recs])
    study = np.array([r["study_id"] for r in recs])
    for sid in np.unique(study):  # one label row and one age per study
        assert (y[study == sid] == y[study == sid][0]).all() and np.ptp(age[study == sid]) == 0
    atelectasis = y[:, names.index("Atelectasis")]
    assert 0.1 < atelectasis.mean() < 0.5
    assert roc_auc_score(atelectasis, age) > 0.8
    for name in ("Cardiomegaly", "Pleural Effusion", "Edema", "Consolidation"):
        assert abs(roc_auc_score(y[:, names.index(name)], age) - 0.5) < 0.15, name
    meta = pd.read_csv(tmp_path / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert len(meta) == s["images"] and meta.groupby("study_id")[["StudyDate", "StudyTime"]].nunique().max().max() == 1


def test_deterministic_and_safe(tmp_path):
    make_mimic_cxr_labels(tmp_path / "a", 4, seed=5, size=16)
    make_mimic_cxr_labels(tmp_path / "b", 4, seed=5, size=16)
    make_mimic_cxr_labels(tmp_path / "c", 4, seed=6, size=16)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    (tmp_path / "d" / "mimic-iv").mkdir(parents=True)
    (tmp_path / "d" / "mimic-iv" / "real.csv").write_text("x")
    with pytest.raises(FileExistsError):
        make_mimic_cxr_labels(tmp_path / "d", 3, seed=0)
    with pytest.raises(ValueError, match="at least 3"):
        make_mimic_cxr_labels(tmp_path / "e", 2, seed=0)


def test_make_synthetic_cli(tmp_path):
    """tools/make_synthetic.py --format mimic-labels writes the label and clinical tables (plain
    .csv with --unzipped-tables) and prints the counts."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_synthetic.py"), "--format", "mimic-labels", "--out",
                           str(tmp_path), "--patients", "4", "--size", "16", "--unzipped-tables"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "subjects: 4" in done.stdout and "ED stays" in done.stdout and "Atelectasis" in done.stdout
    assert (tmp_path / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-negbio.csv").is_file()
    assert (tmp_path / "mimic-iv" / "hosp" / "patients.csv").is_file()
