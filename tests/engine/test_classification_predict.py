"""tools/predict.py and tools/visualize_saliency.py for image classifiers (issue 12 section 3):
per-label probabilities and decisions at the run's thresholds on PNG, JPEG and DICOM files,
equal to the evaluator's for the same image; Grad-CAM pictures; the decision rules."""
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import cxr_det  # noqa: F401
from helpers import ROOT, SMALL_TRAIN_OPTS, load_tool

from cxr_det.engine.classification_predict import DEFAULT_THRESHOLD, DecisionRule, shown_labels
from cxr_det.utils.saliency import SALIENCY_PANEL_SIDE

CHEXPERT_CONFIG = ROOT / "configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml"
FOLDER_CONFIG = ROOT / "configs/ImageFolder/resnet18_4class.yaml"


def _train(config, root, out, extra=()):
    """``config`` trained 2 iterations at 64 px, then evaluated on its DATASETS.TEST (which
    writes thresholds.json and classification_predictions.json)."""
    from cxr_det.engine import argument_parser

    args = argument_parser().parse_args(
        ["--config-file", str(config), "CXR.DATASET_ROOT", str(root), "OUTPUT_DIR", str(out), *SMALL_TRAIN_OPTS,
         "SOLVER.MAX_ITER", "2", "CXR.CLASSIFIER.INPUT_SIZE", "64", "CXR.CLASSIFIER.TORCHVISION.WEIGHTS", "",
         "TEST.CXR_CLS_EVAL.PLOTS", "False", "TEST.EVAL_PERIOD", "0", *extra])
    load_tool("train_net").main(args)
    return out


@pytest.fixture(scope="module")
def chexpert_root(tmp_path_factory):
    from cxr_det.synthetic.chexpert_writer import make_chexpert

    root = tmp_path_factory.mktemp("chexpert_root")
    make_chexpert(root, 12, seed=0, size=48, n_valid_patients=3)
    return root


@pytest.fixture(scope="module")
def chexpert_run(chexpert_root, tmp_path_factory, one_torch_thread):
    """Multi-label CheXpert classifier with Age/Sex fusion; thresholds chosen on chexpert_val."""
    return _train(CHEXPERT_CONFIG, chexpert_root, tmp_path_factory.mktemp("runs") / "chexpert",
                  ["CXR.CHEXPERT.VAL_FRACTION", "0.3"])


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, one_torch_thread):
    """Binary NORMAL / PNEUMONIA classifier on a folder of classes; threshold chosen on folder_val."""
    from cxr_det.synthetic.image_label_writers import make_image_folder

    root = tmp_path_factory.mktemp("folder_root")
    make_image_folder(root, "pneumonia", 3, seed=0, layout="split", size=48)
    out = _train(FOLDER_CONFIG, root, tmp_path_factory.mktemp("runs") / "folder",
                 ["CXR.IMAGE_FOLDER.NAME", "pneumonia", "CXR.IMAGE_FOLDER.CLASSES", "[]",
                  "DATALOADER.SAMPLER_TRAIN", "TrainingSampler"])
    return root, out


def _predict(argv):
    return load_tool("predict").main([str(a) for a in argv])


def _valid_records(run):
    from detectron2.data import DatasetCatalog

    from cxr_det.data import register_from_config
    from cxr_det.engine import inference_config

    register_from_config(inference_config(str(run)))
    return DatasetCatalog.get("chexpert_valid")


def _png_jpeg_dicom(jpeg, folder):
    """The same X-ray as a JPEG, a lossless PNG of its pixels and a 16-bit DICOM in ``folder``."""
    from cxr_det.synthetic import write_dicom

    folder.mkdir(parents=True)
    shutil.copy(jpeg, folder / "scan.jpg")
    gray = cv2.imread(str(jpeg), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "scan_png.png"), gray)
    write_dicom(folder / "scan_dicom.dcm", gray.astype(np.uint16) * 16)
    return gray.shape


def test_probabilities_equal_the_evaluators_for_the_same_images(chexpert_run, tmp_path):
    # The run's evaluation of chexpert_valid (classification_predictions.json) and predict.py on
    # the same files with the same Age/Sex: same preprocessing, same probabilities and decisions.
    records = _valid_records(chexpert_run)
    valid = Path(records[0]["file_name"]).parents[2]
    table = tmp_path / "clinical.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "age", "sex"])
        for r in records:
            writer.writerow([Path(r["file_name"]).relative_to(valid).as_posix(), r["clinical"]["age"], r["clinical"]["sex"]])
    out = tmp_path / "out"
    _predict(["--run", chexpert_run, "--input", valid, "--output", out, "--clinical", table, "--no-saliency"])
    evaluated = json.loads((chexpert_run / "inference/chexpert_valid/classification_predictions.json").read_text())
    predicted = {r["file_name"]: r for r in json.loads((out / "predictions.json").read_text())}
    assert len(evaluated) == len(records) == len(predicted) == 3
    for row in evaluated:
        mine = predicted[Path(row["file_name"]).relative_to(valid).as_posix()]
        names = list(mine["image_scores"])
        assert names == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
        assert mine["clinical"]["problems"] == []
        np.testing.assert_allclose([mine["image_scores"][n] for n in names], row["scores"], atol=6e-5)
        assert [int(mine["decisions"][n]) for n in names] == row["decisions"]
    assert not list(out.rglob("*.png"))


