"""Bootstrap intervals and paired comparisons (issue 10, section 5), and the inputs of
tools/evaluate.py that broke it (section 3): string image ids, bad ground-truth boxes,
unknown images and categories."""
import contextlib
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

import cxr_det  # noqa: F401
from cxr_det.evaluation.bootstrap import (
    BootstrapMetrics,
    bootstrap_intervals,
    paired_comparison,
    paired_p_value,
    percentile_interval,
    resample_indices,
)
from cxr_det.evaluation.coco import coco_metrics, predictions_to_coco_results, records_to_coco
from cxr_det.evaluation.core import EvalOptions, InputReport, evaluate_detections
from cxr_det.evaluation.image_level import image_level_metrics
from cxr_det.evaluation.matching import ImageBoxes
from cxr_det.evaluation.froc import froc_metrics
from cxr_det.evaluation.vinbigdata import vinbigdata_metrics

from test_eval_references import vindr_like
from helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["A", "B", "C"]


def _load_tool():
    return load_tool("evaluate")


def _records_and_predictions(images):
    records = [
        {"image_id": im.image_id, "height": 300, "width": 300,
         "annotations": [{"bbox": list(map(float, b)), "bbox_mode": 0, "category_id": int(c)}
                         for b, c in zip(im.gt_boxes, im.gt_classes)]}
        for im in images
    ]
    predictions = [{"image_id": im.image_id, "boxes": im.pred_boxes, "scores": im.pred_scores,
                    "classes": im.pred_classes} for im in images]
    return records, predictions


def test_point_values_equal_the_protocols_and_pycocotools():
    images = vindr_like(50, len(NAMES), seed=3, tie_step=0.05)
    per_class, summary = BootstrapMetrics(images, NAMES, EvalOptions()).point()
    # AP50: pycocotools' COCOeval (the reference of the "bbox" protocol) on the same data
    records, predictions = _records_and_predictions(images)
    coco = coco_metrics(records_to_coco(records, NAMES), predictions_to_coco_results(predictions), NAMES,
                        tasks=["bbox"], use_faster_coco_eval=False)["bbox"]
    assert 100 * summary["AP50"] == pytest.approx(coco["AP50"], abs=1e-9)
    for k, name in enumerate(NAMES):
        assert 100 * per_class["AP50"][k] == pytest.approx(coco[f"AP50-{name}"], abs=1e-9)
    assert 100 * summary["mAP40"] == pytest.approx(vinbigdata_metrics(images, NAMES)[0]["mAP40"], abs=1e-9)
    assert 100 * summary["CPM"] == pytest.approx(froc_metrics(images, NAMES)[0]["CPM"], abs=1e-9)
    assert 100 * summary["AUC"] == pytest.approx(image_level_metrics(images, NAMES)[0]["AUC"], abs=1e-9)


def test_a_resample_equals_the_dataset_with_images_repeated():
    images = vindr_like(20, len(NAMES), seed=5)  # untied scores: copies' order cannot matter
    scorer = BootstrapMetrics(images, NAMES, EvalOptions())
    indices = np.array([[0, 0, 3, 5, 5, 5, 7, 11, 12, 12, 13, 14, 15, 15, 16, 17, 18, 19, 19, 19]])
    weights = np.bincount(indices[0], minlength=len(images))[None, :].astype(float)
    _, summary = scorer.evaluate(weights)
    repeated = [images[i] for i in indices[0]]
    assert 100 * summary["mAP40"][0] == pytest.approx(vinbigdata_metrics(repeated, NAMES)[0]["mAP40"])
    assert 100 * summary["CPM"][0] == pytest.approx(froc_metrics(repeated, NAMES)[0]["CPM"])
    assert 100 * summary["AUC"][0] == pytest.approx(image_level_metrics(repeated, NAMES)[0]["AUC"])


def test_intervals_are_seeded_and_contain_the_point():
    images = vindr_like(80, len(NAMES), seed=1)
    options = EvalOptions()
    a = bootstrap_intervals(images, NAMES, options, num_resamples=200, seed=4)
    b = bootstrap_intervals(images, NAMES, options, num_resamples=200, seed=4)
    c = bootstrap_intervals(images, NAMES, options, num_resamples=200, seed=5)
    assert a == b and a != c
    for metric in ("AP50", "mAP40", "CPM", "AUC"):
        assert a[f"{metric}_low"] <= a[metric] <= a[f"{metric}_high"], metric
        assert a[f"{metric}_high"] - a[f"{metric}_low"] > 0
    assert "AP50_low-A" in a and "mAP40_high-No finding" in a and a["resamples"] == 200
    np.testing.assert_array_equal(resample_indices(5, 3, seed=2), resample_indices(5, 3, seed=2))
    with pytest.raises(ValueError):
        resample_indices(0, 3)


