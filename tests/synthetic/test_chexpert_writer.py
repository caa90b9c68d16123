"""Synthetic CheXpert-v1.0-small: layout as shipped, rare cells present, deterministic."""
import csv
import hashlib
import subprocess
import sys

import pytest

from cxr_det.synthetic.chexpert_writer import make_chexpert
from helpers import ROOT, load_tool

HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
).split(",")
CHEXPERT_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")


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



def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_label_rule_and_summary(tmp_path):
    """Prevalences 8-55% per observation, "No Finding" only without a pathology, counts as summarised."""
    from cxr_det.formats.chexpert_format import CHEXPERT_OBSERVATIONS

    s = make_chexpert(tmp_path, 150, seed=2, size=16)
    rows = _rows(tmp_path / "chexpert" / "CheXpert-v1.0-small" / "train.csv")
    assert len(rows) == s["train_rows"]
    for name in CHEXPERT_OBSERVATIONS:
        cells = [r[name] for r in rows]
        counts = s["label_counts"]["train"][name]
        assert counts == {"positive": cells.count("1.0"), "negative": cells.count("0.0"),
                          "uncertain": cells.count("-1.0"), "blank": cells.count("")}
        assert 0.08 < (counts["positive"] + counts["uncertain"]) / len(rows) < 0.55, name
    pathologies = [n for n in CHEXPERT_OBSERVATIONS if n not in ("No Finding", "Support Devices")]
    for r in rows:
        sick = any(r[n] in ("1.0", "-1.0") for n in pathologies)
        assert r["No Finding"] == ("" if sick else "1.0")
    valid = _rows(tmp_path / "chexpert" / "CheXpert-v1.0-small" / "valid.csv")
    for r in valid:
        sick = any(r[n] == "1.0" for n in pathologies)
        assert r["No Finding"] == ("0.0" if sick else "1.0")


def test_images_of_a_study_show_its_findings(tmp_path):
    """Frontal and lateral images of one study are different pictures with the same labels."""
    import cv2

    make_chexpert(tmp_path, 1, seed=0, size=32, n_valid_patients=0)
    rows = _rows(tmp_path / "chexpert" / "CheXpert-v1.0-small" / "train.csv")
    by_study = {}
    for r in rows:
        by_study.setdefault(r["Path"].rsplit("/", 1)[0], []).append(r)
    study = next(v for v in by_study.values() if len(v) == 2)  # patient 1 always has a lateral
    assert [r["Frontal/Lateral"] for r in study] == ["Frontal", "Lateral"]
    assert [v for k, v in study[0].items() if k not in CHEXPERT_META] == [v for k, v in study[1].items() if k not in CHEXPERT_META]
    a, b = (cv2.imread(str(tmp_path / "chexpert" / r["Path"]), cv2.IMREAD_GRAYSCALE) for r in study)
    assert a is not None and b is not None and (a.shape != b.shape or (a != b).any())


def test_make_synthetic_cli(tmp_path, capsys):
    """tools/make_synthetic.py --format chexpert writes the layout and prints the label table;
    a missing --patients or a layout of another format is a usage error."""
    tool = [sys.executable, str(ROOT / "tools" / "make_synthetic.py")]
    done = subprocess.run(tool + ["--format", "chexpert", "--out", str(tmp_path), "--patients", "5", "--size", "16",
                                  "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train.csv rows" in done.stdout and "prevalence" in done.stdout and "Atelectasis" in done.stdout
    assert (tmp_path / "chexpert" / "CheXpert-v1.0-small" / "valid.csv").is_file()
    parse_args = load_tool("make_synthetic").parse_args
    for args, message in ((["--format", "chexpert", "--out", "x"], "needs --patients"),
                          (["--format", "chexpert", "--out", "x", "--patients", "2", "--layout", "flat"], "does not apply")):
        with pytest.raises(SystemExit):
            parse_args(args)
        assert message in capsys.readouterr().err
