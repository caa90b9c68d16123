"""End to end through tools/train_net.py for image-level classifiers: a few iterations on
synthetic CheXpert (multi-label, with and without Age/Sex) and on a folder of classes
(single-label, class-balanced sampling and weights); ``--eval-only --run`` on the saved run
gives the same metrics, and the run rebuilds without its datasets' metadata."""
import json
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
from cxr_det.synthetic.chexpert_writer import make_chexpert
from cxr_det.synthetic.image_label_writers import make_image_folder
from helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ONLY = ROOT / "configs/demo/classifier_R18_chexpert_synthetic.yaml"
CLINICAL = ROOT / "configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml"
TINY = ["CXR.CLASSIFIER.INPUT_SIZE", "32", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "0",
        "DATALOADER.NUM_WORKERS", "0", "TEST.CXR_CLS_EVAL.PLOTS", "False", "CXR.TRAIN.PLOT_CURVES", "False"]


@pytest.fixture(scope="module")
def chexpert_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    make_chexpert(root, 24, seed=5, size=32)
    return root


def _run(argv):
    from cxr_det.engine import argument_parser

    return load_tool("train_net").main(argument_parser().parse_args([str(a) for a in argv]))


def _results(path):
    return json.loads(Path(path).read_text())["results"]


@pytest.mark.parametrize("config", [IMAGE_ONLY, CLINICAL], ids=["image-only", "clinical"])
def test_train_then_eval_only_gives_the_same_metrics(chexpert_root, tmp_path, config):
    out = tmp_path / "run"
    _run(["--config-file", config, "CXR.DATASET_ROOT", chexpert_root, "OUTPUT_DIR", out, *TINY])
    for split in ("chexpert_val", "chexpert_valid"):
        folder = out / "inference" / split
        assert {"metrics.json", "classification_predictions.json"} <= {p.name for p in folder.iterdir()}
    assert (out / "inference/chexpert_val/thresholds.json").is_file()
    valid = _results(out / "inference/chexpert_valid/metrics.json")
    assert {"mAUC", "mAP", "AUC/Atelectasis", "F2/Edema", "threshold/Cardiomegaly"} <= set(valid)
    # the test split used the thresholds chosen on chexpert_val
    meta = json.loads((out / "inference/chexpert_valid/metrics.json").read_text())
    assert "chexpert_val" in str(meta["threshold_source"])
    config_yaml = (out / "config.yaml").read_text()
    assert "TASK: multi_label" in config_yaml and "NUM_CLASSES: 5" in config_yaml

    evaluated = _run(["--eval-only", "--run", out, "CXR.DATASET_ROOT", chexpert_root,
                      "OUTPUT_DIR", tmp_path / "eval", "TEST.CXR_CLS_EVAL.PLOTS", "False"])
    for split in ("chexpert_val", "chexpert_valid"):
        again = _results(tmp_path / "eval/inference" / split / "metrics.json")
        first = _results(out / "inference" / split / "metrics.json")
        assert again == pytest.approx(first, nan_ok=True)
    assert evaluated["chexpert_valid"]["classification"]["mAUC"] == pytest.approx(valid["mAUC"], nan_ok=True)


def test_single_label_folder_with_class_balance(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, "pneumonia", 6, seed=1, layout="split", size=32)
    out = tmp_path / "run"
    config = ROOT / "configs/ImageFolder/resnet18_4class.yaml"
    opts = ["CXR.DATASET_ROOT", root, "OUTPUT_DIR", out, "CXR.IMAGE_FOLDER.NAME", "pneumonia",
            "CXR.IMAGE_FOLDER.CLASSES", "[]", "CXR.CLASSIFIER.TORCHVISION.WEIGHTS", "",
            "CXR.CLASSIFIER.CLASS_WEIGHT", "balanced", "MODEL.DEVICE", "cpu", *TINY]
    _run(["--config-file", config, *opts])
    metrics = json.loads((out / "inference/folder_test/metrics.json").read_text())
    assert metrics["task"] == "single_label"
    assert {"accuracy", "balanced_accuracy", "AUC/PNEUMONIA"} <= set(metrics["results"])
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix if isinstance(matrix, list) else matrix["counts"])) == 12
    assert "CLASS_WEIGHT_VALUES:\n    - 1.0\n    - 1.0" in (out / "config.yaml").read_text() or \
        "CLASS_WEIGHT_VALUES: [1.0, 1.0]" in (out / "config.yaml").read_text()


def test_roi_fusion_on_a_classifier_is_reported(chexpert_root, tmp_path):
    with pytest.raises(ValueError, match="CXR.FUSION.ROI"):
        _run(["--config-file", CLINICAL, "CXR.DATASET_ROOT", chexpert_root, "OUTPUT_DIR", tmp_path / "bad",
              "CXR.FUSION.ROI", "True", *TINY])
