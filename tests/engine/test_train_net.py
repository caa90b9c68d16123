"""End to end through tools/train_net.py on synthetic REFLACX: train a few iterations,
evaluate, then --eval-only from the saved checkpoint gives the same metrics."""
import json
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
from cxr_det.synthetic import make_reflacx
from helpers import SMALL_TRAIN_OPTS, load_tool

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"
CLINICAL_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"


def _train_net():
    return load_tool("train_net")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr")
    make_reflacx(root, 30, seed=3, size=160)
    return root


def _opts(root, out, extra=()):
    return ["CXR.DATASET_ROOT", str(root), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "3",
            "SOLVER.CHECKPOINT_PERIOD", "1000", *SMALL_TRAIN_OPTS, "CXR.TRAIN.PLOT_CURVES", "True", *extra]


def _run(train_net, argv):
    from detectron2.engine import default_argument_parser

    return train_net.main(default_argument_parser().parse_args(argv))


@pytest.mark.parametrize("config", [DEMO_CONFIG, CLINICAL_CONFIG], ids=["image-only", "clinical"])
def test_train_then_eval_only_gives_the_same_metrics(synthetic_root, tmp_path, config):
    train_net = _train_net()
    out = tmp_path / "run"
    _run(train_net, ["--config-file", str(config), *_opts(synthetic_root, out)])
    assert (out / "model_final.pth").is_file()
    assert (out / "config.yaml").is_file()
    assert (out / "inference/reflacx_val/coco_instances_results.json").is_file()
    trained = json.loads((out / "inference/reflacx_val/metrics.json").read_text())["results"]
    assert set(trained["bbox"]) >= {"AP", "AP50", "AP75", "AP50-Atelectasis"}
    assert {"vinbigdata", "iobb", "froc", "image"} <= set(trained)

    if config == CLINICAL_CONFIG:
        import torch

        assert (out / "clinical_stats.json").is_file()
        assert "clinical_featurizer" in torch.load(out / "model_final.pth", weights_only=True)

    evaluated = _run(
        train_net,
        ["--config-file", str(config), "--eval-only",
         *_opts(synthetic_root, tmp_path / "eval", ["MODEL.WEIGHTS", str(out / "model_final.pth")])],
    )
    again = json.loads((tmp_path / "eval/inference/reflacx_val/metrics.json").read_text())["results"]
    assert again == trained
    assert evaluated["bbox"]["AP50"] == pytest.approx(trained["bbox"]["AP50"], nan_ok=True)


def test_mask_rcnn_trains_and_evaluates_masks(synthetic_root, tmp_path):
    train_net = _train_net()
    out = tmp_path / "mask"
    _run(
        train_net,
        ["--config-file", str(DEMO_CONFIG),
         *_opts(synthetic_root, out, ["MODEL.MASK_ON", "True", "SOLVER.MAX_ITER", "2"])],
    )
    results = json.loads((out / "inference/reflacx_val/metrics.json").read_text())["results"]
    assert "segm" in results and "bbox" in results


def test_class_count_mismatch_is_reported(synthetic_root, tmp_path):
    train_net = _train_net()
    with pytest.raises(ValueError, match="NUM_CLASSES is 3 but dataset reflacx_train has 5"):
        _run(train_net, ["--config-file", str(DEMO_CONFIG),
                         *_opts(synthetic_root, tmp_path / "bad", ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])])


def test_fusion_on_a_stock_architecture_is_reported(synthetic_root, tmp_path):
    # CXR.FUSION with GeneralizedRCNN would be ignored and an image-only model trained.
    train_net = _train_net()
    with pytest.raises(ValueError, match="GeneralizedRCNN does not fuse clinical data"):
        _run(train_net, ["--config-file", str(DEMO_CONFIG),
                         *_opts(synthetic_root, tmp_path / "bad", ["CXR.FUSION.SPATIAL", "concat"])])
