"""Synthetic CheXpert-v1.0-small: layout as shipped, rare cells present, deterministic."""
import csv
import hashlib

import pytest

from cxr_det.synthetic.chexpert_writer import make_chexpert

HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
).split(",")


def _digest(root):
    h = hashlib.md5()
    for p in sorted((root / "chexpert").rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_cells(tmp_path):
    s = make_chexpert(tmp_path, 12, seed=1, size=32)
    base = tmp_path / "chexpert" / "CheXpert-v1.0-small"
    with open(base / "train.csv", newline="") as f:
        train = list(csv.reader(f))
    with open(base / "valid.csv", newline="") as f:
        valid = list(csv.reader(f))
    assert train[0] == HEADER and valid[0] == HEADER
    assert len(train) - 1 == s["train_rows"] and len(valid) - 1 == s["valid_rows"] >= 1
    for r in train[1:] + valid[1:]:
        assert r[0].startswith("CheXpert-v1.0-small/")
        assert (tmp_path / "chexpert" / r[0]).is_file()
        assert (r[3] == "Lateral") == (r[4] == "") and r[0].endswith(f"_{r[3].lower()}.jpg")
    cells = [c for r in train[1:] for c in r[5:]]
    assert "-1.0" in cells and "" in cells and "1.0" in cells and "0.0" in cells
    assert {c for r in valid[1:] for c in r[5:]} <= {"0.0", "1.0"}
    assert any(r[1] == "Unknown" for r in train[1:]) and any(r[2] == "0" for r in train[1:])
    assert any(r[3] == "Lateral" for r in train[1:])
    studies = {}
    for r in train[1:]:
        patient, study = r[0].split("/")[2:4]
        studies.setdefault(patient, set()).add(study)
    assert max(len(v) for v in studies.values()) >= 2
    assert s["uncertain_cells"] > 0 and s["blank_cells"] > 0


def test_deterministic(tmp_path):
    make_chexpert(tmp_path / "a", 6, seed=5, size=32)
    make_chexpert(tmp_path / "b", 6, seed=5, size=32)
    make_chexpert(tmp_path / "c", 6, seed=6, size=32)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "chexpert").mkdir()
    (tmp_path / "chexpert" / "real.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_chexpert(tmp_path, 2, seed=0)