def test_thousand_resamples_of_three_thousand_images_take_seconds():
    images = vindr_like(3000, 5, seed=0)
    start = time.perf_counter()
    out = bootstrap_intervals(images, list("ABCDE"), EvalOptions(), num_resamples=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed  # about 5 s on one free core here
    assert out["mAP40_low"] < out["mAP40"] < out["mAP40_high"]


def test_percentile_interval_and_p_value():
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))
    # 1000 differences all > 0: p = 2 * (1 + 0) / 1001
    assert paired_p_value(np.ones(1000)) == pytest.approx(2 / 1001)
    assert paired_p_value(np.zeros(10)) == 1.0
    d = np.r_[-np.ones(300), np.ones(700)]  # 300 of 1000 at or below 0: 2 * 301 / 1001
    assert paired_p_value(d) == pytest.approx(2 * 301 / 1001)


def test_paired_comparison_same_and_better_predictions():
    a = vindr_like(120, len(NAMES), seed=2)
    options = EvalOptions()
    same = paired_comparison(a, a, NAMES, options, num_resamples=100, seed=0)
    assert list(same) == ["AP50", "mAP40", "CPM", "AUC"]
    for metric, rows in same.items():
        assert list(rows)[0] == "all"
        for row, v in rows.items():
            if not math.isnan(v["A"]):
                assert v["difference"] == 0 and v["low"] == 0 and v["high"] == 0 and v["p_value"] == 1.0
    # B: every lesion of class A found exactly with a top score -> A's AP50 gains, others equal
    b = []
    for im in a:
        extra = [(box, 0.999, 0) for box, c in zip(im.gt_boxes, im.gt_classes) if c == 0]
        b.append(ImageBoxes(im.image_id, im.gt_boxes, im.gt_classes,
                            np.r_[im.pred_boxes, np.asarray([e[0] for e in extra]).reshape(-1, 4)],
                            np.r_[im.pred_scores, [e[1] for e in extra]],
                            np.r_[im.pred_classes, [e[2] for e in extra]].astype(int)))
    cmp = paired_comparison(a, b, NAMES, options, num_resamples=200, seed=0)
    row = cmp["AP50"]["A"]
    assert row["B"] > row["A"] and row["difference"] == pytest.approx(row["B"] - row["A"])
    assert 0 < row["low"] <= row["difference"] <= row["high"] and row["p_value"] < 0.05
    assert cmp["AP50"]["B"]["difference"] == 0.0
    assert cmp["AP50"]["all"]["low"] > 0
    with pytest.raises(ValueError):
        paired_comparison(a, b[:-1], NAMES, options, num_resamples=10)


def test_evaluator_bootstrap_option_and_config_keys():
    from detectron2.config import get_cfg

    from cxr_det.config import add_cxr_eval_config

    cfg = get_cfg()
    add_cxr_eval_config(cfg)
    node = cfg.TEST.CXR_EVAL
    assert (node.VINBIGDATA_MATCHING, node.FROC_RULE, node.BOOTSTRAP, node.BOOTSTRAP_SEED) == ("voc", "one_to_one", 0, 0)
    node.BOOTSTRAP = 50
    node.FROC_RULE = "luna16"
    options = EvalOptions.from_cfg(cfg, vinbigdata_matching="greedy")
    assert (options.bootstrap, options.froc_rule, options.vinbigdata_matching) == (50, "luna16", "greedy")
    for bad in ({"vinbigdata_matching": "devkit"}, {"froc_rule": "camelyon"}, {"bootstrap": -1}):
        with pytest.raises(ValueError):
            EvalOptions(**bad)
    images = vindr_like(30, len(NAMES), seed=0)
    records, predictions = _records_and_predictions(images)
    off = evaluate_detections(records, predictions, NAMES, EvalOptions(protocols=("froc",)))
    assert "bootstrap" not in off  # off by default (training-time evaluations)
    on = evaluate_detections(records, predictions, NAMES, EvalOptions(protocols=("froc",), bootstrap=50))
    assert on["bootstrap"]["CPM"] == pytest.approx(on["froc"]["CPM"]) and "AP50" not in on["bootstrap"]


# ---------------------------------------------------------------- tools/evaluate.py inputs


MD5 = ["0005e8e3701dfb1dd93d53e2ff537b6e", "004f33259ee4aef671c2b95d54e4be68", "ffe9b0e3ad2b0b6a1d0b3c9f2a4b5c6d"]


