"""CXRDetectionEvaluator, its protocols and tools/evaluate.py, on hand-computed cases."""
import contextlib
import copy
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr_det.evaluation.coco import coco_metrics, records_to_coco
from cxr_det.evaluation.core import EvalOptions, evaluate_detections
from cxr_det.config import add_cxr_eval_config
from cxr_det.evaluation.cxr_evaluator import CXRDetectionEvaluator
from cxr_det.evaluation.image_level import image_level_metrics, roc_auc
from cxr_det.evaluation.froc import froc_metrics
from cxr_det.evaluation.iobb import iobb_metrics
from cxr_det.evaluation.vinbigdata import vinbigdata_metrics, with_no_finding
from helpers import image, load_tool

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["A", "B", "C"]
PNGS = ("pr_vinbigdata.png", "pr_iobb.png", "froc.png", "roc_image.png", "pr_image.png")


# Five images, classes A, B, C (see test_vinbigdata_voc_ap for the expected numbers).
VIN_IMAGES = [
    image(1, gt=[([0, 0, 10, 10], 0)], preds=[([0, 0, 10, 10], 0.9, 0), ([0, 0, 10, 10], 0.8, 0)]),
    image(2, gt=[([20, 20, 30, 30], 0)], preds=[([20, 20, 30, 30], 0.8, 0), ([0, 0, 10, 10], 0.6, 1)]),
    image(3),
    image(4, gt=[([50, 50, 70, 70], 2)], preds=[([0, 0, 5, 5], 0.3, 0), ([52, 52, 70, 70], 0.7, 2)]),
    image(5, preds=[([0, 0, 10, 10], 0.75, 2)]),
]


def test_vinbigdata_voc_ap():
    res, _ = vinbigdata_metrics(VIN_IMAGES, CLASSES, iou=0.4)
    # A: 2 GT. 0.9 TP; at 0.8 a duplicate (FP, image 1) ties with a TP on image 2 (after it
    #    in input order); 0.3 FP. Points (R, P): (.5, 1), (.5, .5), (1, 2/3), (1, .5)
    #    -> AP = .5 * 1 + .5 * 2/3.
    assert res["AP40-A"] == pytest.approx(100 * 5 / 6)
    # B: predicted but absent from the dataset -> NaN, left out of the mean
    assert math.isnan(res["AP40-B"])
    # C: 1 GT. 0.75 FP (image 5), 0.7 TP (IoU 18*18/400 = .81) -> (1, .5)
    assert res["AP40-C"] == pytest.approx(50.0)
    # No finding: GT on normal images 3 and 5; scores 1 - max: .1, .2, 1, .3, .25
    #    1.0 TP, .3 FP, .25 TP, .2 FP, .1 FP -> (.5, 1), (.5, .5), (1, 2/3) -> 5/6
    assert res["AP40-No finding"] == pytest.approx(100 * 5 / 6)
    assert res["mAP40"] == pytest.approx((100 * 5 / 6 + 50 + 100 * 5 / 6) / 3)
    assert res["mAP40_lesions"] == pytest.approx((100 * 5 / 6 + 50) / 2)
    assert list(res)[:2] == ["mAP40", "mAP40_lesions"]
    # tied scores enter one by one in input order, as the VOC devkit's stable sort does:
    # images reversed, image 2's 0.8 TP comes before image 1's 0.8 duplicate -> (.5, 1), (1, 1)
    res_reversed, _ = vinbigdata_metrics(VIN_IMAGES[::-1], CLASSES, iou=0.4)
    assert res_reversed["AP40-A"] == pytest.approx(100.0)
    # a stricter IoU renames the keys and drops C's TP (IoU .81 is not > .9)
    assert vinbigdata_metrics(VIN_IMAGES, CLASSES, iou=0.9)[0]["AP90-C"] == 0.0
    # the competition needs IoU strictly above 0.4: IoU of exactly 0.4 (40 / 100) is a miss
    exact = [image(1, gt=[([0, 0, 10, 10], 0)], preds=[([0, 0, 10, 4], 0.9, 0)])]
    assert vinbigdata_metrics(exact, ["A"], iou=0.4)[0]["AP40-A"] == 0.0
    assert vinbigdata_metrics(exact, ["A"], iou=0.39)[0]["AP39-A"] == 100.0


