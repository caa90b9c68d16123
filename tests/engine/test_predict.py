"""tools/predict.py on real-world folders (issue 9 item 6, issue 10 section 3): inputs keyed by
relative path, clinical inputs validated, unreadable files skipped, DICOM header values used,
masks in the JSON."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from helpers import DEMO_CONFIG, load_tool, train_tiny_run

ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def chexpert_layout(tiny_reflacx, tmp_path_factory):
    """Three patients' ``study1/view1_frontal.jpg``: same file name, different folders."""
    jpgs = sorted((tiny_reflacx / "mimic-cxr-jpg").rglob("*.jpg"))[:3]
    top = tmp_path_factory.mktemp("chexpert") / "valid"
    for i, jpg in enumerate(jpgs, 1):
        target = top / f"patient0000{i}" / "study1" / "view1_frontal.jpg"
        target.parent.mkdir(parents=True)
        shutil.copy(jpg, target)
    return top


def _predict(argv):
    return load_tool("predict").main([str(a) for a in argv])


def test_same_file_names_in_different_folders_keep_their_own_outputs_and_records(tiny_clinical_run, chexpert_layout, tmp_path):
    # Before: one output file, and all three predictions carried the last patient's record.
    csv = tmp_path / "clinical.csv"
    csv.write_text("file_name,age,gender,temperature\n"
                   "patient00001/study1/view1_frontal.jpg,31,F,98.6\n"
                   "patient00002/study1/view1_frontal.jpg,52,M,101.2\n"
                   "patient00003/study1/view1_frontal.jpg,77,F,99.0\n")
    out = tmp_path / "out"
    _predict(["--run", tiny_clinical_run, "--input", chexpert_layout, "--output", out, "--clinical", csv])
    ages = {}
    for i in (1, 2, 3):
        result = json.loads((out / f"patient0000{i}/study1/view1_frontal.json").read_text())
        assert (out / f"patient0000{i}/study1/view1_frontal.png").is_file()
        ages[i] = result["clinical"]["raw"]["age"]
    assert ages == {1: 31.0, 2: 52.0, 3: 77.0}
    assert len(json.loads((out / "predictions.json").read_text())) == 3


