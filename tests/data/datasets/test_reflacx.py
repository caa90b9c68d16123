"""REFLACX registrar on hand-written fixtures laid out as PhysioNet ships REFLACX."""
import csv
import logging
import math

import cv2
import numpy as np
import pytest

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.datasets.reflacx import load_reflacx, register_reflacx
from cxr_det.formats.reflacx_format import MDF_NET_CLASSES, REFLACX_CERTAINTY_NAMES, REFLACX_LESION_LABELS
from cxr_det.data.ellipse import polygon_area, polygon_bbox
from helpers import load_tool

LOGGER = "cxr_det.data.datasets.reflacx"
META_COLUMNS = ["id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id",
                "image_size_x", "image_size_y"]
W, H = 200, 100  # image_size_x, image_size_y of the main fixture
# The label columns of each phase as REFLACX v1.0.0 ships them, spelled out here (not imported
# from cxr_det.formats.reflacx_format) so that these fixtures check the reader against the
# real layout.
PHASE1_LABELS = ("Airway wall thickening", "Atelectasis", "Consolidation", "Emphysema",
                 "Enlarged cardiac silhouette", "Fibrosis", "Fracture", "Groundglass opacity", "Mass", "Nodule",
                 "Pleural effusion", "Pleural thickening", "Pneumothorax", "Pulmonary edema", "Quality issue",
                 "Support devices", "Wide mediastinum", "Other")
PHASE23_LABELS = ("Abnormal mediastinal contour", "Acute fracture", "Atelectasis", "Consolidation",
                  "Enlarged cardiac silhouette", "Enlarged hilum", "Groundglass opacity", "Hiatal hernia",
                  "High lung volume / emphysema", "Interstitial lung disease", "Lung nodule or mass",
                  "Pleural abnormality", "Pneumothorax", "Pulmonary edema", "Support devices", "Other")

ATEL, PLEURAL, CONS, ECS, EDEMA = (MDF_NET_CLASSES.index(c) for c in (
    "Atelectasis", "Pleural abnormality", "Consolidation", "Enlarged cardiac silhouette", "Pulmonary edema"))


def reading(rid, phase, dicom_id, subject, study, ellipses, split="train", discarded=False,
            width=W, height=H, image=True, folder=True, extra_columns=(), drop_columns=()):
    """Spec of one reading; ``ellipses`` rows are (xmin, ymin, xmax, ymax, certainty, [labels])."""
    return dict(id=rid, phase=phase, dicom_id=dicom_id, subject=subject, study=study, ellipses=ellipses,
                split=split, discarded=discarded, width=width, height=height, image=image,
                folder=folder, extra_columns=list(extra_columns), drop_columns=list(drop_columns))


