"""Folder of classes: split-folder and flat layouts, masks ignored, stratified split, bad input.

The fixtures spell out the two public layouts by hand: the pediatric pneumonia set
(``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``) and the COVID-19 Radiography
Database (``<class>/{images,masks}/*.png``, metadata spreadsheets beside the class folders).
"""
import logging
import random

import cv2
import numpy as np
import pytest

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog
from cxr_det.data.datasets.image_folder import (
    folder_layout,
    load_image_folder,
    register_image_folder,
    stratified_split,
)
from cxr_det.synthetic.dicom_writer import write_dicom
from detectron2.data import DatasetCatalog, MetadataCatalog


def image(path, h=20, w=30, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w), value, np.uint8))


@pytest.fixture
def pneumonia(tmp_path):
    base = tmp_path / "chest_xray"
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for cls in ("NORMAL", "PNEUMONIA"):
            for i in range(n):
                image(base / split / cls / f"person{i}_{cls.lower()}.jpeg")
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\1")
    (base / "train" / "PNEUMONIA" / "broken.jpeg").write_bytes(b"not a jpeg")
    return tmp_path


@pytest.fixture
def covid(tmp_path):
    base = tmp_path / "COVID-19_Radiography_Dataset"
    for cls in ("COVID", "Normal", "Lung_Opacity"):
        for i in range(10):
            image(base / cls / "images" / f"{cls}-{i}.png", h=24)
            image(base / cls / "masks" / f"{cls}-{i}.png", h=99)
        (base / f"{cls}.metadata.xlsx").write_bytes(b"PK")
    # a class without images/: its files are read directly; a DICOM among them
    for i in range(9):
        image(base / "Viral Pneumonia" / f"Viral Pneumonia-{i}.png")
    write_dicom(base / "Viral Pneumonia" / "Viral Pneumonia-9.dcm", np.zeros((16, 12), np.uint16), bits_stored=12)
    return tmp_path


def test_split_layout(pneumonia):
    assert folder_layout(pneumonia, "chest_xray") == "split"
    skips = SkipLog("test")
    train = load_image_folder(pneumonia, "chest_xray", "train", skip_log=skips)
    assert len(train) == 8 and {r["split"] for r in train} == {"train"}
    assert [r["label"] for r in train] == [0] * 4 + [1] * 4
    assert train[0]["image_path"] == "train/NORMAL/person0_normal.jpeg" and train[0]["class_name"] == "NORMAL"
    assert (train[0]["height"], train[0]["width"]) == (20, 30) and train[0]["clinical"] is None
    assert [r["image_id"] for r in train] == list(range(8))
    assert skips.counts == {"not an image file (suffix)": 1, "unreadable image": 1}
    assert len(load_image_folder(pneumonia, "chest_xray", "validate")) == 2
    assert len(load_image_folder(pneumonia, "chest_xray", "test")) == 4
    everything = load_image_folder(pneumonia, "chest_xray", "all")
    assert len(everything) == 14 and {r["split"] for r in everything} == {"train", "val", "test"}


def test_given_class_order(pneumonia):
    records = load_image_folder(pneumonia, "chest_xray", "test", classes=["PNEUMONIA", "NORMAL"])
    assert {(r["class_name"], r["label"]) for r in records} == {("PNEUMONIA", 0), ("NORMAL", 1)}


def test_class_folder_not_listed_is_an_error(pneumonia):
    with pytest.raises(ValueError, match=r"class folder\(s\) \['PNEUMONIA'\] not in the given classes"):
        load_image_folder(pneumonia, "chest_xray", "train", classes=["NORMAL"])
    with pytest.raises(ValueError, match="duplicates"):
        load_image_folder(pneumonia, "chest_xray", "train", classes=["NORMAL", "PNEUMONIA", "NORMAL"])


