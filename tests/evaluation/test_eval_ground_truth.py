"""The evaluator's ground truth follows the dataset's registration options (issue 11, item 3),
and the files it writes read back to exactly its numbers (item 4)."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from cxr_det.config import get_cxr_cfg
from cxr_det.data import DatasetRegistrationError, register_from_config, unregister_cxr_datasets
from cxr_det.evaluation import CXRDetectionEvaluator, evaluate_detections
from cxr_det.evaluation import cxr_evaluator
from cxr_det.evaluation.coco_files import load_evaluation_inputs

SPLIT = "reflacx_all"


def _register(root, readers):
    cfg = get_cxr_cfg(opts=["CXR.DATASET_ROOT", str(root), "CXR.REFLACX.READERS", readers])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old reader names during the transition
        register_from_config(cfg)
    return cfg


def _model_outputs(records, num_classes, seed=0):
    """detectron2 inputs/outputs as a model gives them (float32 tensors): for each GT box a
    jittered hit, plus false positives; every third image scores itself normal; the last
    image is never processed, the one before predicts nothing."""
    rng = np.random.default_rng(seed)
    inputs, outputs = [], []
    for k, rec in enumerate(records[:-1]):
        boxes, scores, classes = [], [], []
        if k != len(records) - 2:
            for anno in rec["annotations"]:
                box = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
                boxes.append(np.asarray(box) + rng.normal(0, 4, 4))
                scores.append(rng.uniform(0.3, 1.0))
                classes.append(anno["category_id"])
            for _ in range(rng.integers(0, 3)):
                x, y = rng.uniform(0, rec["width"] / 2, 2)
                boxes.append([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)])
                scores.append(rng.uniform(0.05, 0.8))
                classes.append(int(rng.integers(0, num_classes)))
        inst = Instances((rec["height"], rec["width"]))
        inst.pred_boxes = Boxes(torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)))
        inst.scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
        inst.pred_classes = torch.as_tensor(np.asarray(classes, dtype=np.int64))
        out = {"instances": inst}
        if k % 3 == 0:
            out["image_no_finding_score"] = torch.tensor(float(rng.uniform(0, 1)))
        inputs.append({"image_id": rec["image_id"], "height": rec["height"], "width": rec["width"]})
        outputs.append(out)
    return inputs, outputs


def _evaluate(cfg, inputs, outputs, out_dir=None):
    evaluator = CXRDetectionEvaluator(SPLIT, cfg=cfg, output_dir=None if out_dir is None else str(out_dir),
                                      distributed=False, plots=False)
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return evaluator, evaluator.evaluate()


def _assert_identical(a, b):
    """Same tasks, keys and values, exactly (NaN equal to NaN)."""
    assert list(a) == list(b)
    for task in a:
        assert list(a[task]) == list(b[task]), task
        for key, x in a[task].items():
            y = b[task][key]
            assert (isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == y, (task, key, x, y)


def test_reader_modes_evaluate_against_their_own_ground_truth(tiny_reflacx, tmp_path):
    cxr_evaluator.clear_ground_truth_cache()
    cfg_all = _register(tiny_reflacx, "all_readers")
    records = DatasetCatalog.get(SPLIT)
    classes = MetadataCatalog.get(SPLIT).thing_classes
    key_all = MetadataCatalog.get(SPLIT).cxr_options_key
    inputs, outputs = _model_outputs(records, len(classes))
    _, res_all = _evaluate(cfg_all, inputs, outputs, tmp_path / "all_readers")
    gt_all = json.loads((tmp_path / "all_readers" / "ground_truth_coco.json").read_text())
    assert gt_all["info"]["cxr_options_key"] == key_all
    assert gt_all["info"]["cxr_options"]["registrar"]["readers"] == "all_readers"
    assert len(gt_all["annotations"]) == sum(len(r["annotations"]) for r in records)

    # the same name with other options, in the same process: refused, naming the option
    with pytest.raises(DatasetRegistrationError, match="readers"):
        _register(tiny_reflacx, "mean_ellipse")

    # unregistered first, the name now means the mean-ellipse ground truth: fewer boxes
    unregister_cxr_datasets()
    cfg_mean = _register(tiny_reflacx, "mean_ellipse")
    key_mean = MetadataCatalog.get(SPLIT).cxr_options_key
    assert key_mean != key_all
    _, res_mean = _evaluate(cfg_mean, inputs, outputs, tmp_path / "mean_ellipse")
    gt_mean = json.loads((tmp_path / "mean_ellipse" / "ground_truth_coco.json").read_text())
    assert gt_mean["info"]["cxr_options_key"] == key_mean
    fresh = DatasetCatalog.get(SPLIT)
    assert len(gt_mean["annotations"]) == sum(len(r["annotations"]) for r in fresh) < len(gt_all["annotations"])
    metrics_all = json.loads((tmp_path / "all_readers" / "metrics.json").read_text())
    metrics_mean = json.loads((tmp_path / "mean_ellipse" / "metrics.json").read_text())
    assert sum(metrics_mean["gt_per_class"].values()) < sum(metrics_all["gt_per_class"].values())
    assert res_mean["froc"]["CPM"] != res_all["froc"]["CPM"] or res_mean["bbox"]["AP"] != res_all["bbox"]["AP"]
    # counted from the mean-ellipse dicts, loaded afresh
    per_class = {name: sum(a["category_id"] == k for r in fresh for a in r["annotations"]) for k, name in enumerate(classes)}
    assert metrics_mean["gt_per_class"] == per_class

    # back to the first options: the first ground truth again
    unregister_cxr_datasets()
    _register(tiny_reflacx, "all_readers")
    _, again = _evaluate(cfg_all, inputs, outputs)
    _assert_identical(again, res_all)


def test_ground_truth_is_cached_per_registration_options(tiny_reflacx, monkeypatch):
    cxr_evaluator.clear_ground_truth_cache()
    loads = []
    get = DatasetCatalog.get
    monkeypatch.setattr(DatasetCatalog, "get", lambda name: loads.append(name) or get(name))
    _register(tiny_reflacx, "all_readers")
    classes = MetadataCatalog.get(SPLIT).thing_classes
    first = cxr_evaluator.dataset_ground_truth(SPLIT, classes)
    assert cxr_evaluator.dataset_ground_truth(SPLIT, classes) is first and loads == [SPLIT]
    unregister_cxr_datasets()
    _register(tiny_reflacx, "per_reading")
    other = cxr_evaluator.dataset_ground_truth(SPLIT, classes)
    assert loads == [SPLIT, SPLIT] and len(other[0]) > len(first[0])  # a record per reading
    # a dataset registered by other code (no options key) is loaded every time
    name = "cxr_eval_gt_cache_toy"
    DatasetCatalog.register(name, lambda: [{"image_id": 1, "height": 8, "width": 8, "annotations": []}])
    MetadataCatalog.get(name).set(thing_classes=["A"])
    try:
        cxr_evaluator.dataset_ground_truth(name, ["A"])
        cxr_evaluator.dataset_ground_truth(name, ["A"])
        assert loads.count(name) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_saved_inputs_reload_to_exactly_the_evaluator_metrics(tiny_reflacx, tmp_path):
    cfg = _register(tiny_reflacx, "all_readers")
    cfg.TEST.CXR_EVAL.BOOTSTRAP = 30
    records = DatasetCatalog.get(SPLIT)
    inputs, outputs = _model_outputs(records, len(MetadataCatalog.get(SPLIT).thing_classes), seed=3)
    evaluator, results = _evaluate(cfg, inputs, outputs, tmp_path)
    assert list(results) == ["bbox", "vinbigdata", "iobb", "froc", "image", "bootstrap"]
    assert (tmp_path / "cxr_eval_no_finding_scores.json").exists()
    gt, predictions, class_names, _ = load_evaluation_inputs(str(tmp_path))
    assert class_names == list(MetadataCatalog.get(SPLIT).thing_classes)
    reloaded = evaluate_detections(gt, predictions, class_names, evaluator.options)
    _assert_identical(reloaded, results)