def test_records_keyed_by_a_file_name_shared_by_several_inputs_is_an_error(tiny_clinical_run, chexpert_layout, tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("file_name,age\nview1_frontal.jpg,40\n")
    with pytest.raises(SystemExit, match="occurs 3 times"):
        _predict(["--run", tiny_clinical_run, "--input", chexpert_layout, "--output", tmp_path / "o", "--clinical", csv])


def test_unreadable_files_are_skipped_counted_and_named(tiny_clinical_run, chexpert_layout, tmp_path):
    folder = tmp_path / "scans"
    shutil.copytree(chexpert_layout, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.dcm").write_bytes(b"")
    out = tmp_path / "out"
    _predict(["--run", tiny_clinical_run, "--input", folder, "--output", out])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 5 and summary["predicted"] == 3
    assert set(summary["skipped"]) == {"broken.png", "empty.dcm"}


def test_misspelled_clinical_columns_are_reported_and_strict_refuses(tiny_clinical_run, chexpert_layout, tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("file_name,Age,sex,temp,heart_rate\n"
                   + "".join(f"patient0000{i}/study1/view1_frontal.jpg,60,F,99,80\n" for i in (1, 2, 3)))
    out = tmp_path / "out"
    _predict(["--run", tiny_clinical_run, "--input", chexpert_layout, "--output", out, "--clinical", csv])
    summary = json.loads((out / "summary.json").read_text())
    # Column problems are reported once for the file, value problems per image.
    fields = " ".join(summary["clinical_file_problems"])
    assert "unknown field 'Age' (did you mean 'age'?)" in fields and "'heart_rate'" in fields
    assert len(summary["clinical_problems"]) == 3
    assert "missing: age" in " ".join(summary["clinical_problems"]["patient00001/study1/view1_frontal.jpg"])
    with pytest.raises(SystemExit, match="--strict"):
        _predict(["--run", tiny_clinical_run, "--input", chexpert_layout, "--output", tmp_path / "o2", "--clinical", csv,
                  "--strict"])


def test_unparseable_values_and_unknown_categories_are_reported(tiny_clinical_run, chexpert_layout, tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("file_name,age,gender,heartrate,o2sat\n"
                   "patient00001/study1/view1_frontal.jpg,60,X,fast,130\n")
    out = tmp_path / "out"
    _predict(["--run", tiny_clinical_run, "--input", chexpert_layout / "patient00001", "--output", out,
              "--clinical", csv])
    # The input root is patient00001, so the key is study1/view1_frontal.jpg: not matched.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clinical_unmatched"] == ["patient00001/study1/view1_frontal.jpg"]
    out = tmp_path / "out2"
    _predict(["--run", tiny_clinical_run, "--input", chexpert_layout, "--output", out, "--clinical", csv])
    text = " ".join(json.loads((out / "summary.json").read_text())["clinical_problems"]
                    ["patient00001/study1/view1_frontal.jpg"])
    assert "heartrate 'fast' is not a number" in text
    assert "o2sat" in text and "130" in text and "outside the plausible range 50..100" in text
    assert "gender 'X' is not among the training values" in text


def test_describe_lists_fields_units_and_ranges(tiny_clinical_run, capsys):
    _predict(["--run", tiny_clinical_run, "--describe"])
    text = capsys.readouterr().out
    assert "Consolidation" in text and "temperature" in text and "degrees F" in text and "90..110" in text
    assert "values: F, M" in text


def test_dicom_source_model_reads_age_and_sex_from_the_dicom_header(tiny_clinical_run, tmp_path):
    from cxr_det.synthetic.dicom_writer import write_dicom

    state = torch.load(tiny_clinical_run / "model_final.pth", map_location="cpu", weights_only=True)
    state["cxr_run"]["config"] = state["cxr_run"]["config"].replace("SOURCE: mimic-iv-ed", "SOURCE: dicom")
    assert "SOURCE: dicom" in state["cxr_run"]["config"]
    torch.save(state, tmp_path / "model_dicom_source.pth")
    pixels = (np.random.default_rng(0).random((160, 150)) * 4000).astype(np.uint16)
    dicom = write_dicom(tmp_path / "scans" / "a.dicom", pixels, bits_stored=12, patient_age="065Y",
                        patient_sex="F")
    out = tmp_path / "out"
    _predict(["--run", tmp_path / "model_dicom_source.pth", "--input", dicom.parent, "--output", out])
    clinical = json.loads((out / "a.json").read_text())["clinical"]
    assert clinical["raw"] == {"age": 65.0, "gender": "F"}  # before: "clinical": null
    assert clinical["used"]["age"]["value"] == 65.0 and clinical["used"]["gender"] == {
        "raw": "F", "value": "F", "status": "ok"}


def test_mask_rcnn_masks_are_in_the_json(tiny_reflacx, chexpert_layout, tmp_path):
    from pycocotools import mask as mask_util

    run = train_tiny_run(DEMO_CONFIG, tiny_reflacx, tmp_path / "mask", ["MODEL.MASK_ON", "True"])
    out = tmp_path / "out"
    _predict(["--run", run, "--input", chexpert_layout / "patient00001", "--output", out,
              "--conf-threshold", "0.0"])
    result = json.loads((out / "study1/view1_frontal.json").read_text())
    assert result["instances"]
    for det in result["instances"]:
        rle = dict(det["segmentation"], counts=det["segmentation"]["counts"].encode())
        assert mask_util.decode(rle).shape == (result["height"], result["width"])


def test_predict_without_weights_refuses(tmp_path, chexpert_layout):
    # Before: an image-only config without MODEL.WEIGHTS ran a random model without a word.
    with pytest.raises(SystemExit, match="no trained weights"):
        _predict(["--config-file", DEMO_CONFIG, "--input", chexpert_layout, "--output", tmp_path / "o"])


def test_inputs_differing_only_in_suffix_keep_their_own_outputs_and_json_is_strict(tiny_clinical_run, chexpert_layout,
                                                                                    tmp_path):
    import cv2

    folder = tmp_path / "scans"
    folder.mkdir()
    jpg = chexpert_layout / "patient00001/study1/view1_frontal.jpg"
    shutil.copy(jpg, folder / "x.jpg")
    cv2.imwrite(str(folder / "x.png"), cv2.imread(str(jpg)))
    csv = tmp_path / "clinical.csv"
    csv.write_text("file_name,age,gender\nx.jpg,,F\nx.png,50,\n")  # blank cells
    out = tmp_path / "out"
    _predict(["--run", tiny_clinical_run, "--input", folder, "--output", out, "--clinical", csv])
    assert (out / "x.jpg.json").is_file() and (out / "x.png.json").is_file()
    text = (out / "x.jpg.json").read_text()
    assert "NaN" not in text  # strict JSON: blank values are null
    assert json.loads(text)["clinical"]["raw"]["age"] is None
