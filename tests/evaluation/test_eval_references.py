"""Each protocol against the reference scorer it reproduces (issue 10, section 4).

References: the ``map-boxes`` package (the VOC devkit's matching and all-point AP, used for
the VinBigData Kaggle metric), pycocotools' ``COCOeval`` with IoBB (MDF-Net), MONAI's FROC
functions (the CAMELYON16 / LUNA16 rule) and scikit-learn's ``roc_auc_score`` /
``average_precision_score``. Where a reference cannot decide a case (map-boxes sorts with
an unstable quicksort and matches with IoU >=), the expected value is computed by hand.
"""
import contextlib
import io
import math

import numpy as np
import pytest

import cxr_det  # noqa: F401
from cxr_det.evaluation.image_level import image_level_metrics
from cxr_det.evaluation.matching import match_image
from cxr_det.evaluation.froc import froc_curve
from cxr_det.evaluation.iobb import iobb_metrics
from cxr_det.evaluation.vinbigdata import vinbigdata_metrics, with_no_finding
from cxr_det.formats import NO_FINDING
from cxr_det.utils.boxes import box_iou
from cxr_det.evaluation.matching import match_detections
from helpers import image


def vindr_like(num_images, num_classes, seed, tie_step=None):
    """Random images in the VinDr way: each lesion boxed by 1-3 readers (jittered, same
    class, overlapping), detections jittered around some lesions, false positives, normal
    images. ``tie_step`` rounds scores to that step (many ties); None keeps them untied."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        gt, preds = [], []
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(15, 80, 2)
            c = int(rng.integers(0, num_classes))
            for _ in range(rng.integers(1, 4)):
                j = rng.uniform(-4, 4, 4)
                gt.append(([x + j[0], y + j[1], x + w + j[2], y + h + j[3]], c))
            for _ in range(rng.integers(0, 3)):
                j = rng.uniform(-6, 6, 4)
                preds.append(([x + j[0], y + j[1], x + w + j[2], y + h + j[3]], rng.uniform(0.3, 1.0), c))
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 200, 2)
            preds.append(([x, y, x + rng.uniform(10, 80), y + rng.uniform(10, 80)], rng.uniform(0, 0.9),
                          int(rng.integers(0, num_classes))))
        nf = None  # "No finding" score 1 - highest box score: 1.0 (tied) on images without boxes
        if tie_step:
            preds = [(b, round(s / tie_step) * tie_step, c) for b, s, c in preds]
        else:
            nf = float(rng.uniform(0, 1))  # untied, as the model's own normal-image score
        images.append(image(f"{i:032x}", gt, preds, nf))
    return images


# ---------------------------------------------------------------- VinBigData vs map-boxes


def map_boxes_reference(images, class_names, iou=0.4):
    """mAP and per-class AP of ``map-boxes`` on the same data, "No finding" added as the
    competition does (a [0, 0, 1, 1] box), detections of each image listed by decreasing
    score (the devkit visits them so; map-boxes matches them in the order given)."""
    import map_boxes  # a test dependency
    names = list(class_names) + [NO_FINDING]
    ann, det = [], []
    for im in with_no_finding(images, len(class_names)):
        for box, c in zip(im.gt_boxes, im.gt_classes):
            ann.append([im.image_id, names[c], box[0], box[2], box[1], box[3]])
        for k in np.argsort(-im.pred_scores, kind="mergesort"):
            box = im.pred_boxes[k]
            det.append([im.image_id, names[im.pred_classes[k]], im.pred_scores[k], box[0], box[2], box[1], box[3]])
    with contextlib.redirect_stdout(io.StringIO()):
        mean_ap, per_class = map_boxes.mean_average_precision_for_boxes(
            np.asarray(ann, dtype=object), np.asarray(det, dtype=object), iou_threshold=iou, verbose=False
        )
    return mean_ap, {name: ap for name, (ap, _) in per_class.items()}


def three_readers_case():
    """One lesion boxed by three readers (g0, g1, g2) on image 1; a second lesion on image 2.

    Detection .8 on image 1 has IoU .905 with g1 (taken by .9), .747 with g0 and g2:
    the devkit's rule makes it a false positive, greedy matching gives it g0."""
    return [
        image(
            "img1",
            gt=[([0, 0, 10, 10], 0), ([1, 1, 11, 11], 0), ([2, 0, 12, 10], 0)],
            preds=[([1, 1, 11, 11], 0.9, 0), ([1, 0.5, 11, 10.5], 0.8, 0)],
        ),
        image("img2", gt=[([20, 20, 40, 40], 0)], preds=[([50, 50, 60, 60], 0.95, 0), ([20, 20, 40, 40], 0.7, 0)]),
    ]