def test_no_finding_scoring():
    images = [
        image(1, preds=[([5, 5, 9, 9], 0.3, 0), ([1, 1, 4, 4], 0.6, 1)]),  # normal, with boxes
        image(2, gt=[([0, 0, 10, 10], 0)]),  # abnormal, nothing predicted
        image(3, gt=[([0, 0, 10, 10], 0)], preds=[([0, 0, 10, 10], 0.9, 0)], nf=0.05),  # model's own score
    ]
    out = with_no_finding(images, num_classes=2)
    # the normal image carries one "No finding" GT box [0, 0, 1, 1] of class index 2
    np.testing.assert_array_equal(out[0].gt_boxes, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(out[0].gt_classes, [2])
    assert len(out[1].gt_classes) == 1 and out[1].gt_classes[0] == 0
    # every image gets a "No finding" prediction on [0, 0, 1, 1]: 1 - highest score, or the model's
    for im, expected in zip(out, [0.4, 1.0, 0.05]):
        assert im.pred_classes[-1] == 2
        np.testing.assert_array_equal(im.pred_boxes[-1], [0, 0, 1, 1])
        assert im.pred_scores[-1] == pytest.approx(expected)


def test_iobb_small_box_inside_large_gt():
    big = [0, 0, 100, 100]
    images = [
        image(1, gt=[(big, 0)], preds=[([10, 10, 20, 20], 0.6, 0)]),  # IoU .01, IoBB 1: a match
        image(2, gt=[(big, 0)], preds=[([90, 90, 110, 110], 0.9, 0)]),  # IoBB .25: no match
    ]
    res, _ = iobb_metrics(images, ["A"], threshold=0.5)
    # curve: 0.9 FP (R 0, P 0), 0.6 TP (R .5, P .5); COCO 101 points: 51 of them at .5
    assert res["AP-A"] == pytest.approx(100 * 51 * 0.5 / 101)
    assert res["AR-A"] == pytest.approx(50.0)
    assert res["AP"] == res["AP-A"] and res["AR"] == res["AR-A"]
    # the same boxes under IoU >= 0.5 find nothing
    assert vinbigdata_metrics(images, ["A"], iou=0.5)[0]["AP50-A"] == 0.0
    # max_dets=1 keeps only image 3's best box
    far = [200, 200, 300, 300]
    crowded = [image(3, gt=[(big, 0), (far, 0)], preds=[(big, 0.9, 0), (far, 0.8, 0)])]
    assert iobb_metrics(crowded, ["A"], max_dets=1)[0]["AR"] == pytest.approx(50.0)
    assert iobb_metrics(crowded, ["A"], max_dets=None)[0]["AR"] == pytest.approx(100.0)


FROC_IMAGES = [
    image(
        1,
        gt=[([0, 0, 10, 10], 0), ([50, 50, 60, 60], 0)],
        preds=[([0, 0, 10, 10], 0.9, 0), ([100, 100, 110, 110], 0.8, 0), ([50, 50, 60, 60], 0.5, 0)],
    ),
    image(2, gt=[([0, 0, 20, 20], 1)], preds=[([0, 0, 20, 20], 0.7, 1), ([0, 0, 20, 20], 0.6, 1)]),
    image(3, preds=[([0, 0, 10, 10], 0.4, 0)]),
    image(4, gt=[([30, 30, 40, 40], 0)]),
]


def test_froc_luna16_rule_ignores_second_hits():
    fps = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    one, _ = froc_metrics(FROC_IMAGES, ["A", "B"], fps=fps, rule="one_to_one")
    luna, _ = froc_metrics(FROC_IMAGES, ["A", "B"], fps=fps, rule="luna16")
    # overall, 4 lesions, 4 images. one_to_one: .9 TP .8 FP .7 TP .6 FP (second hit) .5 TP .4 FP
    #   -> sens at 0.125: .25, at 0.25: .5, from 0.5 on: .75 -> CPM 4.5 / 7
    assert one["CPM"] == pytest.approx(100 * 4.5 / 7)
    # luna16: the .6 second hit is ignored: .9 TP .8 FP .7 TP .5 TP .4 FP
    #   -> (0, .25), (.25, .25), (.25, .5), (.25, .75), (.5, .75): .25 at 0.125, then .75 -> CPM 4.75 / 7
    assert luna["CPM"] == pytest.approx(100 * 4.75 / 7)
    assert luna["sens@0.25"] == pytest.approx(75.0) and one["sens@0.25"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        froc_metrics(FROC_IMAGES, ["A", "B"], rule="camelyon")


def test_froc_sensitivities():
    fps = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    res, curves = froc_metrics(FROC_IMAGES, ["A", "B"], fps=fps, criterion="iou", iou=0.3)
    # A (3 lesions, 4 images): .9 TP, .8 FP, .5 TP, .4 FP
    #   -> (FP/image, sensitivity) (0, 1/3), (.25, 1/3), (.25, 2/3), (.5, 2/3)
    expected_a = [1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]
    # overall (4 lesions): .9 TP .8 FP .7 TP .6 FP(duplicate) .5 TP .4 FP
    #   -> (0, .25), (.25, .25), (.25, .5), (.5, .5), (.5, .75), (.75, .75)
    expected_all = [0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75]
    for rate, a, overall in zip(fps, expected_a, expected_all):
        assert res[f"sens@{rate:g}-A"] == pytest.approx(100 * a)
        assert res[f"sens@{rate:g}"] == pytest.approx(100 * overall)
        assert res[f"sens@{rate:g}-B"] == pytest.approx(100.0)
    assert res["CPM-A"] == pytest.approx(100 * 13 / 21)
    assert res["CPM"] == pytest.approx(100 * 4.5 / 7)
    assert res["CPM-B"] == pytest.approx(100.0)
    assert list(res)[:2] == ["CPM", "sens@0.125"]
    np.testing.assert_allclose(curves["overall"]["fppi"], [0, 0.25, 0.25, 0.5, 0.5, 0.75])


def test_froc_center_criterion():
    gt = [([0, 0, 10, 10], 0)]
    images = [
        image(1, gt=gt, preds=[([5, 5, 14, 14], 0.9, 0)]),  # centre (9.5, 9.5) inside; IoU 25/156
        image(2, gt=gt, preds=[([0, 0, 10, 21], 0.8, 0)]),  # centre (5, 10.5) outside; IoU 100/210
    ]
    fps = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    res, _ = froc_metrics(images, ["A"], fps=fps, criterion="center")
    # hit on image 1 first (FP/image 0), then a FP: sensitivity 1/2 at every rate
    assert res["CPM"] == pytest.approx(50.0)
    res, _ = froc_metrics(images, ["A"], fps=fps, criterion="iou", iou=0.3)
    # .9 is a FP (.5 FP/image, sens 0), .8 a hit (.5, .5): nothing at .125 and .25
    assert [res[f"sens@{r:g}"] for r in fps] == pytest.approx([0, 0, 50, 50, 50, 50, 50])
    assert res["CPM"] == pytest.approx(100 * 2.5 / 7)
    with pytest.raises(ValueError):
        froc_metrics(images, ["A"], criterion="bogus")


def test_image_level_auc_with_ties():
    images = [
        image(1, gt=[([0, 0, 5, 5], 0)], preds=[([0, 0, 5, 5], 0.8, 0)]),
        image(2, gt=[([0, 0, 5, 5], 0)], preds=[([0, 0, 5, 5], 0.5, 0)]),
        image(3, gt=[([0, 0, 5, 5], 1)], preds=[([0, 0, 5, 5], 0.5, 0), ([0, 0, 5, 5], 0.9, 1)]),
        image(4, preds=[([0, 0, 5, 5], 0.2, 0)]),
        image(5),
    ]
    res, _ = image_level_metrics(images, ["A", "B"], thresholds=[0.5])
    # A: positives score .8 and .5; negatives .5 (tie), .2, 0 -> (3 + 2.5) / 6
    assert res["AUC-A"] == pytest.approx(100 * 5.5 / 6)
    # step AP: (R .5, P 1), (R 1, P 2/3) -> .5 + .5 * 2/3
    assert res["AP-A"] == pytest.approx(100 * 5 / 6)
    # at 0.5: images 1, 2, 3 called -> precision 2/3, recall 1
    assert res["precision-A"] == pytest.approx(100 * 2 / 3)
    assert res["recall-A"] == pytest.approx(100.0)
    assert res["F1-A"] == pytest.approx(80.0)
    assert res["F2-A"] == pytest.approx(100 * 10 / 11)
    # F2 at thresholds .8, .5, .2, 0: 5/9, 10/11, 5/6, 10/13 -> best at 0.5
    assert res["bestF2-A"] == pytest.approx(100 * 10 / 11)
    assert res["bestF2_threshold-A"] == 0.5
    assert res["AUC-B"] == pytest.approx(100.0)
    # any: image score = max over classes (.8, .5, .9, .2, 0), positive = any GT box
    assert res["AUC-any"] == pytest.approx(100.0)
    assert res["AUC"] == pytest.approx((100 * 5.5 / 6 + 100) / 2)
    assert res["threshold-A"] == 0.5
    # per-class thresholds; "any" takes the smallest
    res, _ = image_level_metrics(images, ["A", "B"], thresholds=[0.85, 0.95])
    assert res["recall-A"] == 0.0 and res["precision-A"] == 0.0 and res["F2-A"] == 0.0
    assert res["recall-B"] == 0.0 and res["threshold-any"] == 0.85
    assert res["recall-any"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError):
        image_level_metrics(images, ["A", "B"], thresholds=[0.1, 0.2, 0.3, 0.4])


def test_roc_auc_equals_pair_counting():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60) / 4.0  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert math.isnan(roc_auc(scores, np.zeros(60, dtype=bool)))


def _rle_of_box(box, size):
    mask = np.zeros((size, size), dtype=np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _coco_fixture(seed=0, size=128):
    """Random GT (with rectangle polygons) and jittered predictions with masks, 3 classes;
    class 2 never occurs in the ground truth."""
    rng = np.random.default_rng(seed)
    records, predictions = [], []
    for i in range(24):
        annos, boxes, scores, classes = [], [], [], []
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(4, 60, 2)
            box = [x, y, x + w, y + h]
            cls = int(rng.integers(0, 2))
            poly = [x, y, x + w, y, x + w, y + h, x, y + h]
            annos.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cls, "segmentation": [poly]})
            boxes.append(np.array(box) + rng.normal(0, 3, 4))
            scores.append(rng.uniform(0.2, 1.0))
            classes.append(cls)
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 60, 2)
            boxes.append([x, y, x + rng.uniform(4, 60), y + rng.uniform(4, 60)])
            scores.append(float(rng.choice([0.5, rng.uniform(0, 0.9)])))  # some tied scores
            classes.append(int(rng.integers(0, 3)))
        boxes = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0, size)
        records.append({"image_id": i, "height": size, "width": size, "annotations": annos})
        predictions.append(
            {
                "image_id": i,
                "boxes": boxes,
                "scores": np.asarray(scores),
                "classes": np.asarray(classes),
                "segmentations": [_rle_of_box(b, size) for b in boxes],
            }
        )
    return records, predictions


