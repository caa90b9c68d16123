"""VinDr-CXR registrar (PhysioNet and Kaggle layouts, reader modes, bad input) and PNG cache."""
import csv
import hashlib
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import cxr_det  # noqa: F401
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.datasets.vindr import is_val_image, load_vindr, register_vindr
from cxr_det.data.datasets.vindr_cache import build_png_cache
from cxr_det.formats.vindr_format import VINDR_5_CLASSES, VINDR_KAGGLE_CLASSES
from cxr_det.synthetic.dicom_writer import write_dicom
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from helpers import load_tool, write_csv

REPO = Path(__file__).resolve().parents[3]


def md5(name):
    return hashlib.md5(name.encode()).hexdigest()


A, B, C, D = md5("a"), md5("b"), md5("c"), md5("d")
T1, T2 = md5("t1"), md5("t2")
SIZES = {A: (100, 120), B: (100, 120), C: (80, 160), T1: (100, 120), T2: (100, 120)}
BOX_HEADER = ["x_min", "y_min", "x_max", "y_max"]
PHYSIONET_TRAIN = [
    [A, "R1", "Cardiomegaly", 10, 20, 50, 60],
    [A, "R2", "Cardiomegaly", 14, 24, 54, 64],
    [A, "R2", "Nodule/Mass", 80, 10, 90, 20],
    [A, "R3", "No finding", "", "", "", ""],
    [B, "R1", "No finding", "", "", "", ""],
    [B, "R4", "No finding", "", "", "", ""],
    [B, "R5", "No finding", "", "", "", ""],
    [C, "R1", "Aortic enlargement", -10, 5, 40, 200],  # partly outside an 80x160 image: clipped
    [C, "R2", "Edema", 1, 1, 5, 5],  # a PhysioNet-only class, not among the 14 Kaggle ones
    [C, "R3", "Atelectasis", 30, 30, 60, 60],
]
# The test annotations: consensus, no rad_id column, with a class_id column.
PHYSIONET_TEST = [
    [T1, "Pleural effusion", 10, 5, 5, 25, 35],
    [T2, "No finding", 14, "", "", "", ""],
]


def write_images(base, folder, sizes):
    for image_id, (h, w) in sizes.items():
        ramp = (np.add.outer(np.arange(h), np.arange(w)) * 8).astype(np.uint16)
        write_dicom(base / folder / f"{image_id}.dicom", ramp, bits_stored=12)


def make_physionet(root, train_rows=PHYSIONET_TRAIN, test_rows=PHYSIONET_TEST, sizes=None, header=None):
    base = root / "vindr-cxr"
    write_csv(base / "annotations" / "annotations_train.csv",
              header or ["image_id", "rad_id", "class_name", *BOX_HEADER], train_rows)
    write_csv(base / "annotations" / "annotations_test.csv", ["image_id", "class_name", "class_id", *BOX_HEADER], test_rows)
    sizes = SIZES if sizes is None else sizes
    write_images(base, "train", {k: v for k, v in sizes.items() if k not in (T1, T2)})
    write_images(base, "test", {k: v for k, v in sizes.items() if k in (T1, T2)})
    return root


@pytest.fixture
def physionet(tmp_path):
    return make_physionet(tmp_path)


def by_id(records):
    return {r["vindr_image_id"]: r for r in records}


def boxes(record):
    return [(a["category_id"], a["bbox"], a["readers"]) for a in record["annotations"]]


def skip_lines(caplog):
    """The SkipLog report lines ("N x reason (e.g. ...)") logged by the last load."""
    return [line.strip() for rec in caplog.records for line in rec.getMessage().splitlines() if " x " in line]