def write_reflacx(root, readings, jpg=True, dicom=False):
    """Write metadata_phase_N.csv, one ellipse CSV per reading, and the images (small JPGs)."""
    main = root / "reflacx" / "main_data"
    main.mkdir(parents=True)
    by_phase = {}
    for r in readings:
        by_phase.setdefault(r["phase"], []).append(r)
    for phase, rows in by_phase.items():
        vocab = list(PHASE1_LABELS if phase == 1 else PHASE23_LABELS)
        with open(main / f"metadata_phase_{phase}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(META_COLUMNS + sorted(vocab))
            for r in rows:
                rel = f"files/p{str(r['subject'])[:2]}/p{r['subject']}/s{r['study']}/{r['dicom_id']}"
                w.writerow([r["id"], r["split"], str(r["discarded"]),
                            f"physionet.org/files/mimic-cxr/2.0.0/{rel}.dcm", r["dicom_id"], r["subject"],
                            r["width"], r["height"]] + [""] * len(vocab))
                if r["image"]:
                    for present, folder, ext in ((jpg, "mimic-cxr-jpg", ".jpg"), (dicom, "mimic-cxr", ".dcm")):
                        if present:
                            path = root / folder / (rel + ext)
                            path.parent.mkdir(parents=True, exist_ok=True)
                            if ext == ".jpg":
                                cv2.imwrite(str(path), np.full((r["height"], r["width"]), 128, np.uint8))
                            else:
                                path.write_bytes(b"")  # only existence is checked
                if not r["folder"]:
                    continue
                (main / r["id"]).mkdir()
                columns = [c for c in ["xmin", "ymin", "xmax", "ymax", "certainty"] + vocab + r["extra_columns"]
                           if c not in r["drop_columns"]]
                with open(main / r["id"] / "anomaly_location_ellipses.csv", "w", newline="") as g:
                    e = csv.writer(g)
                    e.writerow(columns)
                    for x0, y0, x1, y1, cert, labels in r["ellipses"]:
                        values = dict(xmin=x0, ymin=y0, xmax=x1, ymax=y1, certainty=cert)
                        e.writerow([values[c] if c in values else str(c in labels) for c in columns])


def test_schema_matches_the_hand_written_layout():
    """cxr_det.formats.reflacx_format, which the reader and the synthetic writer use, agrees
    with the layout these fixtures spell out by hand."""
    from cxr_det.formats import reflacx_format as fmt

    assert fmt.REFLACX_LABELS_BY_PHASE == {1: PHASE1_LABELS, 2: PHASE23_LABELS, 3: PHASE23_LABELS}
    assert list(fmt.REFLACX_METADATA_COLUMNS) == META_COLUMNS
    assert fmt.REFLACX_ELLIPSE_COLUMNS == ("xmin", "ymin", "xmax", "ymax", "certainty")
    assert (fmt.REFLACX_MAIN_DIR, fmt.REFLACX_ELLIPSE_FILE) == ("reflacx/main_data", "anomaly_location_ellipses.csv")
    assert [fmt.REFLACX_METADATA.format(phase=p) for p in fmt.REFLACX_PHASES] == [
        "metadata_phase_1.csv", "metadata_phase_2.csv", "metadata_phase_3.csv"]


R1, R2, R3, R4, R5, R6 = "P101R000001", "P102R000002", "P200R000003", "P300R000004", "P300R000005", "P300R000006"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Six readings of five images over three phases, with the bad inputs the loader must skip."""
    root = tmp_path_factory.mktemp("reflacx_main")
    write_reflacx(root, [
        # Phase-1 names: Pleural effusion/thickening -> Pleural abnormality, Nodule -> Lung nodule or mass.
        reading(R1, 1, "dicom_a", 10000001, 50000001, [
            (10, 10, 50, 40, 4, ["Pleural effusion", "Atelectasis"]),       # two annotations
            (20, 20, 60, 60, 2, ["Pleural effusion", "Pleural thickening"]),  # one (same class)
            (0, 0, 30, 30, 5, ["Fibrosis", "Nodule"]),                      # not an MDF class
        ]),
        reading(R2, 1, "dicom_a", 10000001, 50000001, discarded=True, ellipses=[
            (12, 12, 52, 42, 3, ["Atelectasis"]),        # IoU 0.796 with R1's first ellipse
            (150, 60, 250, 140, 1, ["Consolidation"]),   # extends past the right and bottom edges
        ]),
        reading(R3, 2, "dicom_b", 10000002, 50000002, split="validate", extra_columns=["Bogus label"], ellipses=[
            (30, 20, 80, 70, 3, ["Enlarged cardiac silhouette", "Enlarged hilum", "Bogus label"]),
            (90, 10, 80, 40, 3, ["Atelectasis"]),    # xmax < xmin
            (300, 10, 350, 40, 3, ["Atelectasis"]),  # entirely right of the image
            (40, 40, 60, 60, 3, ["Support devices"]),  # never a lesion class
        ]),
        reading(R4, 3, "dicom_c", 10000003, 50000003, split="test", ellipses=[
            (40, 30, 90, 80, 5, ["Pulmonary edema"]),
            ("abc", 30, 90, 80, 5, ["Pulmonary edema"]),  # non-numeric coordinate, line 3
            (40, "", 90, 80, 5, ["Pulmonary edema"]),     # blank coordinate, line 4
        ]),
        reading(R5, 3, "dicom_d", 10000004, 50000004, image=False, ellipses=[(1, 1, 5, 5, 3, ["Atelectasis"])]),
        reading(R6, 3, "dicom_e", 10000005, 50000005, folder=False, ellipses=[]),
    ])
    return root


def anns(record):
    return [(a["category_id"], a["bbox"], a["readers"], a["certainty"]) for a in record["annotations"]]


def test_all_readers_records_follow_contract(root, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    records = load_reflacx(root, "all")
    assert [r["dicom_id"] for r in records] == ["dicom_a", "dicom_b", "dicom_c"]
    assert [r["image_id"] for r in records] == [0, 1, 2]
    a, b, c = records
    assert a["file_name"] == str(root / "mimic-cxr-jpg/files/p10/p10000001/s50000001/dicom_a.jpg")
    assert (a["height"], a["width"]) == (H, W)
    assert (a["subject_id"], a["study_id"]) == (10000001, 50000001)
    assert isinstance(a["study_id"], int) and isinstance(a["subject_id"], int)
    assert a["dataset"] == "reflacx" and a["split"] == "train"
    assert (b["split"], c["split"]) == ("val", "test")
    assert a["reading_ids"] == [R1, R2] and a["eye_tracking_discarded"] == [False, True]
    assert anns(a) == [
        (ATEL, [10.0, 10.0, 50.0, 40.0], [R1], 4),
        (PLEURAL, [10.0, 10.0, 50.0, 40.0], [R1], 4),
        (PLEURAL, [20.0, 20.0, 60.0, 60.0], [R1], 2),
        (ATEL, [12.0, 12.0, 52.0, 42.0], [R2], 3),
        (CONS, [150.0, 60.0, 200.0, 100.0], [R2], 1),
    ]
    assert anns(b) == [(ECS, [30.0, 20.0, 80.0, 70.0], [R3], 3)]
    assert anns(c) == [(EDEMA, [40.0, 30.0, 90.0, 80.0], [R4], 5)]
    for rec in records:
        for ann in rec["annotations"]:
            assert ann["bbox_mode"] == BoxMode.XYXY_ABS and ann["iscrowd"] == 0
            assert len(ann["segmentation"]) == 1 and len(ann["segmentation"][0]) >= 6
    seg = a["annotations"][0]["segmentation"][0]
    assert polygon_bbox(seg) == pytest.approx([10, 10, 50, 40])
    assert polygon_area(seg) == pytest.approx(math.pi * 20 * 15, rel=0.02)

    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "1 x degenerate ellipse" in text
    assert "1 x ellipse entirely outside the image" in text
    assert "2 x ellipse with a non-numeric or NaN coordinate" in text
    assert f"{R4}/anomaly_location_ellipses.csv, line 3" in text
    assert "1 x unknown label column 'Bogus label'" in text
    assert "1 x image file missing" in text and "dicom_d.jpg" in text
    assert "1 x reading folder missing" in text and R6 in text
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1  # reported once
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("loaded 3 records, 7 annotations" in m for m in info)


def test_clipped_ellipse_box_and_polygon(root):
    (a,) = load_reflacx(root, "train")
    ann = a["annotations"][4]
    assert ann["bbox"] == [150.0, 60.0, 200.0, 100.0]
    poly = ann["segmentation"][0]
    assert polygon_bbox(poly) == pytest.approx([150, 60, 200, 100])
    # The ellipse is centred on the image corner: a quarter of it is inside, the corner is a
    # vertex, and every vertex lies on or inside the drawn ellipse (not one shrunk to the box).
    assert polygon_area(poly) == pytest.approx(math.pi * 50 * 40 / 4, rel=0.02)
    points = list(zip(poly[0::2], poly[1::2]))
    assert (200.0, 100.0) in points
    assert all(((x - 200) / 50) ** 2 + ((y - 100) / 40) ** 2 <= 1 + 1e-9 for x, y in points)


def test_per_reading_mode(root):
    records = load_reflacx(root, "all", readers="per_reading")
    assert [(r["image_id"], r["dicom_id"], r["reading_ids"]) for r in records] == [
        (0, "dicom_a", [R1]), (1, "dicom_a", [R2]), (2, "dicom_b", [R3]), (3, "dicom_c", [R4])]
    assert [len(r["annotations"]) for r in records] == [3, 2, 1, 1]
    assert records[1]["eye_tracking_discarded"] == [True]
    assert anns(records[1])[0] == (ATEL, [12.0, 12.0, 52.0, 42.0], [R2], 3)


def test_mean_ellipse_mode_merges_across_readers(root):
    records = load_reflacx(root, "all", readers="mean_ellipse")
    assert [len(r["annotations"]) for r in records] == [4, 1, 1]
    a = records[0]
    assert sorted(anns(a), key=lambda t: (t[0], t[1])) == [
        (ATEL, [11.0, 11.0, 51.0, 41.0], [R1, R2], 4),  # mean box, max certainty
        (PLEURAL, [10.0, 10.0, 50.0, 40.0], [R1], 4),    # same reading: never merged
        (PLEURAL, [20.0, 20.0, 60.0, 60.0], [R1], 2),
        (CONS, [150.0, 60.0, 200.0, 100.0], [R2], 1),
    ]
    merged = next(x for x in a["annotations"] if x["readers"] == [R1, R2])
    assert polygon_bbox(merged["segmentation"][0]) == pytest.approx([11, 11, 51, 41])
    # Above their IoU (0.796) nothing merges.
    assert [len(r["annotations"]) for r in load_reflacx(root, "all", readers="mean_ellipse", fuse_iou=0.8)] == [5, 1, 1]


def test_certainty_threshold(root):
    records = load_reflacx(root, "all", min_certainty=3)
    assert [len(r["annotations"]) for r in records] == [3, 1, 1]
    assert all(a["certainty"] >= 3 for r in records for a in r["annotations"])
    assert [len(r["annotations"]) for r in load_reflacx(root, "all", min_certainty=5)] == [0, 0, 1]


def test_all_classes_and_custom_order(root):
    records = load_reflacx(root, "all", classes=["all"])
    names = list(REFLACX_LESION_LABELS)
    cats = [[names[a["category_id"]] for a in r["annotations"]] for r in records]
    assert cats == [
        ["Atelectasis", "Pleural abnormality", "Pleural abnormality", "Lung nodule or mass",
         "Atelectasis", "Consolidation"],
        ["Enlarged cardiac silhouette", "Enlarged hilum"],
        ["Pulmonary edema"],
    ]
    records = load_reflacx(root, "all", classes=["Pulmonary edema", "Atelectasis"])
    assert [[a["category_id"] for a in r["annotations"]] for r in records] == [[1, 1], [], [0]]


def test_unknown_class_lists_valid_names(root):
    with pytest.raises(ValueError, match="valid names.*Pleural abnormality"):
        load_reflacx(root, "all", classes=["Atelectasis", "Pleural effusion"])
    with pytest.raises(ValueError, match="Support devices"):
        load_reflacx(root, "all", classes=["Support devices"])


@pytest.mark.parametrize("split,expected", [
    ("train", ["dicom_a"]), ("val", ["dicom_b"]), ("validate", ["dicom_b"]), ("test", ["dicom_c"])])
def test_split_mapping(root, split, expected):
    records = load_reflacx(root, split)
    assert [r["dicom_id"] for r in records] == expected
    assert {r["split"] for r in records} == {"val" if split == "validate" else split}


@pytest.mark.parametrize("old, new", [("pooled", "all_readers"), ("reading", "per_reading"), ("fused", "mean_ellipse")])
def test_old_reader_mode_names_warn_and_load_the_same(root, old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated; it is now called '{new}'"):
        records = load_reflacx(root, "all", readers=old)
    assert records == load_reflacx(root, "all", readers=new)
    name = f"reflacx_test_old_mode_{old}"
    try:
        with pytest.warns(DeprecationWarning):
            register_reflacx(name, str(root), "all", readers=old)
        assert MetadataCatalog.get(name).readers == new  # the metadata records the current name
        assert DatasetCatalog.get(name) == records
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_default_reader_mode_is_all_readers(root):
    assert load_reflacx(root, "all") == load_reflacx(root, "all", readers="all_readers")


def test_bad_split_and_mode_rejected(root):
    with pytest.raises(ValueError, match="split"):
        load_reflacx(root, "holdout")
    with pytest.raises(ValueError, match="readers"):
        load_reflacx(root, "all", readers="majority")
    with pytest.raises(ValueError, match="'weighted_boxes_fusion' is not available"):
        load_reflacx(root, "all", readers="weighted_boxes_fusion")


def test_drop_discarded_eye_tracking(root):
    (a,) = load_reflacx(root, "train", drop_discarded_eye_tracking=True)
    assert a["reading_ids"] == [R1] and a["eye_tracking_discarded"] == [False]
    assert len(a["annotations"]) == 3
    assert len(load_reflacx(root, "all", readers="per_reading", drop_discarded_eye_tracking=True)) == 3


def test_missing_images_for_whole_split_raise(root):
    with pytest.raises(DatasetFormatError, match="mimic-cxr"):
        load_reflacx(root, "all", image_source="dicom")


def test_image_sources(tmp_path):
    write_reflacx(tmp_path, [reading(R3, 2, "dicom_b", 10000002, 50000002, [])], jpg=True, dicom=True)
    (rec,) = load_reflacx(tmp_path, "all", image_source="dicom")
    assert rec["file_name"] == str(tmp_path / "mimic-cxr/files/p10/p10000002/s50000002/dicom_b.dcm")
    (rec,) = load_reflacx(tmp_path, "all")  # auto prefers the JPGs
    assert rec["file_name"].endswith("mimic-cxr-jpg/files/p10/p10000002/s50000002/dicom_b.jpg")
    assert rec["annotations"] == []  # an image without ellipses is kept, with no instances


def test_fusion_is_transitive_but_never_within_a_reading(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ra, rb, rc = "P201R000001", "P202R000002", "P203R000003"
    spec = {
        ra: [(0, 0, 100, 100, 2, ["Atelectasis"]), (5, 0, 105, 100, 4, ["Atelectasis"]),
             (350, 0, 450, 50, 1, ["Pulmonary edema"])],  # clipped to (350, 0, 400, 50)
        rb: [(2, 0, 102, 100, 3, ["Atelectasis"]), (0, 0, 100, 100, 5, ["Consolidation"]),
             (360, 0, 390, 50, 2, ["Pulmonary edema"])],  # IoU .6 with ra's clipped box
        rc: [(300, 300, 350, 350, 1, ["Atelectasis"])],
    }
    chain = {ra: (0, 0, 100, 100), rb: (30, 0, 130, 100), rc: (60, 0, 160, 100)}  # IoU .54, .54; ends .25
    readings = [reading(rid, 2, "dicom_x", 10000009, 50000009, e, width=400, height=400)
                for rid, e in spec.items()]
    readings += [reading(rid.replace("R", "R9"), 2, "dicom_y", 10000010, 50000010,
                         [(*box, 3, ["Pulmonary edema"])], width=400, height=400)
                 for rid, box in chain.items()]
    write_reflacx(tmp_path, readings)
    x, y = load_reflacx(tmp_path, "all", readers="mean_ellipse")
    assert sorted(anns(x), key=lambda t: (t[0], t[1])) == [
        (ATEL, [1.0, 0.0, 101.0, 100.0], [ra, rb], 3),  # A1 + B1 (IoU .96) first
        # A2 overlaps B1 by .94 too, but B1's group already holds a reading-A ellipse.
        (ATEL, [5.0, 0.0, 105.0, 100.0], [ra], 4),
        (ATEL, [300.0, 300.0, 350.0, 350.0], [rc], 1),
        (CONS, [0.0, 0.0, 100.0, 100.0], [rb], 5),
        # The mean of the drawn boxes (355, 0, 420, 50), clipped like a drawn ellipse.
        (EDEMA, [355.0, 0.0, 400.0, 50.0], [ra, rb], 2),
    ]
    assert anns(y) == [(EDEMA, [30.0, 0.0, 130.0, 100.0], sorted(r.replace("R", "R9") for r in chain), 3)]
    assert any("metadata_phase_1.csv not found" in r.getMessage() for r in caplog.records)
    edema = next(a for a in x["annotations"] if a["category_id"] == EDEMA)
    assert polygon_bbox(edema["segmentation"][0]) == pytest.approx([355, 0, 400, 50])
    assert len(load_reflacx(tmp_path, "all", readers="mean_ellipse", fuse_iou=0.97)[0]["annotations"]) == 7


def test_ellipse_csv_missing_column_raises(tmp_path):
    write_reflacx(tmp_path, [reading(R4, 3, "dicom_c", 10000003, 50000003, [(1, 1, 5, 5, 3, ["Atelectasis"])],
                                     drop_columns=["certainty"])])
    with pytest.raises(DatasetFormatError, match=r"P300R000004.anomaly_location_ellipses\.csv.*certainty"):
        load_reflacx(tmp_path, "all")


def test_missing_ellipse_csv_skips_reading(tmp_path, caplog):
    write_reflacx(tmp_path, [reading(R3, 2, "dicom_b", 10000002, 50000002, [(1, 1, 5, 5, 3, ["Atelectasis"])]),
                             reading(R4, 3, "dicom_c", 10000003, 50000003, [(1, 1, 5, 5, 3, ["Atelectasis"])])])
    (tmp_path / "reflacx/main_data" / R4 / "anomaly_location_ellipses.csv").unlink()
    records = load_reflacx(tmp_path, "all")
    assert [r["reading_ids"] for r in records] == [[R3]]
    assert "anomaly_location_ellipses.csv missing" in caplog.text


def test_missing_metadata_raises(tmp_path):
    (tmp_path / "reflacx/main_data").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="main_data"):
        load_reflacx(tmp_path, "all")


def test_register_reflacx(root):
    name = "reflacx_test_register_val"
    try:
        register_reflacx(name, str(root), "validate", classes=["all"], readers="per_reading")
        records = DatasetCatalog.get(name)
        assert [r["reading_ids"] for r in records] == [[R3]]
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(REFLACX_LESION_LABELS)
        assert (meta.evaluator_type, meta.dataset, meta.readers, meta.split) == ("cxr_detection", "reflacx", "per_reading", "val")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="valid names"):
        register_reflacx("reflacx_test_bad", str(root), "train", classes=["Pneumonia"])
    assert "reflacx_test_bad" not in DatasetCatalog.list()
    with pytest.raises(TypeError, match="min_certainity"):
        register_reflacx("reflacx_test_bad", str(root), "train", min_certainity=3)


# ----------------------------------------------------------------------------- certainty, gzip, COCO export


CERTAINTY_LINE = ("annotations per ellipse certainty: 1 Unlikely: 1, 2 Less likely: 1, 3 Possibly: 2, "
                  "4 Suspicious for / Probably: 2, 5 Consistent with: 1")


def test_certainty_table_logged_once_per_registration(root, caplog):
    """The 7 pooled annotations of the main fixture, by hand: dicom_a 4, 4, 2, 3, 1; dicom_b 3;
    dicom_c 5. Before: nothing said (ellipses marked "Unlikely" became lesions silently)."""
    name = "reflacx_test_certainty_log"
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        register_reflacx(name, str(root), "all")
        DatasetCatalog.get(name)
        DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    lines = [r.getMessage() for r in caplog.records if "per ellipse certainty" in r.getMessage()]
    assert len(lines) == 1, lines
    assert CERTAINTY_LINE in lines[0]
    assert "MIN_CERTAINTY 0: every ellipse kept whatever its certainty (MDF-Net's choice)" in lines[0]
    assert "the REFLACX authors count >= 3 (Possibly) as present" in lines[0]


def test_min_certainty_drops_are_counted(root, caplog):
    """MIN_CERTAINTY 3 drops R1's Pleural ellipse (2) and R2's Consolidation ellipse (1): 2
    ellipses; R1's Fibrosis/Nodule ellipse (5) has no selected class and is not counted."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    records = load_reflacx(root, "all", min_certainty=3)
    assert sorted(a["certainty"] for r in records for a in r["annotations"]) == [3, 3, 4, 4, 5]
    line = next(r.getMessage() for r in caplog.records if "per ellipse certainty" in r.getMessage())
    assert "1 Unlikely: 0, 2 Less likely: 0, 3 Possibly: 2" in line
    assert "MIN_CERTAINTY 3: ellipses of certainty < 3 dropped: 2" in line
    for bad in (6, -1):
        with pytest.raises(ValueError, match="min_certainty must be in"):
            load_reflacx(root, "all", min_certainty=bad)


def test_certainty_outside_1_to_5_is_a_counted_skip(tmp_path, caplog):
    """Certainty 0, 6 and 2.5 are not REFLACX values (1..5). Before: kept as lesions with
    those certainties (3 extra annotations); after: skipped and counted, the 3 kept."""
    write_reflacx(tmp_path, [reading(R4, 3, "dicom_c", 10000003, 50000003, ellipses=[
        (40, 30, 90, 80, 3, ["Pulmonary edema"]),
        (40, 30, 90, 80, 0, ["Pulmonary edema"]),    # line 3
        (40, 30, 90, 80, 6, ["Pulmonary edema"]),    # line 4
        (40, 30, 90, 80, 2.5, ["Pulmonary edema"]),  # line 5
    ])])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (record,) = load_reflacx(tmp_path, "all")
    assert anns(record) == [(EDEMA, [40.0, 30.0, 90.0, 80.0], [R4], 3)]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "3 x ellipse certainty not an integer 1..5" in text and "line 3: 0" in text


def test_gzipped_metadata_and_ellipse_files_are_read(root, tmp_path):
    import gzip
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    plain = load_reflacx(copy, "all")
    for path in (copy / "reflacx").rglob("*.csv"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert load_reflacx(copy, "all") == plain
    damaged = copy / "reflacx/main_data" / R4 / "anomaly_location_ellipses.csv.gz"
    damaged.write_bytes(damaged.read_bytes()[:30])  # truncated download
    with pytest.raises(DatasetFormatError, match=rf"{R4}/anomaly_location_ellipses\.csv\.gz: cannot be read"):
        load_reflacx(copy, "all")


def test_coco_export_keeps_certainty_and_tabulates_it(root, tmp_path, monkeypatch, capsys):
    """tools/convert_to_coco.py: each COCO annotation keeps its certainty and readers (before:
    detectron2's converter dropped both); the summary has one row per certainty."""
    import json
    import sys

    tool = load_tool("convert_to_coco")
    out = tmp_path / "reflacx.json"
    monkeypatch.setattr(sys, "argv", ["convert_to_coco.py", "--dataset", "reflacx", "--root", str(root),
                                      "--split", "all", "--output", str(out)])
    tool.main()
    coco = json.loads(out.read_text())
    assert [a["certainty"] for a in coco["annotations"]] == [4, 4, 2, 3, 1, 3, 5]
    assert [a["readers"] for a in coco["annotations"]] == [[R1], [R1], [R1], [R2], [R2], [R3], [R4]]
    printed = capsys.readouterr().out
    table = [[c.strip() for c in l.strip("|").split("|")] for l in printed.splitlines()
             if l.startswith("|") and any(name in l for name in REFLACX_CERTAINTY_NAMES.values())]
    assert table == [["1", "Unlikely", "1"], ["2", "Less likely", "1"], ["3", "Possibly", "2"],
                     ["4", "Suspicious for / Probably", "2"], ["5", "Consistent with", "1"]]
    assert "MIN_CERTAINTY 0: every ellipse kept" in printed