def test_vinbigdata_three_readers_on_one_lesion_is_the_devkit_value():
    images = three_readers_case()
    voc, _ = vinbigdata_metrics(images, ["A"], iou=0.4)
    # by hand, 4 GT boxes, by score: .95 FP, .9 TP, .8 FP (its best GT g1 is taken), .7 TP
    #   points (R, P): (0, 0), (.25, .5), (.25, 1/3), (.5, .5) -> AP = .25 * .5 + .25 * .5 = .25
    assert voc["AP40-A"] == pytest.approx(25.0)
    # greedy (the option; the code before issue 10): .8 takes g0 -> (.25, .5), (.5, 2/3), (.75, .75)
    #   -> AP = .75 * .75 = .5625: 31 points above the devkit
    greedy, _ = vinbigdata_metrics(images, ["A"], iou=0.4, matching="greedy")
    assert greedy["AP40-A"] == pytest.approx(56.25)
    # the same per-class values as map-boxes (the "No finding" row: both images abnormal, no GT)
    mean_ap, per_class = map_boxes_reference(images, ["A"])
    assert voc["AP40-A"] == pytest.approx(100 * per_class["A"])
    assert voc["mAP40"] == pytest.approx(100 * mean_ap)


def test_vinbigdata_equals_map_boxes_on_random_vindr_like_sets():
    names = ["A", "B", "C"]
    for seed in range(5):
        images = vindr_like(60, len(names), seed)  # untied scores: map-boxes' quicksort is then exact
        ours, _ = vinbigdata_metrics(images, names, iou=0.4)
        mean_ap, per_class = map_boxes_reference(images, names)
        for name in names + [NO_FINDING]:
            assert ours[f"AP40-{name}"] == pytest.approx(100 * per_class[name], abs=1e-9), (seed, name)
        assert ours["mAP40"] == pytest.approx(100 * mean_ap, abs=1e-9), seed


def test_vinbigdata_ties_in_input_order():
    # by hand: 2 GT; .9 TP, then a tie at .8: image "a"'s duplicate (FP) before image "b"'s hit (TP),
    # as a stable sort of the detections in input order puts them (VOC devkit, MATLAB sort)
    images = [
        image("a", gt=[([0, 0, 10, 10], 0)], preds=[([0, 0, 10, 10], 0.9, 0), ([0, 0, 10, 10], 0.8, 0)]),
        image("b", gt=[([0, 0, 10, 10], 0)], preds=[([0, 0, 10, 10], 0.8, 0)]),
    ]
    # (.5, 1), (.5, .5), (1, 2/3) -> .5 + .5 * 2/3; ties entering together gave (.5, 1), (1, 2/3): the same
    assert vinbigdata_metrics(images, ["A"])[0]["AP40-A"] == pytest.approx(100 * 5 / 6)
    # hit first: (.5, 1), (1, 1), (1, 2/3) -> 1.0 (ties entering together gave 5/6 here too)
    assert vinbigdata_metrics(images[::-1], ["A"])[0]["AP40-A"] == pytest.approx(100.0)


def test_voc_rule_first_best_gt_and_strict_threshold():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])  # two readers, identical boxes
    pred = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    # devkit: both detections' best box is the first (ties -> first); the second is a FP
    _, tp = match_image(pred, np.array([0.9, 0.8]), gt, box_iou, 0.4, strict=True, rule="voc")
    np.testing.assert_array_equal(tp, [True, False])
    _, tp = match_image(pred, np.array([0.9, 0.8]), gt, box_iou, 0.4, strict=True, rule="greedy")
    np.testing.assert_array_equal(tp, [True, True])
    with pytest.raises(ValueError):
        match_image(pred, np.array([0.9, 0.8]), gt, box_iou, 0.4, rule="bogus")
    with pytest.raises(ValueError):
        vinbigdata_metrics([], ["A"], matching="coco")


# ---------------------------------------------------------------- IoBB vs pycocotools