def test_physionet_all_readers_exact_records(physionet):
    records = load_vindr(physionet, "all", val_fraction=0.0)
    assert [r["vindr_image_id"] for r in records] == sorted([A, B, C, T1, T2])
    assert [r["image_id"] for r in records] == list(range(5))
    got = by_id(records)
    cardio, nodule, aortic, atel, effusion = (VINDR_KAGGLE_CLASSES.index(n) for n in (
        "Cardiomegaly", "Nodule/Mass", "Aortic enlargement", "Atelectasis", "Pleural effusion"))
    a = got[A]
    assert a == {
        "file_name": str((physionet / "vindr-cxr" / "train" / f"{A}.dicom").resolve()),
        "height": 100, "width": 120, "image_id": sorted([A, B, C, T1, T2]).index(A),
        "dataset": "vindr", "split": "train", "vindr_image_id": A, "readers": ["R1", "R2", "R3"],
        "original_height": 100, "original_width": 120, "scale": 1.0,
        "annotations": [
            {"bbox": [10.0, 20.0, 50.0, 60.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": cardio,
             "segmentation": [[10.0, 20.0, 50.0, 20.0, 50.0, 60.0, 10.0, 60.0]], "iscrowd": 0, "readers": ["R1"]},
            {"bbox": [14.0, 24.0, 54.0, 64.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": cardio,
             "segmentation": [[14.0, 24.0, 54.0, 24.0, 54.0, 64.0, 14.0, 64.0]], "iscrowd": 0, "readers": ["R2"]},
            {"bbox": [80.0, 10.0, 90.0, 20.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": nodule,
             "segmentation": [[80.0, 10.0, 90.0, 10.0, 90.0, 20.0, 80.0, 20.0]], "iscrowd": 0, "readers": ["R2"]},
        ],
    }
    # No-finding image kept, without annotations; Edema (not selected) ignored; clipped box.
    assert got[B]["annotations"] == [] and got[B]["readers"] == ["R1", "R4", "R5"]
    assert (got[C]["height"], got[C]["width"]) == (80, 160)
    assert boxes(got[C]) == [(aortic, [0.0, 5.0, 40.0, 80.0], ["R1"]), (atel, [30.0, 30.0, 60.0, 60.0], ["R3"])]
    # Test split: consensus reader, DICOM from test/.
    assert got[T1]["split"] == "test" and got[T1]["readers"] == ["consensus"]
    assert got[T1]["file_name"].endswith(f"test/{T1}.dicom")
    assert boxes(got[T1]) == [(effusion, [5.0, 5.0, 25.0, 35.0], ["consensus"])]
    assert got[T2]["annotations"] == []
    assert sum(len(r["annotations"]) for r in records) == 6


def test_physionet_test_split_only(physionet):
    records = load_vindr(physionet, "test")
    assert [r["vindr_image_id"] for r in records] == sorted([T1, T2])
    assert {r["split"] for r in records} == {"test"}


def test_fused_readers_exact_coordinates(physionet):
    got = by_id(load_vindr(physionet, "train", readers="weighted_boxes_fusion", val_fraction=0.0))
    cardio, nodule = VINDR_KAGGLE_CLASSES.index("Cardiomegaly"), VINDR_KAGGLE_CLASSES.index("Nodule/Mass")
    fused = boxes(got[A])
    assert len(fused) == 2
    (c0, b0, r0), (c1, b1, r1) = fused
    assert c0 == cardio and b0 == pytest.approx([12.0, 22.0, 52.0, 62.0]) and r0 == ["R1", "R2"]
    assert c1 == nodule and b1 == pytest.approx([80.0, 10.0, 90.0, 20.0]) and r1 == ["R2"]
    assert got[A]["annotations"][0]["segmentation"][0] == pytest.approx([12, 22, 52, 22, 52, 62, 12, 62])
    assert got[B]["annotations"] == []
    # IoU of the two cardiomegaly boxes is 1296/1904 = 0.68: a stricter threshold keeps them apart.
    strict = by_id(load_vindr(physionet, "train", readers="weighted_boxes_fusion", fuse_iou=0.7, val_fraction=0.0))
    assert sorted(b for c, b, _ in boxes(strict[A]) if c == cardio) == [[10, 20, 50, 60], [14, 24, 54, 64]]


def test_single_reader(physionet, caplog):
    records = load_vindr(physionet, "train", readers="R3", val_fraction=0.0)
    got = by_id(records)
    assert sorted(got) == sorted([A, C])  # R3 did not read B
    assert got[A]["annotations"] == [] and got[A]["readers"] == ["R3"]
    assert boxes(got[C]) == [(VINDR_KAGGLE_CLASSES.index("Atelectasis"), [30.0, 30.0, 60.0, 60.0], ["R3"])]
    assert any(line.startswith("1 x image not read by R3") for line in skip_lines(caplog))
    with pytest.raises(ValueError, match="R99"):
        load_vindr(physionet, "train", readers="R99")


def test_five_class_subset(physionet):
    got = by_id(load_vindr(physionet, "train", classes=VINDR_5_CLASSES, val_fraction=0.0))
    assert boxes(got[A]) == [
        (1, [10.0, 20.0, 50.0, 60.0], ["R1"]), (1, [14.0, 24.0, 54.0, 64.0], ["R2"]), (4, [80.0, 10.0, 90.0, 20.0], ["R2"])
    ]
    assert boxes(got[C]) == [(0, [0.0, 5.0, 40.0, 80.0], ["R1"])]  # Atelectasis ignored, image kept
    edema = by_id(load_vindr(physionet, "train", classes=["Edema"], val_fraction=0.0))
    assert boxes(edema[C]) == [(0, [1.0, 1.0, 5.0, 5.0], ["R2"])] and edema[A]["annotations"] == []
    with pytest.raises(ValueError, match="Not a class"):
        load_vindr(physionet, "train", classes=["Not a class"])


def test_hash_split_deterministic_and_disjoint(tmp_path):
    ids = [md5(f"img{i}") for i in range(20)]
    make_physionet(tmp_path, train_rows=[[i, "R1", "No finding", "", "", "", ""] for i in ids], test_rows=[],
                   sizes={i: (8, 8) for i in ids})
    train = [r["vindr_image_id"] for r in load_vindr(tmp_path, "train")]
    val = [r["vindr_image_id"] for r in load_vindr(tmp_path, "val")]
    assert train and val and not set(train) & set(val) and sorted(train + val) == sorted(ids)
    expected_val = sorted(i for i in ids if int(md5(i), 16) % 10_000 < 2_000)
    assert val == expected_val and all(is_val_image(i, 0.2) for i in val)
    assert [r["vindr_image_id"] for r in load_vindr(tmp_path, "val")] == val
    assert {r["split"] for r in load_vindr(tmp_path, "all")} == {"train", "val"}


KAGGLE_ROWS = [
    [md5("k1"), "Cardiomegaly", 3, "R8", 10.0, 10.0, 40.0, 40.0],
    [md5("k1"), "Nodule/Mass", 8, "R9", 50.0, 50.0, 60.0, 60.0],
    [md5("k1"), "Cardiomegaly", 5, "R9", 10.0, 10.0, 40.0, 40.0],  # class_id disagrees
    [md5("k2"), "No finding", 14, "R8", "", "", "", ""],
    [md5("k2"), "No finding", 14, "R9", "", "", "", ""],
]


@pytest.fixture
def kaggle(tmp_path):
    base = tmp_path / "vindr-cxr"
    write_csv(base / "train.csv", ["image_id", "class_name", "class_id", "rad_id", *BOX_HEADER], KAGGLE_ROWS)
    write_images(base, "train", {md5("k1"): (64, 64), md5("k2"): (64, 48)})
    return tmp_path


def test_kaggle_layout(kaggle, caplog):
    records = load_vindr(kaggle, "all", val_fraction=0.0)
    got = by_id(records)
    assert sorted(got) == sorted([md5("k1"), md5("k2")])
    k1 = got[md5("k1")]
    assert k1["readers"] == ["R8", "R9"] and k1["split"] == "train"
    assert boxes(k1) == [(3, [10.0, 10.0, 40.0, 40.0], ["R8"]), (8, [50.0, 50.0, 60.0, 60.0], ["R9"])]
    k2 = got[md5("k2")]
    assert k2["annotations"] == [] and (k2["height"], k2["width"]) == (64, 48)
    assert any(line.startswith("1 x class_id disagrees with class_name") for line in skip_lines(caplog))


def test_kaggle_test_split_raises(kaggle):
    with pytest.raises(ValueError, match=r"no test labels.*val"):
        load_vindr(kaggle, "test")


def test_no_layout_found(tmp_path):
    with pytest.raises(DatasetFormatError, match=r"annotations_train\.csv.*train\.csv"):
        load_vindr(tmp_path, "train")


def test_missing_dicom_is_counted_skip(tmp_path, caplog):
    make_physionet(tmp_path, train_rows=PHYSIONET_TRAIN + [[D, "R1", "Cardiomegaly", 1, 1, 9, 9]])
    got = by_id(load_vindr(tmp_path, "train", val_fraction=0.0))
    assert sorted(got) == sorted([A, B, C])
    line = next(l for l in skip_lines(caplog) if "DICOM file missing" in l)
    assert line.startswith("1 x") and f"{D}.dicom" in line


def test_all_dicoms_missing_raises(tmp_path):
    make_physionet(tmp_path, sizes={})
    with pytest.raises(DatasetFormatError, match=r"vindr-cxr/train"):
        load_vindr(tmp_path, "train")


def test_csv_missing_column(tmp_path):
    rows = [r[:6] for r in PHYSIONET_TRAIN]
    make_physionet(tmp_path, train_rows=rows, header=["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max"])
    with pytest.raises(DatasetFormatError, match=r"annotations_train\.csv.*y_max"):
        load_vindr(tmp_path, "train")


def test_bad_rows_are_counted_skips(tmp_path, caplog):
    bad = [
        [A, "R1", "Atelectasis", 60, 10, 50, 20],  # x_max < x_min (line 12)
        [A, "R1", "Atelectasis", 10, 10, 10, 20],  # zero area (line 13)
        [A, "R2", "Pleural effusion", 200, 200, 300, 300],  # entirely outside 120x100 (line 14)
        [A, "R3", "Lung tumour", 1, 1, 5, 5],  # unknown class name (line 15)
        [A, "R3", "Consolidation", "", "", "", ""],  # lesion without a box (line 16)
    ]
    make_physionet(tmp_path, train_rows=PHYSIONET_TRAIN + bad)
    with caplog.at_level(logging.WARNING):
        got = by_id(load_vindr(tmp_path, "train", val_fraction=0.0))
    assert len(got[A]["annotations"]) == 3  # only the three good boxes
    lines = skip_lines(caplog)
    for reason in ("x_max < x_min", "zero-area box", "box entirely outside the image",
                   "unknown class name", "lesion row without a numeric box"):
        assert any(l.startswith(f"1 x {reason}") for l in lines), (reason, lines)
    unknown = next(l for l in lines if "unknown class name" in l)
    assert "annotations_train.csv line 15" in unknown and "Lung tumour" in unknown


def test_register_vindr(physionet):
    name = "vindr_test_register_fused"
    try:
        register_vindr(name, physionet, "all", readers="weighted_boxes_fusion", classes=VINDR_5_CLASSES, val_fraction=0.0)
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(VINDR_5_CLASSES)
        assert (meta.evaluator_type, meta.dataset, meta.readers, meta.split, meta.layout) == (
            "cxr_detection", "vindr", "weighted_boxes_fusion", "all", "physionet")
        records = DatasetCatalog.get(name)
        assert len(records) == 5 and boxes(by_id(records)[A])[0][2] == ["R1", "R2"]
    finally:
        DatasetCatalog.remove(name) if name in DatasetCatalog.list() else None
        MetadataCatalog.remove(name)


def test_png_cache_then_load(physionet, caplog):
    garbage = physionet / "vindr-cxr" / "train" / "garbage.dicom"
    garbage.write_bytes(b"not a dicom at all" * 20)
    out = physionet / "cache"
    summary = build_png_cache(physionet, out, max_size=60)
    assert (summary["written"], summary["failed"], summary["existing"]) == (5, 1, 0)
    assert "garbage.dicom" in summary["failures"][0][0] and "garbage.dicom" in summary["failures"][0][1]
    png_a = cv2.imread(str(out / "train" / f"{A}.png"), cv2.IMREAD_UNCHANGED)
    assert png_a.dtype == np.uint8 and png_a.shape == (50, 60)
    assert cv2.imread(str(out / "train" / f"{C}.png"), cv2.IMREAD_UNCHANGED).shape == (30, 60)

    got = by_id(load_vindr(physionet, "all", image_cache=str(out), val_fraction=0.0))
    a, c = got[A], got[C]
    assert a["file_name"] == str((out / "train" / f"{A}.png").resolve())
    assert (a["height"], a["width"], a["original_height"], a["original_width"], a["scale"]) == (50, 60, 100, 120, 0.5)
    assert [x[1] for x in boxes(a)] == [[5.0, 10.0, 25.0, 30.0], [7.0, 12.0, 27.0, 32.0], [40.0, 5.0, 45.0, 10.0]]
    assert c["scale"] == pytest.approx(60 / 160) and (c["height"], c["width"]) == (30, 60)
    assert boxes(c)[0][1] == pytest.approx([0.0, 5 * 0.375, 15.0, 30.0])
    for r in got.values():
        assert cv2.imread(r["file_name"], cv2.IMREAD_UNCHANGED).shape == (r["height"], r["width"])
    assert got[T1]["file_name"].endswith(f"test/{T1}.png")

    # A second run keeps what is there; a deleted PNG is a counted skip with a hint.
    again = build_png_cache(physionet, out, max_size=60, splits=["train"])
    assert (again["written"], again["existing"]) == (0, 3)
    (out / "train" / f"{B}.png").unlink()
    caplog.clear()
    got = by_id(load_vindr(physionet, "train", image_cache=str(out), val_fraction=0.0))
    assert sorted(got) == sorted([A, C])
    line = next(l for l in skip_lines(caplog) if "PNG cache" in l)
    assert line.startswith("1 x") and "prepare_vindr" in line


def test_prepare_vindr_cli(physionet):
    tool = load_tool("prepare_vindr")
    assert tool.main(["--root", str(physionet), "--max-size", "200", "--splits", "test", "--workers", "2"]) == 0
    out = physionet / "vindr-cxr" / "png_200"
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted([f"{T1}.png", f"{T2}.png"])
    with open(out / "scales.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["folder"] for r in rows] == ["test", "test"]
    assert {(r["height"], r["width"], float(r["scale"])) for r in rows} == {("100", "120", 1.0)}  # never upsized


# ----------------------------------------------------------------------------- fusion, duplicates, degenerate boxes


def test_fused_never_merges_one_radiologists_own_boxes(tmp_path):
    """R9 drew two overlapping cardiomegaly boxes (IoU 1296/1904 = 0.68 > 0.5): two lesions.

    Before: one fused box [12, 12, 52, 52] credited to R9. After: R9's two boxes, each its own.
    With R10's [11, 11, 51, 51] (IoU 1521/1679 = 0.91 with R9's first box, 1369/1831 = 0.75
    with the second) R10 joins the first: mean [10.5, 10.5, 50.5, 50.5] by R9 and R10.
    """
    cardio = VINDR_KAGGLE_CLASSES.index("Cardiomegaly")
    own = [[A, "R9", "Cardiomegaly", 10, 10, 50, 50], [A, "R9", "Cardiomegaly", 14, 14, 54, 54]]
    make_physionet(tmp_path, train_rows=own, sizes={A: (100, 120), T1: (100, 120), T2: (100, 120)})
    got = by_id(load_vindr(tmp_path, "train", readers="weighted_boxes_fusion", val_fraction=0.0))
    assert boxes(got[A]) == [(cardio, [10.0, 10.0, 50.0, 50.0], ["R9"]), (cardio, [14.0, 14.0, 54.0, 54.0], ["R9"])]

    make_physionet(tmp_path, train_rows=own + [[A, "R10", "Cardiomegaly", 11, 11, 51, 51]],
                   sizes={A: (100, 120), T1: (100, 120), T2: (100, 120)})
    got = by_id(load_vindr(tmp_path, "train", readers="weighted_boxes_fusion", val_fraction=0.0))
    assert boxes(got[A]) == [(cardio, [10.5, 10.5, 50.5, 50.5], ["R9", "R10"]), (cardio, [14.0, 14.0, 54.0, 54.0], ["R9"])]


def test_fused_equals_ensemble_boxes_when_no_radiologist_repeats():
    """Without two boxes of one radiologist in a cluster, the fusion is the ensemble-boxes
    package's weighted_boxes_fusion (each radiologist one model, every score 1)."""
    from ensemble_boxes import weighted_boxes_fusion

    from cxr_det.data.datasets.vindr_annotations import weighted_boxes_fusion as fuse_readers

    width, height = 120, 100
    candidates = [
        ("R1", 3, [10, 20, 50, 60]), ("R2", 3, [14, 24, 54, 64]), ("R3", 3, [12, 18, 52, 58]),  # one lesion, 3 readers
        ("R1", 8, [80, 10, 90, 20]), ("R3", 8, [81, 11, 91, 21]),  # IoU 81/119 = 0.68
        ("R2", 8, [30, 70, 40, 80]),  # alone
    ]
    readers = ["R1", "R2", "R3"]
    scale = np.array([width, height, width, height], dtype=float)
    ref_boxes, ref_scores, ref_labels = weighted_boxes_fusion(
        [[list(np.asarray(b) / scale) for r, _, b in candidates if r == who] for who in readers],
        [[1.0 for r, _, _ in candidates if r == who] for who in readers],
        [[c for r, c, _ in candidates if r == who] for who in readers],
        iou_thr=0.5, skip_box_thr=0.0,
    )
    reference = sorted((int(c), list(np.asarray(b) * scale)) for b, c in zip(ref_boxes, ref_labels))
    fused = fuse_readers(candidates, 0.5)
    assert [c for c, _, _ in fused] == [c for c, _ in reference]
    for (_, box, _), (_, ref) in zip(fused, reference):
        assert box == pytest.approx(ref, abs=1e-3)  # the package computes in float32
    assert [who for _, _, who in fused] == [["R1", "R2", "R3"], ["R2"], ["R1", "R3"]]
    assert fused[0][1] == pytest.approx([12.0, 20.666667, 52.0, 60.666667])  # mean of the three boxes


def test_exact_duplicate_rows_dropped_and_counted_in_every_reader_mode(tmp_path, caplog):
    """Line 12 repeats line 2 (R1's cardiomegaly box), line 13 repeats line 6 (R1's "No finding").

    Before: "all" gave A 4 boxes (R1's twice), "R1" gave 2, and "fused" weighted R1 double:
    [11.33, 21.33, 51.33, 61.33]. After: 3, 1, and the plain R1/R2 mean [12, 22, 52, 62];
    2 duplicate rows counted in each mode.
    """
    cardio = VINDR_KAGGLE_CLASSES.index("Cardiomegaly")
    rows = PHYSIONET_TRAIN + [[A, "R1", "Cardiomegaly", 10, 20, 50, 60], [B, "R1", "No finding", "", "", "", ""]]
    make_physionet(tmp_path, train_rows=rows)
    expected = {"all_readers": 3, "R1": 1, "weighted_boxes_fusion": 2}
    for mode, n_boxes in expected.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            got = by_id(load_vindr(tmp_path, "train", readers=mode, val_fraction=0.0))
        assert len(got[A]["annotations"]) == n_boxes, mode
        line = next(l for l in skip_lines(caplog) if "duplicate" in l)
        assert line.startswith("2 x exact duplicate row"), line
        assert "annotations_train.csv line 12 repeats annotations_train.csv line 2" in line
    fused = by_id(load_vindr(tmp_path, "train", readers="weighted_boxes_fusion", val_fraction=0.0))
    assert boxes(fused[A])[0] == (cardio, [12.0, 22.0, 52.0, 62.0], ["R1", "R2"])
    assert boxes(fused[B]) == []


def test_box_of_zero_width_after_png_scaling_is_a_counted_skip(tmp_path, caplog):
    """Original image 121 px wide, PNG 60 px (scale 0.5, rounded down). The box x 120.5..121
    becomes 60.25..60.5, clipped to 60..60: zero width. Before: kept as a box of width 0
    (never matched at evaluation); after: skipped and counted under the bad-row policy."""
    base = tmp_path / "vindr-cxr"
    write_csv(base / "annotations" / "annotations_train.csv", ["image_id", "rad_id", "class_name", *BOX_HEADER], [
        [A, "R1", "Cardiomegaly", 120.5, 10, 121, 20],  # line 2
        [A, "R2", "Cardiomegaly", 10, 10, 50, 50],
    ])
    cache = tmp_path / "cache"
    write_csv(cache / "scales.csv", ["image_id", "folder", "original_height", "original_width", "height", "width", "scale"],
              [[A, "train", 100, 121, 50, 60, 0.5]])
    (cache / "train").mkdir()
    cv2.imwrite(str(cache / "train" / f"{A}.png"), np.zeros((50, 60), np.uint8))
    with caplog.at_level(logging.WARNING):
        got = by_id(load_vindr(tmp_path, "train", image_cache=str(cache), val_fraction=0.0))
    assert [a["bbox"] for a in got[A]["annotations"]] == [[5.0, 5.0, 25.0, 25.0]]
    line = next(l for l in skip_lines(caplog) if "PNG cache" in l)
    assert line.startswith("1 x zero-area box (width or height 0) after scaling to the PNG cache")
    assert "annotations_train.csv line 2" in line


def test_gzipped_annotation_files_are_read(physionet):
    import gzip

    plain = load_vindr(physionet, "all", val_fraction=0.0)
    for name in ("annotations_train.csv", "annotations_test.csv"):
        path = physionet / "vindr-cxr" / "annotations" / name
        path.with_name(name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert load_vindr(physionet, "all", val_fraction=0.0) == plain


def test_deprecated_reader_modes_give_the_same_records_with_a_warning(physionet):
    """The earlier names "all" and "fused" still load the same records, warn, and register
    under the new names (cxr_det.formats.DEPRECATED_READER_MODES)."""
    for old, new in (("all", "all_readers"), ("fused", "weighted_boxes_fusion")):
        with pytest.warns(DeprecationWarning, match=rf"'{old}' is deprecated.*'{new}'"):
            got = load_vindr(physionet, "train", readers=old, val_fraction=0.0)
        assert got == load_vindr(physionet, "train", readers=new, val_fraction=0.0)
        name = f"vindr_test_deprecated_{old}"
        try:
            with pytest.warns(DeprecationWarning):
                register_vindr(name, physionet, "train", readers=old, val_fraction=0.0)
            assert MetadataCatalog.get(name).readers == new
            assert DatasetCatalog.get(name) == got
        finally:
            DatasetCatalog.remove(name) if name in DatasetCatalog.list() else None
            MetadataCatalog.remove(name)


def test_reader_modes_of_other_datasets_and_empty_modes_are_rejected(physionet):
    with pytest.raises(ValueError, match="'mean_ellipse' is not available"):
        load_vindr(physionet, "train", readers="mean_ellipse")
    with pytest.raises(ValueError, match="non-empty"):
        load_vindr(physionet, "train", readers=" ")
    with pytest.raises(ValueError, match="per_reading"):
        register_vindr("vindr_test_bad_mode", physionet, "train", readers="per_reading")
    assert "vindr_test_bad_mode" not in DatasetCatalog.list()


def test_schema_module_agrees_with_the_hand_written_layout(physionet):
    """cxr_det.formats.vindr_format against the fixtures of this file, written by hand from
    the PhysioNet v1.0.0 and Kaggle files (the fixtures stay independent of the module)."""
    from cxr_det.formats import NO_FINDING
    from cxr_det.formats import vindr_format as F

    base = physionet / F.VINDR_DIR
    assert (base / F.VINDR_PHYSIONET_ANNOTATIONS["train"]).is_file()
    assert (base / F.VINDR_PHYSIONET_ANNOTATIONS["test"]).is_file()
    assert list(F.VINDR_PHYSIONET_COLUMNS) == ["image_id", "rad_id", "class_name", *BOX_HEADER]
    assert list(F.VINDR_KAGGLE_COLUMNS) == ["image_id", "class_name", "class_id", "rad_id", *BOX_HEADER]
    assert F.VINDR_KAGGLE_ANNOTATIONS == {"train": "train.csv"}
    assert sorted(p.suffix for p in (base / "train").iterdir()) == [F.VINDR_DICOM_SUFFIX] * 3
    assert len(F.VINDR_LOCAL_LABELS) == 22 and len(F.VINDR_GLOBAL_LABELS) == 6
    assert set(F.VINDR_KAGGLE_CLASSES) <= set(F.VINDR_LOCAL_LABELS) and len(F.VINDR_KAGGLE_CLASSES) == 14
    assert F.VINDR_KAGGLE_CLASSES[3] == "Cardiomegaly" and F.VINDR_KAGGLE_CLASSES[13] == "Pulmonary fibrosis"
    assert F.VINDR_NO_FINDING_ID == 14 and F.VINDR_GLOBAL_LABELS[-1] == NO_FINDING
    assert F.VINDR_IMAGE_LABEL_COLUMNS == F.VINDR_LOCAL_LABELS + F.VINDR_GLOBAL_LABELS
    rad_id = re.compile(F.VINDR_RAD_ID_PATTERN)
    assert all(rad_id.match(row[1]) for row in PHYSIONET_TRAIN)
    assert not rad_id.match(F.VINDR_CONSENSUS_READER)
