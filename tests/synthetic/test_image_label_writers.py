"""Synthetic image-level classification writers: layouts as shipped, disagreements, labels that
follow the painted lesions, DICOM folders, determinism."""
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.image_folder import load_image_folder
from cxr_det.data.datasets.vindr_image_labels import load_vindr_image_labels
from cxr_det.data.image_io import read_gray
from cxr_det.formats.vindr_format import VINDR_LOCAL_LABELS
from cxr_det.synthetic.image_label_writers import COVID_CLASSES, make_image_folder, make_vindr_image_labels
from helpers import ROOT


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_vindr_image_labels_layout_and_disagreement(tmp_path):
    summary = make_vindr_image_labels(tmp_path, 30, seed=1, size=48, disagreement=0.5)
    labels = tmp_path / "vindr-cxr" / "annotations"
    train_head, test_head = header(labels / "image_labels_train.csv"), header(labels / "image_labels_test.csv")
    assert train_head[:2] == ["image_id", "rad_id"] and "Other diseases" in train_head and len(train_head) == 30
    assert test_head[0] == "image_id" and "Other disease" in test_head and "Other diseases" not in test_head
    info = summary["image_labels"]
    assert info["train_rows"] == 3 * info["train_images"] and info["images_with_a_disagreeing_reader"] > 0
    skips = SkipLog("test")
    major = load_vindr_image_labels(tmp_path, "all", task="abnormal", val_fraction=0.0, skip_log=skips)
    anyp = load_vindr_image_labels(tmp_path, "all", task="abnormal", readers="any", val_fraction=0.0)
    assert not skips.counts and len(major) == 30
    assert [r["label"] for r in major] != [r["label"] for r in anyp]
    multi = load_vindr_image_labels(tmp_path, "train", val_fraction=0.0)
    assert all(len(r["readers"]) == 3 for r in multi)


def test_vindr_image_labels_deterministic(tmp_path):
    make_vindr_image_labels(tmp_path / "a", 12, seed=5, size=32)
    make_vindr_image_labels(tmp_path / "b", 12, seed=5, size=32)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_vindr_image_labels(tmp_path / "c", 12, seed=6, size=32)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_image_folder_layouts(tmp_path):
    make_image_folder(tmp_path, "chest_xray", 3, seed=0, layout="split", stray_files=True)
    skips = SkipLog("test")
    train = load_image_folder(tmp_path, "chest_xray", "train", skip_log=skips)
    assert len(train) == 6 and skips.counts == {"not an image file (suffix)": 2}
    assert train[0]["file_name"].endswith(".jpeg")
    make_image_folder(tmp_path, "covid", 5, seed=0, layout="flat")
    records = load_image_folder(tmp_path, "covid", "all")
    assert len(records) == 20 and sorted({r["class_name"] for r in records}) == sorted(COVID_CLASSES)
    assert (tmp_path / "covid" / "COVID" / "masks" / "COVID-0.png").is_file()


def test_image_folder_deterministic_and_safe(tmp_path):
    make_image_folder(tmp_path / "a", "x", 2, seed=4, layout="flat")
    make_image_folder(tmp_path / "b", "x", 2, seed=4, layout="flat")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_image_folder(tmp_path / "a", "x", 2, seed=4, layout="flat")  # its own folder: rewritten
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / "real.png").write_bytes(b"real")
    with pytest.raises(FileExistsError):
        make_image_folder(tmp_path / "c", "x", 2, seed=4)
    with pytest.raises(ValueError, match="layout"):
        make_image_folder(tmp_path / "d", "x", 2, seed=4, layout="nested")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_vindr_local_labels_follow_the_boxes(tmp_path):
    """Without added disagreement, each reader's local labels are the classes they boxed (the
    painted lesions), "No finding" an image they boxed nothing on; the summary counts agree."""
    summary = make_vindr_image_labels(tmp_path, 24, seed=3, size=32, disagreement=0.0)
    ann = tmp_path / "vindr-cxr" / "annotations"
    for split, key in (("train", ("image_id", "rad_id")), ("test", ("image_id",))):
        boxed = {}
        for r in rows(ann / f"annotations_{split}.csv"):
            found = boxed.setdefault(tuple(r[k] for k in key), set())
            if r["class_name"] != "No finding":
                found.add(r["class_name"])
        labels = rows(ann / f"image_labels_{split}.csv")
        assert len(labels) == len(boxed)
        for r in labels:
            local = {name for name in VINDR_LOCAL_LABELS if r[name] == "1"}
            assert local == boxed[tuple(r[k] for k in key)]
            assert r["No finding"] == ("0" if local else "1")
    info = summary["image_labels"]
    assert info["images_with_a_disagreeing_reader"] == 0
    assert info["train_positives_majority"]["No finding"] + sum(
        1 for r in load_vindr_image_labels(tmp_path, "train", task="abnormal", val_fraction=0.0) if r["label"] == 1
    ) == info["train_images"]
    assert sum(int(r["No finding"]) for r in rows(ann / "image_labels_test.csv")) == info["test_positives"]["No finding"]


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_image_folder_dicom_reads_back_as_the_png(tmp_path, layout):
    """image_format="dicom" writes 12-bit DICOMs whose window shows the picture the PNG holds;
    "mixed" gives all three kinds, read by the registrar."""
    make_image_folder(tmp_path / "p", "x", 2, seed=1, layout=layout, image_format="png")
    make_image_folder(tmp_path / "d", "x", 2, seed=1, layout=layout, image_format="dicom")
    png = load_image_folder(tmp_path / "p", "x", "all", val_fraction=0.0)
    dcm = load_image_folder(tmp_path / "d", "x", "all", val_fraction=0.0)
    assert [r["class_name"] for r in png] == [r["class_name"] for r in dcm] and all(r["file_name"].endswith(".dcm") for r in dcm)
    for a, b in zip(png, dcm):
        diff = read_gray(a["file_name"]).astype(int) - read_gray(b["file_name"]).astype(int)
        assert np.abs(diff).max() <= 1
    s = make_image_folder(tmp_path / "m", "x", 3, seed=1, layout=layout, image_format="mixed")
    mixed = load_image_folder(tmp_path / "m", "x", "all", val_fraction=0.0)
    assert {Path(r["file_name"]).suffix for r in mixed} == {".png", ".jpeg", ".dcm"} and len(mixed) == s["images"]
    with pytest.raises(ValueError, match="image_format"):
        make_image_folder(tmp_path / "z", "x", 1, seed=1, image_format="tiff")


@pytest.mark.parametrize("args, expect", [
    (["--format", "vindr-labels", "--images", "6", "--size", "32", "--disagreement", "0.5"],
     ["vindr-cxr/annotations/image_labels_train.csv", "vindr-cxr/annotations/image_labels_test.csv"]),
    (["--format", "folder", "--images", "3", "--layout", "flat", "--name", "covid", "--classes", "A,B",
      "--image-format", "mixed"], ["covid/A/images/A-2.dcm", "covid/B/masks/B-0.png", "covid/B.metadata.csv"]),
])
def test_make_synthetic_cli(tmp_path, args, expect):
    """tools/make_synthetic.py --format vindr-labels / folder write their layouts and print counts."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_synthetic.py"), "--out", str(tmp_path)] + args,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "files written" in done.stdout
    for rel in expect:
        assert (tmp_path / rel).is_file(), rel
