"""Conversion accounting: every input row of REFLACX (readings, ellipses), VinDr-CXR
(annotation rows) and CheXpert (table rows) ends in the output or in a counted, reasoned
skip, and the totals that ``tools/convert_to_coco.py`` prints add up. Synthetic datasets get
one injected bad row of each kind; the expected counts are exact, from the files alone."""
import csv
import logging
import re

import pytest

import cxr_det  # noqa: F401  (compatibility fixes before detectron2)
from cxr_det.data.coco_export import export_coco, export_summary
from cxr_det.data.datasets.chexpert import TABLE_ROW, load_chexpert
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.reflacx import load_reflacx
from cxr_det.data.datasets.reflacx_readings import ELLIPSE_ROW, METADATA_ROW
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.data.datasets.vindr_annotations import ANNOTATION_ROW
from cxr_det.formats.reflacx_format import MDF_NET_CLASSES, REFLACX_ELLIPSE_COLUMNS, REFLACX_PHASE1_TO_LABEL
from cxr_det.synthetic import make_reflacx, make_vindr
from cxr_det.synthetic.chexpert_writer import make_chexpert


@pytest.fixture(autouse=True)
def quiet_loaders():
    names = ("cxr_det.data.datasets.reflacx", "cxr_det.data.datasets.vindr", "cxr_det.data.datasets.chexpert",
             "cxr_det.data.dicom_header")
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def append_rows(path, rows):
    with open(path, "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def printed_ledger(text):
    """``{(input, outcome): rows}`` and ``{input: (read, accounted)}`` parsed from the summary."""
    table, unit = {}, None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[2].isdigit():
            unit = cells[0] or unit
            table[(unit, cells[1])] = int(cells[2])
    totals = {m.group(1): (int(m.group(2)), int(m.group(3)))
              for m in re.finditer(r"^(.+): (\d+) read = (\d+) accounted for$", text, re.MULTILINE)}
    return table, totals


# --------------------------------------------------------------------------------- REFLACX
def selected_labels(header, row):
    """MDF-Net classes an ellipse row carries (phase-1 names mapped), from the file alone."""
    names = set()
    for name, cell in zip(header, row):
        if name not in REFLACX_ELLIPSE_COLUMNS and cell.strip().lower() == "true":
            target = REFLACX_PHASE1_TO_LABEL.get(name, name)
            if target in MDF_NET_CLASSES:
                names.add(target)
    return names


def test_reflacx_every_reading_and_ellipse_row_is_accounted_for(tmp_path, capsys):
    root = tmp_path
    make_reflacx(root, 12, seed=21, size=64)
    main = root / "reflacx" / "main_data"
    tables = sorted(main.glob("metadata_phase_*.csv"))
    n_readings = sum(len(read_rows(t)) - 1 for t in tables)
    ellipse_files = sorted(main.glob("*/anomaly_location_ellipses.csv"))
    labels = [selected_labels(rows[0], r) for rows in map(read_rows, ellipse_files) for r in rows[1:]]
    n_ellipses, n_kept = len(labels), sum(bool(x) for x in labels)
    n_annotations = sum(len(x) for x in labels)

    # Before any injection: everything in the output or a class outside MDF-Net's five.
    skips = SkipLog("reflacx")
    records = load_reflacx(root, "all", skip_log=skips, log_certainty=False)
    assert not len(skips) and not skips.unbalanced()
    assert sum(len(r["annotations"]) for r in records) == n_annotations
    assert dict(skips.outcomes[METADATA_ROW]) == {"reading in the output": n_readings}
    assert dict(skips.outcomes[ELLIPSE_ROW]) == {"ellipse in the output": n_kept,
                                                 "no selected label (not converted)": n_ellipses - n_kept}
    n_records = len(records)

    # One bad metadata row of each kind, appended to phase 3.
    meta = main / "metadata_phase_3.csv"
    header, good = read_rows(meta)[0], read_rows(meta)[1]
    col = {name: header.index(name) for name in header}

    def variant(**cells):
        row = list(good)
        for name, value in cells.items():
            row[col[name]] = value
        return row

    image_rel = good[col["image"]]
    missing_image = re.sub(r"/[^/]+\.dcm$", "/not-there.dcm", image_rel)
    bad_meta = [
        variant(id=""),                                              # without a reading id
        list(good),                                                  # duplicate reading id
        variant(id="P300R900001", split="holdout"),                  # unknown split
        variant(id="P300R900002", image_size_x="wide"),              # bad size
        variant(id="P300R900003", subject_id="p1"),                  # bad subject_id
        variant(id="P300R900004", eye_tracking_data_discarded="maybe"),
        variant(id="P300R900005", image="nowhere.dcm"),              # no files/pNN/p<subject>/s<study>/
        variant(id="P300R900006"),                                   # no reading folder
        variant(id="P300R900007"),                                   # folder without its ellipse CSV
        variant(id="P300R900008", image=missing_image, dicom_id="not-there"),  # image file missing
    ]
    append_rows(meta, bad_meta)
    (main / "P300R900007").mkdir()
    ellipse_header = ["xmin", "ymin", "xmax", "ymax", "certainty", "Atelectasis", "Consolidation"]
    (main / "P300R900008").mkdir()
    append_rows(main / "P300R900008" / "anomaly_location_ellipses.csv",
                [ellipse_header, [5, 5, 20, 20, 4, "True", "False"], [8, 8, 30, 30, 5, "False", "True"]])

    # One bad ellipse row of each kind (and one good one), in a reading that is kept.
    target = main / good[col["id"]] / "anomaly_location_ellipses.csv"
    target_header = read_rows(target)[0]

    def ellipse(x0, y0, x1, y1, certainty, *true_labels):
        values = dict(xmin=x0, ymin=y0, xmax=x1, ymax=y1, certainty=certainty)
        return [values.get(h, str(h in true_labels)) for h in target_header]

    append_rows(target, [
        ellipse("left", 5, 20, 20, 4, "Atelectasis"),      # non-numeric coordinate
        ellipse(5, 5, 20, 20, 7, "Atelectasis"),           # certainty outside 1..5
        ellipse(20, 5, 10, 20, 4, "Atelectasis"),          # xmax < xmin
        ellipse(500, 500, 600, 600, 4, "Atelectasis"),     # entirely outside the image
        ellipse(5, 5, 20, 20, 4),                          # no label at all
        ellipse(5, 5, 20, 20, 4, "Atelectasis"),           # good: one more annotation
    ])

    options = {"classes": MDF_NET_CLASSES, "readers": "all_readers"}
    coco, records, class_names, skips = export_coco("reflacx", root, "all", options)
    assert not skips.unbalanced()
    assert len(records) == n_records
    assert sum(len(r["annotations"]) for r in records) == len(coco["annotations"]) == n_annotations + 1
    assert dict(skips.outcomes[METADATA_ROW]) == {
        "reading in the output": n_readings,
        "skipped: metadata row without a reading id": 1,
        "skipped: duplicate reading id in metadata": 1,
        "skipped: metadata: unknown split value 'holdout'": 1,
        "skipped: metadata: bad image_size_x/image_size_y": 1,
        "skipped: metadata: bad subject_id": 1,
        "skipped: metadata: bad eye_tracking_data_discarded value": 1,
        "skipped: metadata: image path without files/pNN/p<subject>/s<study>/ or no dicom_id": 1,
        "skipped: reading folder missing (reading skipped)": 1,
        "skipped: anomaly_location_ellipses.csv missing (reading skipped)": 1,
        "skipped: image file missing (record skipped)": 1,
    }
    assert skips.rows_read[METADATA_ROW] == n_readings + len(bad_meta)
    assert dict(skips.outcomes[ELLIPSE_ROW]) == {
        "ellipse in the output": n_kept + 1,
        "no selected label (not converted)": n_ellipses - n_kept + 1,
        "of a record skipped (image file missing)": 2,
        "skipped: ellipse with a non-numeric or NaN coordinate/certainty": 1,
        "skipped: ellipse certainty not an integer 1..5": 1,
        "skipped: degenerate ellipse (xmax <= xmin or ymax <= ymin)": 1,
        "skipped: ellipse entirely outside the image": 1,
    }
    assert skips.rows_read[ELLIPSE_ROW] == n_ellipses + 6 + 2

    # The summary tools/convert_to_coco.py prints: the same table, and its totals add up.
    text = export_summary("reflacx", "all", options, coco, records, class_names, skips, "out.json")
    table, totals = printed_ledger(text)
    assert totals == {METADATA_ROW: (n_readings + 10, n_readings + 10), ELLIPSE_ROW: (n_ellipses + 8, n_ellipses + 8)}
    assert table[(METADATA_ROW, "rows read")] == n_readings + 10
    assert table[(ELLIPSE_ROW, "of a record skipped (image file missing)")] == 2
    assert "DO NOT ADD UP" not in text

    # Another split and a certainty threshold: still every row accounted for.
    for split, min_certainty in (("train", 0), ("test", 5)):
        skips = SkipLog("reflacx")
        records = load_reflacx(root, split, min_certainty=min_certainty, skip_log=skips, log_certainty=False)
        assert not skips.unbalanced(), skips.ledger_table()
        assert skips.outcomes[METADATA_ROW]["reading in the output"] == sum(len(r["reading_ids"]) for r in records)
        assert skips.outcomes[METADATA_ROW]["reading of another split"] > 0


# ----------------------------------------------------------------------------------- VinDr
def test_vindr_every_annotation_row_is_accounted_for(tmp_path):
    root = tmp_path
    make_vindr(root, 10, seed=22, size=48)
    base = root / "vindr-cxr"
    train_csv, test_csv = base / "annotations" / "annotations_train.csv", base / "annotations" / "annotations_test.csv"
    rows = read_rows(train_csv)[1:] + read_rows(test_csv)[1:]
    n_rows = len(rows)
    n_no_finding = sum(r[2] == "No finding" for r in rows)
    classes = sorted({r[2] for r in rows if r[2] != "No finding"})
    skips = SkipLog("VinDr-CXR")
    records = load_vindr(root, "all", classes=classes, skip_log=skips)
    assert not len(skips) and not skips.unbalanced()
    assert dict(skips.outcomes[ANNOTATION_ROW]) == {"box in the output": n_rows - n_no_finding,
                                                    "No finding row (no box)": n_no_finding}
    n_boxes, n_images = sum(len(r["annotations"]) for r in records), len(records)

    lesion = next(r for r in read_rows(train_csv)[1:] if r[2] != "No finding")
    image = lesion[0]
    other_class = "Edema" if "Edema" not in classes else "Lung cyst"
    unreadable = "f" * 32
    (base / "train" / f"{unreadable}.dicom").write_bytes(b"not a DICOM at all")
    append_rows(train_csv, [
        ["", "R1", "Cardiomegaly", 1, 1, 9, 9],                       # row without image_id
        list(lesion),                                                 # exact duplicate
        [image, "R1", "Alien", 1, 1, 9, 9],                           # unknown class name
        [image, "R1", lesion[2], "", "", "", ""],                     # lesion without a box
        [image, "R1", lesion[2], 9, 1, 1, 9],                         # x_max < x_min
        [image, "R1", lesion[2], 5, 1, 5, 9],                         # zero width
        [image, "R1", lesion[2], 500, 500, 600, 600],                 # entirely outside
        [image, "R1", other_class, 1, 1, 9, 9],                       # a class not selected
        [image, "R2", "No finding", "", "", "", ""],                  # no box, not a fault
        ["0" * 32, "R1", lesion[2], 1, 1, 9, 9],                      # DICOM missing (2 rows)
        ["0" * 32, "R2", lesion[2], 2, 2, 9, 9],
        [unreadable, "R1", lesion[2], 1, 1, 9, 9],                    # unreadable DICOM
        [image, "R1", lesion[2], 1, 2, 12, 14],                       # good: one more box
    ])
    options = {"classes": classes, "readers": "all_readers"}
    coco, records, class_names, skips = export_coco("vindr", root, "all", options)
    assert not skips.unbalanced()
    assert len(records) == n_images
    assert sum(len(r["annotations"]) for r in records) == len(coco["annotations"]) == n_boxes + 1
    assert skips.rows_read[ANNOTATION_ROW] == n_rows + 13
    assert dict(skips.outcomes[ANNOTATION_ROW]) == {
        "box in the output": n_rows - n_no_finding + 1,
        "No finding row (no box)": n_no_finding + 1,
        "class not selected (ignored)": 1,
        "skipped: row without image_id": 1,
        "skipped: exact duplicate row (same image, rad_id, class and box; dropped)": 1,
        "skipped: unknown class name": 1,
        "skipped: lesion row without a numeric box": 1,
        "skipped: x_max < x_min or y_max < y_min": 1,
        "skipped: zero-area box (width or height 0)": 1,
        "skipped: box entirely outside the image": 1,
        "skipped: DICOM file missing": 2,
        "skipped: unreadable DICOM": 1,
    }
    assert skips.counts["DICOM file missing"] == 1  # one image, two rows
    text = export_summary("vindr", "all", options, coco, records, class_names, skips, "out.json")
    table, totals = printed_ledger(text)
    assert totals == {ANNOTATION_ROW: (n_rows + 13, n_rows + 13)}
    assert table[(ANNOTATION_ROW, "skipped: DICOM file missing")] == 2

    # Splits and reader modes: the train/val split and one radiologist leave rows elsewhere.
    for split, readers in (("train", "all_readers"), ("val", "weighted_boxes_fusion"), ("all", lesion[1])):
        skips = SkipLog("VinDr-CXR")
        load_vindr(root, split, classes=classes, readers=readers, skip_log=skips)
        assert not skips.unbalanced(), skips.ledger_table()
        assert skips.rows_read[ANNOTATION_ROW] == (n_rows + 13 if split == "all" else len(read_rows(train_csv)) - 1)


def test_vindr_kaggle_class_id_mismatch_is_accounted_for(tmp_path):
    make_vindr(tmp_path, 6, seed=23, size=48, layout="kaggle")
    table = tmp_path / "vindr-cxr" / "train.csv"
    rows = read_rows(table)
    lesion = next(r for r in rows[1:] if r[1] != "No finding")
    wrong = list(lesion)
    wrong[2] = str((int(lesion[2]) + 1) % 14)
    append_rows(table, [wrong])
    skips = SkipLog("VinDr-CXR")
    load_vindr(tmp_path, "all", classes=["all"], skip_log=skips)
    assert not skips.unbalanced()
    assert skips.rows_read[ANNOTATION_ROW] == len(rows)
    assert skips.outcomes[ANNOTATION_ROW]["skipped: class_id disagrees with class_name"] == 1


# -------------------------------------------------------------------------------- CheXpert
def test_chexpert_every_table_row_is_accounted_for(tmp_path):
    root = tmp_path
    make_chexpert(root, 8, seed=24, size=32)
    folder = root / "chexpert" / "CheXpert-v1.0-small"
    train = read_rows(folder / "train.csv")
    valid = read_rows(folder / "valid.csv")
    header, body = train[0], train[1:] + valid[1:]
    view = header.index("Frontal/Lateral")
    n_rows, n_frontal = len(body), sum(r[view] == "Frontal" for r in body)

    first = train[1]
    bad = [
        [first[0].replace("/train/", "/elsewhere/")] + first[1:],                 # Path not in the layout
        [first[0].replace("patient", "patient9").replace("view1", "view7")] + first[1:],  # image file missing
    ]
    lateral = list(first)
    lateral[view] = "Lateral"
    append_rows(folder / "train.csv", bad + [lateral])

    skips = SkipLog("CheXpert")
    records = load_chexpert(root, "all", views="frontal", skip_log=skips)
    assert not skips.unbalanced(), skips.ledger_table()
    assert len(records) == n_frontal
    assert skips.rows_read[TABLE_ROW] == n_rows + 3
    assert dict(skips.outcomes[TABLE_ROW]) == {
        "image in the output": n_frontal,
        "view not selected (views='frontal')": n_rows - n_frontal + 1,
        "skipped: Path not in the CheXpert layout": 1,
        "skipped: image file missing": 1,
    }

    # One study per patient, the patient split: the study and split outcomes, counted from the file.
    studies = {}
    for r in train[1:] + [lateral]:
        m = re.search(r"(patient\d+)/study(\d+)/", r[0])
        if r[view] == "Frontal":
            studies.setdefault(m.group(1), set()).add(int(m.group(2)))
    later = sum(1 for r in train[1:] if r[view] == "Frontal"
                and int(re.search(r"/study(\d+)/", r[0]).group(1)) > min(studies[re.search(r"(patient\d+)/", r[0]).group(1)]))
    skips = SkipLog("CheXpert")
    records = load_chexpert(root, "train", views="frontal", max_studies_per_patient=1, skip_log=skips)
    assert not skips.unbalanced(), skips.ledger_table()
    outcomes = skips.outcomes[TABLE_ROW]
    assert outcomes["study beyond max_studies_per_patient"] == later
    assert outcomes["image in the output"] == len(records)
    train_frontal = sum(r[view] == "Frontal" for r in train[1:])
    # The first studies of train.csv (and the injected row whose image is missing) are in
    # train or val; the val ones are another split's.
    kept = outcomes["image of another split"] + len(records) + outcomes["skipped: image file missing"]
    assert kept == train_frontal - later + 1
    assert skips.rows_read[TABLE_ROW] == len(train) - 1 + 3
