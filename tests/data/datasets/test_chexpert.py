"""CheXpert registrar on hand-written train.csv / valid.csv (spelled out here, not taken from
the schema module, so a wrong constant there shows up as a failure)."""
import logging

import numpy as np
import pytest

from cxr_det.data.datasets.chexpert import is_val_patient, load_chexpert, register_chexpert
from cxr_det.data.datasets.common import DatasetFormatError, SkipLog
from cxr_det.data.datasets.observation_labels import observation_arrays, prevalence_gaps, resolve_label_set

HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
FIVE = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
F = "CheXpert-v1.0-small"


def row(path, sex, age, fl, appa, atel="", card="", cons="", edema="", pe="", nf="", sd=""):
    # columns after AP/PA: NF, EC, Card, LO, LL, Edema, Cons, Pneu, Atel, PTX, PE, PO, Fx, SD
    return ",".join([path, sex, age, fl, appa, nf, "", card, "", "", edema, cons, "", atel, "", pe, "", "", sd])


TRAIN = [
    row(f"{F}/train/patient00001/study1/view1_frontal.jpg", "Female", "68", "Frontal", "AP", atel="1.0", card="-1.0", edema="0.0", pe="-1.0"),
    row(f"{F}/train/patient00001/study1/view2_lateral.jpg", "Female", "68", "Lateral", "", atel="1.0", card="-1.0", edema="0.0", pe="-1.0"),
    row(f"{F}/train/patient00001/study2/view1_frontal.jpg", "Female", "69", "Frontal", "PA", atel="0.0", card="1.0", cons="-1.0", pe="1.0"),
    row(f"{F}/train/patient00002/study1/view1_frontal.jpg", "Unknown", "0", "Frontal", "PA", atel="-1.0", card="0.0", cons="1.0", edema="-1.0"),
    row(f"{F}/train/patient00003/study10/view1_frontal.jpg", "Male", "47", "Frontal", "AP", nf="1.0"),
    row(f"{F}/train/patient00003/study2/view1_frontal.jpg", "Male", "45", "Frontal", "AP", edema="1.0"),
]
VALID = [
    row(f"{F}/valid/patient64541/study1/view1_frontal.jpg", "Male", "73", "Frontal", "AP", atel="1.0", card="0.0", cons="0.0", edema="0.0", pe="1.0"),
    row(f"{F}/valid/patient64541/study1/view2_lateral.jpg", "Male", "73", "Lateral", "", atel="1.0", card="0.0", cons="0.0", edema="0.0", pe="1.0"),
]
# Frontal train rows in file order: rows 0, 2, 3, 4, 5.
ZEROS = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
ONES = [[1, 1, 0, 0, 1], [0, 1, 1, 0, 1], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
IGNORE_W = [[1, 0, 1, 1, 0], [1, 1, 0, 1, 1], [0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]


def write(root, train=TRAIN, valid=VALID, folder=F, images=True):
    base = root / "chexpert" / folder
    base.mkdir(parents=True, exist_ok=True)
    (base / "train.csv").write_text("\n".join([HEADER] + [r.replace(F, folder) for r in train]) + "\n")
    (base / "valid.csv").write_text("\n".join([HEADER] + [r.replace(F, folder) for r in valid]) + "\n")
    if images:
        for r in train + valid:
            p = root / "chexpert" / r.split(",")[0].replace(F, folder)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\xff\xd8jpg")
    return root


def load(root, split="train", **kw):
    kw.setdefault("val_fraction", 0.0)
    return load_chexpert(root, split, **kw)


def arrays(records, key):
    return np.array([r[key] for r in records])


@pytest.mark.parametrize("policy,labels,weights", [
    ("zeros", ZEROS, np.ones((5, 5))), ("ones", ONES, np.ones((5, 5))), ("ignore", ZEROS, IGNORE_W),
])
def test_uncertainty_policies_exact_arrays(tmp_path, policy, labels, weights):
    recs = load(write(tmp_path), uncertainty=policy)
    assert len(recs) == 5
    np.testing.assert_array_equal(arrays(recs, "labels"), labels)
    np.testing.assert_array_equal(arrays(recs, "label_weights"), weights)
    assert [r["image_id"] for r in recs] == list(range(5))


def test_policy_per_label(tmp_path):
    recs = load(write(tmp_path), uncertainty={"Atelectasis": "ones", "Edema": "ones", "Cardiomegaly": "ignore"})
    np.testing.assert_array_equal(arrays(recs, "labels")[:3], [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1], [1, 0, 1, 1, 0]])
    np.testing.assert_array_equal(arrays(recs, "label_weights")[0], [1, 0, 1, 1, 1])


def test_label_sets(tmp_path):
    write(tmp_path)
    assert len(load(tmp_path, labels="all14")[0]["labels"]) == 14
    recs = load(tmp_path, labels="seed12")
    assert len(recs[0]["labels"]) == 12
    assert resolve_label_set("seed12")[0] == "Enlarged Cardiomediastinum"
    recs = load(tmp_path, labels=["No Finding", "Edema"])
    np.testing.assert_array_equal(arrays(recs, "labels"), [[0, 0], [0, 0], [0, 0], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="Effusion"):
        load(tmp_path, labels=["Effusion"])


@pytest.mark.parametrize("views,n", [("frontal", 5), ("ap", 3), ("pa", 2), ("lateral", 1), ("all", 6)])
def test_view_filters(tmp_path, views, n):
    recs = load(write(tmp_path), views=views)
    assert len(recs) == n
    if views == "lateral":
        assert recs[0]["view"] == "lateral" and recs[0]["ap_pa"] is None


def test_max_studies_per_patient_by_study_number(tmp_path):
    recs = load(write(tmp_path), max_studies_per_patient=1, views="all")
    got = sorted((r["patient_id"], r["study_id"]) for r in recs)
    # patient00001 study1 (two views), patient00002 study1, patient00003 study2 (2 < 10)
    assert got == [("patient00001", 1), ("patient00001", 1), ("patient00002", 1), ("patient00003", 2)]


def test_clinical_missing_rules(tmp_path):
    recs = load(write(tmp_path))
    assert recs[0]["clinical"] == {"age": 68.0, "sex": "Female"}
    assert recs[2]["clinical"] == {"age": None, "sex": None}   # Unknown, 0
    assert recs[0]["file_name"].endswith(f"chexpert/{F}/train/patient00001/study1/view1_frontal.jpg")


def test_splits_valid_all_and_fractions(tmp_path):
    write(tmp_path)
    valid = load(tmp_path, "valid", views="all")
    assert [r["split"] for r in valid] == ["valid", "valid"]
    np.testing.assert_array_equal(valid[0]["labels"], [1, 0, 0, 0, 1])
    assert len(load(tmp_path, "val")) == 0
    assert len(load(tmp_path, "val", val_fraction=1.0)) == 5
    assert len(load(tmp_path, "train", val_fraction=1.0)) == 0
    assert len(load(tmp_path, "all", views="all")) == 8


def test_patient_split_no_leakage_and_deterministic(tmp_path):
    from cxr_det.synthetic.chexpert_writer import make_chexpert
    make_chexpert(tmp_path, 60, seed=3, size=32)
    train = load_chexpert(tmp_path, "train", val_fraction=0.3, views="all")
    val = load_chexpert(tmp_path, "val", val_fraction=0.3, views="all")
    assert train and val
    assert not {r["patient_id"] for r in train} & {r["patient_id"] for r in val}
    again = load_chexpert(tmp_path, "val", val_fraction=0.3, views="all")
    assert [r["path"] for r in again] == [r["path"] for r in val]
    ids = [f"patient{i:05d}" for i in range(1, 2001)]
    frac = is_val_patient(ids, 0.2).mean()
    assert 0.17 < frac < 0.23
    np.testing.assert_array_equal(is_val_patient(ids[::-1], 0.2), is_val_patient(ids, 0.2)[::-1])
    assert (is_val_patient(ids, 0.2, seed=1) != is_val_patient(ids, 0.2)).any()


@pytest.mark.parametrize("value", ["x", "2.0", "0.5"])
def test_bad_cell_names_file_line_column(tmp_path, value):
    bad = list(TRAIN)
    bad[1] = row(f"{F}/train/patient00001/study1/view2_lateral.jpg", "Female", "68", "Lateral", "", edema=value)
    write(tmp_path, train=bad)
    with pytest.raises(DatasetFormatError, match=r"train\.csv: line 3, column 'Edema'"):
        load(tmp_path)


def test_missing_label_column_is_an_error(tmp_path):
    base = tmp_path / "chexpert" / F
    base.mkdir(parents=True)
    (base / "train.csv").write_text("Path,Sex,Age,Frontal/Lateral,AP/PA,Edema\n")
    with pytest.raises(DatasetFormatError, match="Atelectasis"):
        load(tmp_path)


def test_missing_image_is_a_counted_skip(tmp_path):
    write(tmp_path)
    (tmp_path / "chexpert" / F / "train/patient00002/study1/view1_frontal.jpg").unlink()
    skips = SkipLog("test")
    recs = load(tmp_path, skip_log=skips)
    assert len(recs) == 4 and skips.counts["image file missing"] == 1
    assert len(load(tmp_path, check_files=False)) == 5


def test_no_image_at_all_is_an_error(tmp_path):
    write(tmp_path, images=False)
    with pytest.raises(DatasetFormatError, match="none of the"):
        load(tmp_path)


def test_full_size_folder_detected(tmp_path):
    write(tmp_path, folder="CheXpert-v1.0")
    recs = load(tmp_path)
    assert len(recs) == 5 and "/CheXpert-v1.0/train/" in recs[0]["file_name"]
    with pytest.raises(DatasetFormatError, match="CheXpert-v1.0-small"):
        load(tmp_path / "elsewhere")


def test_prevalence_gap_warning(tmp_path, caplog, monkeypatch):
    t = np.array([[1, 0]] * 10, dtype=np.float32)
    v = np.array([[1, 0]] * 9 + [[0, 0]], dtype=np.float32)
    gaps = prevalence_gaps((t, np.ones_like(t)), (v, np.ones_like(v)), ["A", "B"])
    assert [g[0] for g in gaps] == ["A"] and gaps[0][1:] == (1.0, 0.9)
    assert prevalence_gaps((t, np.ones_like(t)), (t, np.ones_like(t)), ["A", "B"]) == []
    write(tmp_path)
    import cxr_det.data.datasets.chexpert as chexpert
    monkeypatch.setattr(chexpert, "is_val_patient", lambda ids, *a: np.asarray(ids) == "patient00002")
    with caplog.at_level(logging.WARNING):
        assert [r["patient_id"] for r in load(tmp_path, "val")] == ["patient00002"]
    # Atelectasis: train 1 of 4 frontal images (25%), val 0 of 1
    assert "prevalence differs" in caplog.text and "Atelectasis: train 25.0% vs val 0.0%" in caplog.text


def test_observation_arrays_blank_and_text_cells():
    import pandas as pd
    frame = pd.DataFrame({"A": ["1.0", " ", None, "-1"], "B": [0.0, np.nan, 1.0, -1.0]})
    labels, weights = observation_arrays(frame, ["A", "B"], {"A": "ones", "B": "ignore"})
    np.testing.assert_array_equal(labels, [[1, 0], [0, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(weights, [[1, 1], [1, 1], [1, 1], [1, 0]])


def test_register_chexpert(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    write(tmp_path)
    name = "test_chexpert_reg_train"
    try:
        register_chexpert(name, tmp_path, "train", labels="competition5", val_fraction=0.0,
                          uncertainty={"Edema": "ones", "default": "ignore"})
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == FIVE and meta.evaluator_type == "cxr_classification"
        assert meta.task == "multi_label" and meta.dataset == "chexpert" and meta.split == "train"
        assert meta.uncertainty["Edema"] == "ones" and meta.uncertainty["Atelectasis"] == "ignore"
        assert len(DatasetCatalog.get(name)) == 5
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(TypeError, match="unknown option"):
        register_chexpert("x", tmp_path, "train", label="all14")
    with pytest.raises(ValueError, match="test"):
        register_chexpert("x", tmp_path, "test")
    with pytest.raises(ValueError, match="policy"):
        register_chexpert("x", tmp_path, "train", uncertainty="maybe")


def test_odd_age_sex_and_path_rows(tmp_path, caplog):
    rows = list(TRAIN)
    rows[0] = row(f"{F}/train/patient00001/study1/view1_frontal.jpg", "M", "abc", "Frontal", "AP", atel="1.0")
    rows[2] = row("somewhere/else.jpg", "Female", "69", "Frontal", "PA")
    write(tmp_path, train=rows)
    skips = SkipLog("t")
    with caplog.at_level(logging.WARNING):
        recs = load(tmp_path, skip_log=skips)
    assert len(recs) == 4 and skips.counts["Path not in the CheXpert layout"] == 1
    assert recs[0]["clinical"] == {"age": None, "sex": None}
    assert "1 Age cell(s)" in caplog.text and "1 Sex cell(s)" in caplog.text
