"""Synthetic image-level classification writers: layouts as shipped, disagreements, determinism."""
import csv
import hashlib

import pytest

from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.image_folder import load_image_folder
from cxr_det.data.datasets.vindr_image_labels import load_vindr_image_labels
from cxr_det.synthetic.image_label_writers import COVID_CLASSES, make_image_folder, make_vindr_image_labels


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