def pycocotools_eval(coco_gt, results, iou_type):
    """pycocotools' COCOeval run on copies of the inputs (evaluated, accumulated, summarized)."""
    results = copy.deepcopy(results)
    if iou_type == "segm":
        for r in results:
            r.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(coco_gt)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _pycocotools_reference(coco_gt, results, iou_type):
    ev = pycocotools_eval(coco_gt, results, iou_type)
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    ref = dict(zip(names, [s * 100 if s >= 0 else math.nan for s in ev.stats[:6]]))
    for k, name in enumerate(CLASSES):
        p = ev.eval["precision"][:, :, k, 0, -1]
        ref[f"AP-{name}"] = float(p[p > -1].mean() * 100) if (p > -1).any() else math.nan
    return ref


def _assert_same(actual, expected):
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(actual[key]), key
        else:
            assert actual[key] == pytest.approx(value, abs=1e-9), key


def test_coco_equals_pycocotools_and_faster_coco_eval():
    import faster_coco_eval  # noqa: F401  (an install requirement: the default COCO backend)
    from cxr_det.evaluation.coco import predictions_to_coco_results

    records, predictions = _coco_fixture()
    coco_gt = records_to_coco(records, CLASSES)
    results = predictions_to_coco_results(predictions)
    official = coco_metrics(coco_gt, results, CLASSES, use_faster_coco_eval=False)
    faster = coco_metrics(coco_gt, results, CLASSES, use_faster_coco_eval=True)
    assert list(official) == ["bbox", "segm"]
    for task in ("bbox", "segm"):
        reference = _pycocotools_reference(coco_gt, results, task)
        assert 0 < reference["AP"] < 100
        assert math.isnan(reference["AP-C"])  # no GT of class C
        _assert_same(official[task], reference)
        _assert_same(faster[task], reference)
        _assert_same(faster[task], official[task])  # AP50-<class> too
        assert set(faster[task]) == set(official[task])