def test_missing_split_folder_and_dataset(pneumonia):
    import shutil

    shutil.rmtree(pneumonia / "chest_xray" / "val")
    with pytest.raises(DatasetFormatError, match="no 'val' folder"):
        load_image_folder(pneumonia, "chest_xray", "val")
    with pytest.raises(DatasetFormatError, match="folder not found"):
        load_image_folder(pneumonia, "no_such_set", "train")


def test_flat_layout_ignores_masks(covid):
    name = "COVID-19_Radiography_Dataset"
    assert folder_layout(covid, name) == "flat"
    skips = SkipLog("test")
    records = load_image_folder(covid, name, "all", skip_log=skips)
    assert len(records) == 40 and not skips.counts
    assert not any("/masks/" in r["image_path"] for r in records)
    assert all(r["height"] == 24 for r in records if r["class_name"] != "Viral Pneumonia")
    classes = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    assert all(r["label"] == classes.index(r["class_name"]) for r in records)
    dicom = [r for r in records if r["file_name"].endswith(".dcm")]
    assert len(dicom) == 1 and (dicom[0]["height"], dicom[0]["width"]) == (16, 12)


def test_flat_layout_stratified_deterministic_split(covid):
    name = "COVID-19_Radiography_Dataset"
    parts = {s: load_image_folder(covid, name, s, val_fraction=0.2, test_fraction=0.1) for s in ("train", "val", "test")}
    again = {s: load_image_folder(covid, name, s, val_fraction=0.2, test_fraction=0.1) for s in ("train", "val", "test")}
    paths = {s: [r["image_path"] for r in recs] for s, recs in parts.items()}
    assert paths == {s: [r["image_path"] for r in recs] for s, recs in again.items()}
    for split, per_class in (("train", 7), ("val", 2), ("test", 1)):
        counts = np.bincount([r["label"] for r in parts[split]], minlength=4)
        assert counts.tolist() == [per_class] * 4, split
    assert sum(len(p) for p in paths.values()) == 40 and len(set().union(*map(set, paths.values()))) == 40
    other_seed = [r["image_path"] for r in load_image_folder(covid, name, "val", val_fraction=0.2, test_fraction=0.1, seed=1)]
    assert other_seed != paths["val"]


def test_stratified_split_ignores_order():
    items = [(f"c{k}/img{i}.png", k) for k in range(3) for i in range(20)]
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    first = stratified_split(items, 0.25, 0.0, seed=3)
    assert first == stratified_split(shuffled, 0.25, 0.0, seed=3)
    assert sum(v == "val" for v in first.values()) == 15
    with pytest.raises(ValueError, match="sum <= 1"):
        stratified_split(items, 0.8, 0.3)


def test_empty_class_folder_warns(covid, caplog):
    (covid / "COVID-19_Radiography_Dataset" / "Empty" / "images").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        records = load_image_folder(covid, "COVID-19_Radiography_Dataset", "all")
    assert len(records) == 40
    assert "class 'Empty' has no images" in caplog.text


def test_register(pneumonia, tmp_path, catalog_names):
    catalog_names += ["t12_pneumonia_test", "t12_later"]
    register_image_folder("t12_pneumonia_test", pneumonia, "chest_xray", "test")
    meta = MetadataCatalog.get("t12_pneumonia_test")
    assert meta.thing_classes == ["NORMAL", "PNEUMONIA"] and meta.evaluator_type == "cxr_classification"
    assert (meta.task, meta.split, meta.dataset) == ("single_label", "test", "chest_xray")
    assert len(DatasetCatalog.get("t12_pneumonia_test")) == 4
    # registered before its files exist: classes recorded at the first load
    register_image_folder("t12_later", tmp_path / "later", "chest_xray", "val")
    for cls in ("B", "A"):
        image(tmp_path / "later" / "chest_xray" / "val" / cls / "x.png")
    assert len(DatasetCatalog.get("t12_later")) == 2
    assert MetadataCatalog.get("t12_later").thing_classes == ["A", "B"]
    with pytest.raises(TypeError, match="unknown option"):
        register_image_folder("t12_bad", pneumonia, "chest_xray", "train", readers="any")