def pycocotools_iobb(images, class_names, threshold=0.5, max_dets=10):
    """MDF-Net's protocol as they computed it: pycocotools' COCOeval whose overlap is IoBB
    (intersection / detection area), one threshold, area "all". Returns (AP, AR) per class."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class IoBBeval(COCOeval):
        def computeIoU(self, imgId, catId):
            gt = self._gts[imgId, catId]
            dt = self._dts[imgId, catId]
            if not gt or not dt:
                return []
            dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")][: self.params.maxDets[-1]]
            g = np.array([a["bbox"] for a in gt], dtype=np.float64)
            d = np.array([a["bbox"] for a in dt], dtype=np.float64)
            iw = np.clip(np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2])
                         - np.maximum(d[:, None, 0], g[None, :, 0]), 0, None)
            ih = np.clip(np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3])
                         - np.maximum(d[:, None, 1], g[None, :, 1]), 0, None)
            return iw * ih / (d[:, 2] * d[:, 3])[:, None]

    gt = {"images": [], "annotations": [], "categories": [{"id": k, "name": n} for k, n in enumerate(class_names)]}
    results = []
    for im in images:
        gt["images"].append({"id": im.image_id, "height": 300, "width": 300})
        for box, c in zip(im.gt_boxes, im.gt_classes):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": im.image_id, "category_id": int(c),
                                      "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, s, c in zip(im.pred_boxes, im.pred_scores, im.pred_classes):
            results.append({"image_id": im.image_id, "category_id": int(c), "score": float(s),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = gt
        api.createIndex()
        ev = IoBBeval(api, api.loadRes(results), "bbox")
        ev.params.iouThrs = np.array([threshold])
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    out = {}
    for k, name in enumerate(class_names):
        p = ev.eval["precision"][0, :, k, 0, 0]
        r = ev.eval["recall"][0, k, 0, 0]
        out[name] = (float(p.mean()) if (p > -1).all() else math.nan, float(r) if r > -1 else math.nan)
    return out


def test_iobb_equals_pycocotools_with_tied_scores_and_overlapping_readers():
    names = ["A", "B"]
    for seed in range(4):
        # ties everywhere (scores on a 0.1 grid) and image ids listed out of sorted order
        images = vindr_like(40, len(names), seed, tie_step=0.1)[::-1]
        ours, _ = iobb_metrics(images, names, threshold=0.5, max_dets=10)
        reference = pycocotools_iobb(images, names)
        for name in names:
            ap, ar = reference[name]
            assert ours[f"AP-{name}"] == pytest.approx(100 * ap, abs=1e-9), (seed, name)
            assert ours[f"AR-{name}"] == pytest.approx(100 * ar, abs=1e-9), (seed, name)


def test_iobb_tie_and_equal_overlap_cases_by_hand():
    # pycocotools: ties in input order within an image, images by sorted id; the 0.5 tie on
    # image "b" (FP first, then TP) is visited after image "a"'s TP at 0.5.
    big = [0, 0, 100, 100]
    images = [
        image("b", gt=[(big, 0)], preds=[([200, 200, 210, 210], 0.5, 0), ([10, 10, 20, 20], 0.5, 0)]),
        image("a", gt=[(big, 0)], preds=[([10, 10, 20, 20], 0.5, 0)]),
    ]
    # sorted ids: a TP, b FP, b TP -> (R, P) (.5, 1), (.5, .5), (1, 2/3); COCO 101: 51 x 1 + 50 x 2/3
    res, _ = iobb_metrics(images, ["A"], threshold=0.5)
    assert res["AP-A"] == pytest.approx(100 * (51 + 50 * 2 / 3) / 101)
    # (ties entering together, the code before issue 10, merged the three 0.5 detections into one
    # point (1, 2/3): 2/3 at every recall point -> 66.7 instead of pycocotools' 83.5)
    # equal overlap: a small box inside two overlapping readers' boxes has IoBB 1 with both;
    # pycocotools gives it the *last* one, leaving the first for the box inside it alone
    readers = [image("c", gt=[([0, 0, 50, 50], 0), ([20, 20, 80, 80], 0)],
                     preds=[([25, 25, 30, 30], 0.9, 0), ([5, 5, 10, 10], 0.8, 0)])]
    res, _ = iobb_metrics(readers, ["A"], threshold=0.5)
    assert res["AR-A"] == pytest.approx(100.0)  # both readers' boxes found (first-on-ties: 50)
    assert pycocotools_iobb(readers, ["A"])["A"][1] == pytest.approx(1.0)


# ---------------------------------------------------------------- FROC vs MONAI


def test_froc_luna16_equals_monai_curve():
    from monai.metrics import froc as monai_froc  # a test dependency (setup.py extras "test")
    rng = np.random.default_rng(7)
    images, fp_probs, tp_probs, num_targets = [], [], [], 0
    for i in range(12):
        # lesions on a grid (disjoint boxes), detections at integer centres: inside a lesion or not
        lesions = [[40 * j + 2, 40 * j + 2, 40 * j + 22, 40 * j + 22] for j in range(rng.integers(0, 4))]
        mask = np.zeros((200, 200), dtype=np.int64)
        for j, (x0, y0, x1, y1) in enumerate(lesions):
            mask[y0:y1, x0:x1] = j + 1  # MONAI's evaluation mask: label j + 1, indexed [y, x]
        centres = rng.integers(0, 200, (rng.integers(0, 6), 2))
        for j, (x0, y0, _, _) in enumerate(lesions):  # some detections on lesions, some twice
            centres = np.vstack([centres, np.repeat([[x0 + 9, y0 + 11]], rng.integers(0, 3), axis=0)])
        probs = rng.uniform(0.05, 1.0, len(centres)).round(2)  # some ties
        boxes = [[x - 2, y - 2, x + 2, y + 2] for x, y in centres]
        images.append(image(i, gt=[(b, 0) for b in lesions], preds=[(b, s, 0) for b, s in zip(boxes, probs)]))
        if len(lesions) == 0:
            fp_probs.append(probs)
            continue
        fp, tp, n = monai_froc.compute_fp_tp_probs_nd(probs, centres[:, ::-1].astype(int), mask)
        fp_probs.append(fp)
        tp_probs.append(tp)
        num_targets += n
    fps, sens = monai_froc.compute_froc_curve_data(
        np.concatenate(fp_probs).astype(np.float64), np.concatenate(tp_probs).astype(np.float64), num_targets, len(images)
    )
    m = match_detections(images, 1, "center", 0.5, rule="luna16")[0]
    fppi, sensitivity, thresholds = froc_curve(m)
    # MONAI's points are at its thresholds all_probs[1:] (ascending), then (0, 0); ours highest first
    all_probs = sorted(set(np.concatenate(fp_probs).tolist() + np.concatenate(tp_probs).tolist()))
    for t, f, s in zip(all_probs[1:], fps[:-1], sens[:-1]):
        k = int(np.flatnonzero(np.isclose(thresholds, t))[0])
        assert fppi[k] == pytest.approx(f) and sensitivity[k] == pytest.approx(s), t


# ---------------------------------------------------------------- image level vs scikit-learn


def test_image_auc_and_ap_equal_scikit_learn_with_ties():
    from sklearn import metrics  # a test dependency
    rng = np.random.default_rng(11)
    for trial in range(5):
        n = 80
        labels = rng.random((n, 2)) < 0.35
        scores = rng.integers(1, 6, (n, 2)) / 5.0  # five levels: many ties
        images = []
        for i in range(n):
            gt = [([0, 0, 5, 5], c) for c in range(2) if labels[i, c]]
            preds = [([0, 0, 5, 5], scores[i, c], c) for c in range(2)]
            images.append(image(i, gt=gt, preds=preds))
        res, _ = image_level_metrics(images, ["A", "B"])
        for c, name in enumerate(["A", "B"]):
            assert res[f"AUC-{name}"] == pytest.approx(100 * metrics.roc_auc_score(labels[:, c], scores[:, c]))
            assert res[f"AP-{name}"] == pytest.approx(100 * metrics.average_precision_score(labels[:, c], scores[:, c]))
        anyl, anys = labels.any(axis=1), scores.max(axis=1)
        assert res["AUC-any"] == pytest.approx(100 * metrics.roc_auc_score(anyl, anys))
        assert res["AP-any"] == pytest.approx(100 * metrics.average_precision_score(anyl, anys))


def test_all_normal_set_reports_specificity_and_false_positives(caplog):
    from cxr_det.evaluation.core import EvalOptions, evaluate_detections

    images = [
        image(1, preds=[([0, 0, 5, 5], 0.9, 0), ([0, 0, 5, 5], 0.6, 1), ([0, 0, 5, 5], 0.2, 0)]),
        image(2, preds=[([0, 0, 5, 5], 0.3, 1)]),
        image(3),
        image(4, preds=[([0, 0, 5, 5], 0.55, 0)]),
    ]
    res, _ = image_level_metrics(images, ["A", "B"], thresholds=[0.5])
    # no lesion anywhere: AUC and AP undefined; at 0.5, images 1 and 4 are called abnormal
    assert math.isnan(res["AUC"]) and math.isnan(res["AP"])
    assert res["specificity"] == pytest.approx(50.0)  # 2 of 4 normal images called normal
    assert res["FP_per_normal_image"] == pytest.approx(3 / 4)  # boxes >= .5: .9, .6, .55
    assert res["FP_per_normal_image-A"] == pytest.approx(2 / 4) and res["specificity-A"] == pytest.approx(50.0)
    assert res["FP_per_normal_image-B"] == pytest.approx(1 / 4) and res["specificity-B"] == pytest.approx(75.0)
    records = [{"image_id": im.image_id, "height": 10, "width": 10, "annotations": []} for im in images]
    preds = [{"image_id": im.image_id, "boxes": im.pred_boxes, "scores": im.pred_scores, "classes": im.pred_classes}
             for im in images]
    with caplog.at_level("WARNING", logger="cxr_det.evaluation.core"):
        out = evaluate_detections(records, preds, ["A", "B"], EvalOptions(protocols=("vinbigdata", "image")))
    # the VinBigData mAP of an all-normal set is its "No finding" AP alone: 100 here, a "perfect" score
    assert out["vinbigdata"]["mAP40"] == pytest.approx(100.0)
    assert "none of the 4 images has a lesion" in caplog.text
    assert out["image"]["specificity"] == pytest.approx(50.0)