def test_coco_without_faster_coco_eval_or_results(monkeypatch, caplog):
    from cxr_det.evaluation import coco as coco_protocol

    records, predictions = _coco_fixture(seed=1)
    coco_gt = records_to_coco(records, CLASSES)
    results = coco_protocol.predictions_to_coco_results(predictions)
    monkeypatch.setattr(coco_protocol, "faster_coco_eval_available", lambda: False)
    with caplog.at_level("INFO", logger="cxr_det.evaluation.coco"):
        fallback = coco_metrics(coco_gt, results, CLASSES, tasks=["bbox"], use_faster_coco_eval=True)
    assert "evaluated with pycocotools" in caplog.text
    _assert_same(fallback["bbox"], _pycocotools_reference(coco_gt, results, "bbox"))
    # no predictions at all: NaN, as detectron2's COCOEvaluator reports it
    empty = coco_metrics(coco_gt, [], CLASSES, use_faster_coco_eval=False)
    assert list(empty) == ["bbox"] and all(math.isnan(v) for v in empty["bbox"].values())


def _outputs_for(images, size=100, nf_scores=None):
    """detectron2 inputs/outputs from ImageBoxes (boxes as predicted, masks filling them)."""
    inputs, outputs = [], []
    for im in images:
        inst = Instances((size, size))
        inst.pred_boxes = Boxes(torch.as_tensor(im.pred_boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.as_tensor(im.pred_scores, dtype=torch.float32)
        inst.pred_classes = torch.as_tensor(im.pred_classes, dtype=torch.int64)
        masks = torch.zeros((len(im.pred_scores), size, size), dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(im.pred_boxes.astype(int)):
            masks[k, y0:y1, x0:x1] = True
        inst.pred_masks = masks
        out = {"instances": inst}
        if nf_scores and im.image_id in nf_scores:
            out["image_no_finding_score"] = torch.tensor(nf_scores[im.image_id])
        inputs.append({"image_id": im.image_id, "height": size, "width": size})
        outputs.append(out)
    return inputs, outputs


def _records_for(images):
    records = []
    for im in images:
        annos = [
            {
                "bbox": [float(v) for v in box],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": int(c),
                "segmentation": [[box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]]],
                "iscrowd": 0,
            }
            for box, c in zip(im.gt_boxes.tolist(), im.gt_classes)
        ]
        records.append({"file_name": f"{im.image_id}.png", "image_id": im.image_id, "height": 100, "width": 100,
                        "annotations": annos})
    return records


def _load_tool():
    return load_tool("evaluate")


def _assert_results_equal(a, b):
    assert list(a) == list(b)
    for task in a:
        assert list(a[task]) == list(b[task]), task
        for key in a[task]:
            x, y = a[task][key], b[task][key]
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-6), (task, key)


def test_evaluator_end_to_end_and_tool_round_trip(tmp_path):
    name = "cxr_eval_test_toy"
    records = _records_for(VIN_IMAGES)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).set(thing_classes=CLASSES)

    cfg = get_cfg()
    add_cxr_eval_config(cfg)
    cfg.TEST.CXR_EVAL.FROC_CRITERION = "center"
    out_dir = tmp_path / "eval"
    evaluator = CXRDetectionEvaluator(name, cfg=cfg, output_dir=str(out_dir))
    assert evaluator.options.froc_criterion == "center" and evaluator.options.protocols[0] == "coco"
    evaluator.reset()
    # image 3 is never processed: it counts as predicting nothing. Image 4 says it is surely abnormal.
    processed = [im for im in VIN_IMAGES if im.image_id != 3]
    for batch in (processed[:2], processed[2:]):
        evaluator.process(*_outputs_for(batch, nf_scores={4: 0.0}))
    results = evaluator.evaluate()

    assert list(results) == ["bbox", "segm", "vinbigdata", "iobb", "froc", "image"]
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-A", "AP50-A"} <= set(results[task])
    vin = results["vinbigdata"]
    # as in test_vinbigdata_voc_ap, but "No finding" of image 4 is now 0.0 instead of .3:
    # 1.0 TP, .25 TP, .2 FP, .1 FP, 0 FP -> AP 100
    assert vin["AP40-No finding"] == pytest.approx(100.0)
    assert vin["mAP40"] == pytest.approx((100 * 5 / 6 + 50 + 100) / 3)
    assert {"AP", "AR", "AP-A", "AR-C"} <= set(results["iobb"])
    assert {"CPM", "sens@0.125", "sens@8", "CPM-A"} <= set(results["froc"])
    assert {"AUC", "AP", "AUC-A", "AUC-any", "F2-any", "bestF2_threshold-C"} <= set(results["image"])
    for task in results.values():  # detectron2's hooks need plain floats
        assert all(type(v) is float for v in task.values())

    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["results"]["vinbigdata"]["mAP40"] == pytest.approx(vin["mAP40"])
    assert metrics["results"]["vinbigdata"]["AP40-B"] is None  # NaN written as null
    assert metrics["num_images"] == 5 and metrics["gt_per_class"] == {"A": 2, "B": 0, "C": 1}
    with open(out_dir / "per_class.csv") as f:
        rows = {row["class_name"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["A", "B", "C", "No finding", "any", "all"]
    assert float(rows["A"]["vinbigdata_AP40"]) == pytest.approx(100 * 5 / 6, abs=1e-3)
    assert rows["B"]["vinbigdata_AP40"] == "nan"
    assert {"bbox_AP", "bbox_AP50", "iobb_AP", "iobb_AR", "froc_CPM", "image_AUC", "image_AP", "image_F1",
            "image_F2", "image_bestF2_threshold"} <= set(rows["A"])
    for png in PNGS:
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the files it saved, re-evaluated by tools/evaluate.py, give the same numbers
    tool = _load_tool()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        tool_results = tool.main([
            "--gt", str(out_dir / "ground_truth_coco.json"),
            "--predictions", str(out_dir / "coco_instances_results.json"),
            "--no-finding-scores", str(out_dir / "cxr_eval_no_finding_scores.json"),
            "--output", str(tmp_path / "tool"), "--froc-criterion", "center", "--no-plots", "--bootstrap", "0",
        ])
    _assert_results_equal(tool_results, results)
    assert "| No finding" in printed.getvalue() and "CPM" in printed.getvalue()
    assert (tmp_path / "tool" / "per_class.csv").exists() and not (tmp_path / "tool" / "froc.png").exists()

    # only the protocols asked for
    cfg.TEST.CXR_EVAL.PROTOCOLS = ["vinbigdata"]
    only = CXRDetectionEvaluator(name, cfg=cfg, distributed=False, vinbigdata_iou=0.9)
    only.process(*_outputs_for(processed))
    assert list(only.evaluate()) == ["vinbigdata"] and "mAP90" in only.evaluate()["vinbigdata"]
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_tool_on_coco_files(tmp_path):
    # categories with arbitrary ids, listed out of order: "A" (3) becomes index 0, "B" (7) index 1
    gt = {
        "images": [{"id": 11, "height": 64, "width": 64}, {"id": 12, "height": 64, "width": 64},
                   {"id": 13, "height": 64, "width": 64}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 12, "category_id": 7, "bbox": [0, 0, 30, 10], "area": 300, "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "B"}, {"id": 3, "name": "A"}],
    }
    results = [
        {"image_id": 11, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},  # XYWH: exact hit
        {"image_id": 11, "category_id": 7, "bbox": [10, 10, 20, 20], "score": 0.8},  # wrong class
        {"image_id": 11, "category_id": 99, "bbox": [0, 0, 5, 5], "score": 0.99},  # unknown: ignored
    ]  # image 12 has no predictions, image 13 is normal
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    tool = _load_tool()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        res = tool.main(["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "res.json"),
                         "--output", str(tmp_path / "out"), "--protocols", "coco", "vinbigdata", "froc",
                         "--iobb-threshold", "0.3"])
    assert list(res) == ["bbox", "vinbigdata", "froc", "bootstrap"]  # 1000 resamples by default
    assert res["bootstrap"]["AP50"] == pytest.approx(res["bbox"]["AP50"]) and res["bootstrap"]["resamples"] == 1000
    assert res["bootstrap"]["AP50_low"] <= res["bootstrap"]["AP50_high"]
    res.pop("bootstrap")
    vin = res["vinbigdata"]
    assert vin["AP40-A"] == 100.0 and vin["AP40-B"] == 0.0  # B's GT on image 12 was never predicted
    # No finding: GT on image 13 only; scores 1 - .9 = .1 (11), 1 (12), 1 (13): tie at 1 -> P 1/2, R 1
    assert vin["AP40-No finding"] == pytest.approx(50.0)
    assert res["bbox"]["AP50-A"] == pytest.approx(100.0) and res["bbox"]["AP-B"] == 0.0
    assert res["froc"]["sens@1"] == pytest.approx(50.0)  # 1 of 2 lesions, 1 FP on 3 images
    assert "VinBigData" in printed.getvalue()
    for png in ("pr_vinbigdata.png", "froc.png"):
        assert (tmp_path / "out" / png).exists()
    # the same numbers as the function both paths share, on the equivalent dataset dicts
    records = [
        {"image_id": 11, "height": 64, "width": 64,
         "annotations": [{"bbox": [10, 10, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "area": 400}]},
        {"image_id": 12, "height": 64, "width": 64,
         "annotations": [{"bbox": [0, 0, 30, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "area": 300}]},
        {"image_id": 13, "height": 64, "width": 64, "annotations": []},
    ]
    preds = [{"image_id": 11, "boxes": np.array([[10, 10, 30, 30], [10, 10, 30, 30]]), "scores": np.array([0.9, 0.8]),
              "classes": np.array([0, 1])}]
    direct = evaluate_detections(records, preds, ["A", "B"], EvalOptions(protocols=("coco", "vinbigdata", "froc")))
    _assert_results_equal(res, direct)


def test_config_keys_and_overrides():
    cfg = get_cfg()
    add_cxr_eval_config(cfg)
    node = cfg.TEST.CXR_EVAL
    assert node.PROTOCOLS == ["coco", "vinbigdata", "iobb", "froc", "image"]
    assert (node.VINBIGDATA_IOU, node.IOBB_THRESHOLD, node.FROC_IOU) == (0.4, 0.5, 0.3)
    assert node.FROC_FPS == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert (node.FROC_CRITERION, node.IMAGE_THRESHOLDS) == ("iou", [0.5])
    assert node.PLOTS is True and node.USE_FASTER_COCO_EVAL is True
    node.IOBB_THRESHOLD = 0.25
    node.IOBB_MAX_DETS = 0
    options = EvalOptions.from_cfg(cfg, froc_iou=0.1)
    assert (options.iobb_threshold, options.iobb_max_dets, options.froc_iou) == (0.25, None, 0.1)
    assert EvalOptions.from_cfg(None) == EvalOptions()
    with pytest.raises(ValueError):
        EvalOptions(protocols=("coco", "bogus"))
    with pytest.raises(ValueError):
        EvalOptions(froc_criterion="centre")


def _per_box_coco_results(predictions):
    """The conversion box by box, as predictions_to_coco_results did before it worked on whole
    arrays (tools/benchmark.py): the reference its output must equal."""
    results = []
    for pred in predictions:
        boxes = np.asarray(pred.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        segms = pred.get("segmentations")
        for k, (box, score, cls) in enumerate(zip(boxes, pred.get("scores", []), pred.get("classes", []))):
            entry = {"image_id": pred["image_id"], "category_id": int(cls),
                     "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                     "score": float(score)}
            if segms is not None and segms[k] is not None:
                entry["segmentation"] = segms[k]
            results.append(entry)
    return results


def test_coco_results_conversion_equals_the_per_box_one():
    from cxr_det.evaluation.coco import predictions_to_coco_results

    _, predictions = _coco_fixture(seed=2)
    rng = np.random.default_rng(3)
    predictions += [
        # float32 boxes, scores as a list, classes as floats, one box more than scores
        {"image_id": "a", "boxes": rng.uniform(0, 90, (3, 4)).astype(np.float32), "scores": [0.25, 0.5],
         "classes": np.array([1.0, 0.0, 2.0]), "segmentations": [None, {"size": [9, 9], "counts": "a"}, None]},
        {"image_id": "b"},  # predicted nothing
        {"image_id": "c", "boxes": [[1.5, 2.5, 10.25, 20.125]], "scores": np.float32([0.3]), "classes": [2]},
    ]
    ours = predictions_to_coco_results(predictions)
    reference = _per_box_coco_results(predictions)
    assert ours == reference and len(ours) > 30
    for a, b in zip(ours, reference):
        assert [type(v) for v in a["bbox"]] == [float] * 4 and type(a["score"]) is float
        assert type(a["category_id"]) is int and a.keys() == b.keys()


def test_coco_metrics_leave_results_and_garbage_collector_as_found():
    import gc

    from cxr_det.evaluation.coco import predictions_to_coco_results

    records, predictions = _coco_fixture(seed=4)
    coco_gt = records_to_coco(records, CLASSES)
    results = predictions_to_coco_results(predictions)
    before = copy.deepcopy(results)
    assert gc.isenabled()
    out = coco_metrics(coco_gt, results, CLASSES)  # bbox, then segm
    assert list(out) == ["bbox", "segm"] and results == before and gc.isenabled()
    gc.disable()
    try:
        again = coco_metrics(coco_gt, results, CLASSES)
        assert not gc.isenabled()
    finally:
        gc.enable()
    for task in out:
        _assert_same(again[task], out[task])