def test_png_jpeg_and_dicom_give_probabilities_decisions_and_gradcam_pictures(chexpert_run, chexpert_root, tmp_path):
    jpeg = next((chexpert_root / "chexpert").rglob("valid/*/study1/view1_frontal.jpg"))
    height, width = _png_jpeg_dicom(jpeg, tmp_path / "in")
    out = tmp_path / "out"
    _predict(["--run", chexpert_run, "--input", tmp_path / "in", "--output", out, "--saliency-labels", "2"])
    thresholds = json.loads((chexpert_run / "inference/chexpert_val/thresholds.json").read_text())["thresholds"]
    results = {}
    for stem in ("scan", "scan_png", "scan_dicom"):
        result = results[stem] = json.loads((out / f"{stem}.json").read_text())
        assert result["task"] == "multi_label" and (result["height"], result["width"]) == (height, width)
        assert result["thresholds_from"].endswith("inference/chexpert_val/thresholds.json")
        for label, p in result["image_scores"].items():
            assert 0 <= p <= 1
            assert result["decisions"][label] == (p >= thresholds[label])
        scores = result["image_scores"]
        assert result["positive"] == [n for n in sorted(scores, key=lambda n: -scores[n]) if result["decisions"][n]]
        assert len(result["saliency_labels"]) == 2
        picture = cv2.imread(str(out / f"{stem}.png"))
        # The X-ray and two overlays, each drawn 512 pixels on its long side, under the titles.
        assert picture.shape[0] > SALIENCY_PANEL_SIDE
        assert picture.shape[1] >= 3 * round(SALIENCY_PANEL_SIDE * min(width / height, 1))
    # A lossless PNG of the JPEG's pixels is the same image.
    assert results["scan_png"]["image_scores"] == results["scan"]["image_scores"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == summary["predicted"] == 3


def test_without_thresholds_the_decisions_are_at_one_half_and_say_so(chexpert_run, chexpert_root, tmp_path, capsys):
    jpeg = next((chexpert_root / "chexpert").rglob("valid/*/study1/view1_frontal.jpg"))
    out = tmp_path / "out"
    # No evaluation of chexpert_train was ever run: no thresholds.json for it.
    _predict(["--run", chexpert_run, "--input", jpeg, "--output", out, "--no-saliency",
              "TEST.CXR_CLS_EVAL.THRESHOLD_DATASET", "chexpert_train"])
    result = json.loads((out / "view1_frontal.json").read_text())
    assert result["thresholds_from"] == "default"
    assert set(result["thresholds"].values()) == {DEFAULT_THRESHOLD}
    assert all(result["decisions"][n] == (p >= 0.5) for n, p in result["image_scores"].items())
    assert "threshold 0.5 for every label: the run has no thresholds.json" in capsys.readouterr().out


def test_describe_lists_the_task_labels_thresholds_and_clinical_fields(chexpert_run, capsys):
    _predict(["--run", chexpert_run, "--describe"])
    text = capsys.readouterr().out
    assert "multi-label classifier" in text
    assert "classes (5): Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion" in text
    assert "thresholds: Atelectasis" in text
    assert "age" in text and "sex" in text


def test_single_label_probabilities_sum_to_one_and_class_one_is_decided_at_its_threshold(folder_run, tmp_path):
    root, run = folder_run
    image = next((root / "pneumonia" / "test").rglob("*.jpeg"))
    png = tmp_path / "in" / "scan.png"
    png.parent.mkdir()
    cv2.imwrite(str(png), cv2.imread(str(image), cv2.IMREAD_GRAYSCALE))
    out = tmp_path / "out"
    _predict(["--run", run, "--input", png.parent, "--output", out])
    result = json.loads((out / "scan.json").read_text())
    threshold = json.loads((run / "inference/folder_val/thresholds.json").read_text())["thresholds"]["PNEUMONIA"]
    scores = result["image_scores"]
    assert result["task"] == "single_label" and list(scores) == ["NORMAL", "PNEUMONIA"]
    assert sum(scores.values()) == pytest.approx(1.0, abs=2e-4)
    assert result["thresholds"] == {"PNEUMONIA": round(threshold, 4)}
    assert result["decided_class"] == ("PNEUMONIA" if scores["PNEUMONIA"] >= round(threshold, 4) else "NORMAL")
    assert (out / "scan.png").is_file()


def test_visualize_saliency_draws_a_dataset_with_its_ground_truth(chexpert_run, tmp_path, capsys):
    out = tmp_path / "saliency"
    load_tool("visualize_saliency").main(["--run", str(chexpert_run), "--dataset", "chexpert_valid",
                                          "--output", str(out), "--max-images", "2", "--labels", "Edema"])
    written = sorted(p.name for p in out.iterdir())
    assert written == ["00000_view1_frontal.png", "00001_view1_frontal.png"]
    picture = cv2.imread(str(out / written[0]))
    assert picture.shape[0] > SALIENCY_PANEL_SIDE and picture.shape[1] > 2 * SALIENCY_PANEL_SIDE * 0.8
    assert "wrote 2 Grad-CAM picture(s) of chexpert_valid" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown label"):
        load_tool("visualize_saliency").main(["--run", str(chexpert_run), "--dataset", "chexpert_valid",
                                              "--output", str(out), "--labels", "Pneumothorax"])


def test_decision_rules_of_the_three_kinds():
    multi = DecisionRule("multi_label", ["A", "B", "C"], {"A": 0.3, "B": 0.9, "C": 0.5})
    assert multi.decide([0.3, 0.8, 0.6]).tolist() == [True, False, True]
    # Positive labels first (most probable first), then the others.
    assert shown_labels([0.3, 0.8, 0.6], multi, 3) == [2, 0, 1]
    binary = DecisionRule("single_label", ["normal", "abnormal"], {"abnormal": 0.2})
    assert binary.decide([0.75, 0.25]) == 1 and shown_labels([0.75, 0.25], binary, 1) == [1]
    several = DecisionRule("single_label", ["a", "b", "c"])
    assert several.decide([0.2, 0.5, 0.3]) == 1 and "most probable class" in several.describe()