def _write(tmp_path, gt, results):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    return ["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "res.json")]


def test_string_image_ids_work_with_both_coco_backends(tmp_path):
    import faster_coco_eval  # noqa: F401  (an install requirement: the default COCO backend)
    gt = {
        "images": [{"id": i, "height": 64, "width": 64} for i in MD5],
        "annotations": [{"id": 1, "image_id": MD5[0], "category_id": 0, "bbox": [10, 10, 20, 20], "area": 400,
                         "iscrowd": 0},
                        {"id": 2, "image_id": MD5[1], "category_id": 0, "bbox": [0, 0, 30, 10], "area": 300,
                         "iscrowd": 0}],
        "categories": [{"id": 0, "name": "A"}],
    }
    results = [{"image_id": MD5[0], "category_id": 0, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": MD5[2], "category_id": 0, "bbox": [0, 0, 30, 10], "score": 0.8}]
    tool = _load_tool()
    args = _write(tmp_path, gt, results)
    out = {}
    for backend in ("faster", "pycocotools"):  # before issue 10: "faster" (the default) raised ValueError
        with contextlib.redirect_stdout(io.StringIO()):
            out[backend] = tool.main(args + ["--output", str(tmp_path / backend), "--protocols", "coco",
                                             "--coco-backend", backend, "--bootstrap", "0"])
    # by hand: 2 lesions, .9 TP, .8 FP (on the normal image): curve (R .5, P 1), (R .5, P .5);
    # COCO's 101 recall points: 0 .. .5 (51 of them) at 1, the rest 0 -> 51 / 101
    assert out["faster"]["bbox"]["AP50"] == pytest.approx(100 * 51 / 101)
    assert out["pycocotools"]["bbox"]["AP50"] == pytest.approx(out["faster"]["bbox"]["AP50"])


def test_bad_boxes_unknown_images_and_categories_are_counted(tmp_path):
    gt = {
        "images": [{"id": 11, "height": 64, "width": 64}, {"id": 12, "height": 64, "width": 64}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 12, "category_id": 3, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},  # width 0
            {"id": 3, "image_id": 12, "category_id": 7, "bbox": [5, 5, 10, -4], "area": 0, "iscrowd": 0},  # height < 0
            {"id": 4, "image_id": 12, "category_id": 7, "bbox": [30, 30, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "A"}, {"id": 7, "name": "B"}],  # non-contiguous ids
    }
    results = [
        {"image_id": 11, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 12, "category_id": 7, "bbox": [30, 30, 10, 10], "score": 0.8},
        {"image_id": 99, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.7},  # unknown image
        {"image_id": 11, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.6},  # unknown category
    ]
    tool = _load_tool()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        res = tool.main(_write(tmp_path, gt, results) + ["--output", str(tmp_path / "out"), "--protocols",
                                                          "vinbigdata", "froc", "--bootstrap", "0"])
    # by hand: every real lesion found first -> AP 100. Before issue 10 the zero-size boxes were
    # lesions no detection can match: AP40-A 50 (1 of 2 found), AP40-B 50, CPM 50.
    assert res["vinbigdata"]["AP40-A"] == pytest.approx(100.0)
    assert res["vinbigdata"]["AP40-B"] == pytest.approx(100.0)
    assert res["froc"]["CPM"] == pytest.approx(100.0)
    text = printed.getvalue()
    assert "2 ground-truth box(es) left out" not in text  # one line per reason
    assert "zero-area box" in text and "x_max < x_min" in text
    assert "1 prediction entries (1 boxes) for image ids not in the ground truth ignored" in text
    assert "categories not in the ground truth ignored: {5: 1}" in text
    assert "category ids mapped to class indices: {3: 0, 7: 1}" in text
    checks = json.loads((tmp_path / "out" / "metrics.json").read_text())["input_checks"]
    assert checks["bad_gt_boxes"] == {"zero-area box (width or height 0)": 1, "x_max < x_min or y_max < y_min": 1}
    assert checks["predictions_for_unknown_images"] == 1 and checks["unknown_categories"] == {"5": 1}
    assert checks["category_ids"] == {"3": 0, "7": 1}
    # the evaluator path shares the check
    report = InputReport()
    records = [{"image_id": 1, "annotations": [{"bbox": [3, 3, 3, 9], "bbox_mode": 0, "category_id": 0}]}]
    evaluate_detections(records, [], ["A"], EvalOptions(protocols=("froc",)), report=report)
    assert report.bad_gt_boxes == {"zero-area box (width or height 0)": 1}


def test_tool_compare_writes_a_paired_comparison(tmp_path):
    images = vindr_like(40, 2, seed=9)
    names = ["A", "B"]
    records, predictions = _records_and_predictions(images)
    gt = records_to_coco(records, names)
    better = [dict(p, boxes=np.concatenate([p["boxes"], im.gt_boxes[im.gt_classes == 1]]),
                   scores=np.r_[p["scores"], [0.99] * int((im.gt_classes == 1).sum())],
                   classes=np.r_[p["classes"], [1] * int((im.gt_classes == 1).sum())].astype(int))
              for p, im in zip(predictions, images)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "a.json").write_text(json.dumps(predictions_to_coco_results(predictions)))
    (tmp_path / "b.json").write_text(json.dumps(predictions_to_coco_results(better)))
    tool = _load_tool()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cmp = tool.main(["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "a.json"),
                         "--compare", str(tmp_path / "b.json"), "--output", str(tmp_path / "cmp"),
                         "--bootstrap", "200", "--protocols", "coco", "vinbigdata"])
    assert list(cmp) == ["AP50", "mAP40"]
    assert cmp["AP50"]["B"]["difference"] > 0 and cmp["AP50"]["A"]["difference"] == 0
    assert "B - A" in printed.getvalue() and "95% CI" in printed.getvalue()
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["comparison"]["AP50"]["B"]["p_value"] == pytest.approx(cmp["AP50"]["B"]["p_value"])
    assert saved["resamples"] == 200
