"""The shared matching routine and the curves built on it, on hand-computed cases."""
import numpy as np
import pytest

import cxr_det  # noqa: F401
from cxr_det.evaluation.matching import (
    ImageBoxes,
    average_precision,
    box_iobb,
    center_inside,
    match_detections,
    match_image,
    precision_recall,
)
from cxr_det.utils.boxes import box_iou


def test_overlaps():
    gt = np.array([[0.0, 0.0, 10.0, 10.0]])
    pred = np.array([[5.0, 5.0, 15.0, 15.0], [2.0, 2.0, 4.0, 4.0], [20.0, 20.0, 30.0, 30.0]])
    # first: intersection 25, union 175; second: inside the GT box; third: disjoint
    np.testing.assert_allclose(box_iou(pred, gt)[:, 0], [25 / 175, 4 / 100, 0.0])
    np.testing.assert_allclose(box_iobb(pred, gt)[:, 0], [25 / 100, 1.0, 0.0])
    np.testing.assert_array_equal(center_inside(pred, gt)[:, 0], [1.0, 1.0, 0.0])
    # a degenerate prediction has no IoBB (no division by zero)
    assert box_iobb(np.array([[3.0, 3.0, 3.0, 8.0]]), gt)[0, 0] == 0.0


def test_strict_threshold_at_exactly_the_threshold():
    gt = np.array([[0.0, 0.0, 10.0, 10.0]])
    pred = np.array([[0.0, 0.0, 10.0, 4.0]])  # IoU = 40 / 100 = 0.4 exactly
    _, tp = match_image(pred, np.array([0.9]), gt, box_iou, 0.4, strict=True)
    assert not tp[0]
    _, tp = match_image(pred, np.array([0.9]), gt, box_iou, 0.4, strict=False)
    assert tp[0]


def test_greedy_takes_best_unmatched_gt_and_duplicates_are_fp():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    pred = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 9.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    # p0 overlaps g0 (1/3) and g1 (1): it must take g1, leaving g0 for p1 (IoU 0.9;
    # IoU 0.267 with g1). p2 duplicates p0: its GT is taken, so it is a false positive.
    scores, tp = match_image(pred, np.array([0.9, 0.8, 0.7]), gt, box_iou, 0.3)
    np.testing.assert_array_equal(scores, [0.9, 0.8, 0.7])
    np.testing.assert_array_equal(tp, [True, True, False])
    # visiting order is by score, not input order
    scores, tp = match_image(pred[::-1], np.array([0.7, 0.8, 0.9]), gt[::-1], box_iou, 0.3)
    np.testing.assert_array_equal(tp, [True, True, False])


def test_max_dets_keeps_the_highest_scores():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores, tp = match_image(gt.copy(), np.array([0.2, 0.9]), gt, box_iou, 0.5, max_dets=1)
    np.testing.assert_array_equal(scores, [0.9])
    np.testing.assert_array_equal(tp, [True])


def test_match_detections_per_class_and_image():
    images = [
        ImageBoxes(1, [[0, 0, 10, 10]], [0], [[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 0]),
        ImageBoxes(2),  # empty image
        ImageBoxes(3, [], [], [[0, 0, 10, 10]], [0.5], [0]),
    ]
    m = match_detections(images, 3)
    # class 0: the 0.8 box hits the GT of image 1; image 3 has no GT, its box is a FP
    np.testing.assert_array_equal(m[0].tp, [True, False])
    assert (m[0].num_gt, m[0].num_images) == (1, 3)
    # class 1: a box of the wrong class on image 1's GT does not match it
    np.testing.assert_array_equal(m[1].tp, [False])
    assert m[1].num_gt == 0
    # class 2: neither GT nor predictions
    assert len(m[2].scores) == 0 and m[2].num_gt == 0
    with pytest.raises(ValueError):
        match_detections(images, 1)


def test_precision_recall_groups_tied_scores():
    # 0.9 TP, then 0.8 twice (one FP, one TP) in either order, then 0.3 FP; 2 GT
    for tp in ([True, False, True, False], [True, True, False, False]):
        p, r, t = precision_recall(np.array([0.9, 0.8, 0.8, 0.3]), np.array(tp), 2)
        np.testing.assert_allclose(p, [1.0, 2 / 3, 0.5])
        np.testing.assert_allclose(r, [0.5, 1.0, 1.0])
        np.testing.assert_allclose(t, [0.9, 0.8, 0.3])
        assert average_precision(p, r, "voc") == pytest.approx(0.5 + 0.5 * 2 / 3)
        assert average_precision(p, r, "coco101") == pytest.approx((51 + 50 * 2 / 3) / 101)
        assert average_precision(p, r, "step") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_average_precision_interpolation_and_edge_cases():
    # 4 GT; TP/FP counts (1, 0), (2, 2), (3, 2): precision dips to 0.5 then rises to 0.6.
    # VOC replaces the dip by the later 0.6, the step rule keeps it.
    p, r = np.array([1.0, 0.5, 0.6]), np.array([0.25, 0.5, 0.75])
    assert average_precision(p, r, "voc") == pytest.approx(0.25 + 0.25 * 0.6 + 0.25 * 0.6)
    assert average_precision(p, r, "step") == pytest.approx(0.25 + 0.25 * 0.5 + 0.25 * 0.6)
    # COCO: recall points 0..0.25 (26) at 1, 0.26..0.75 (50) at 0.6, above 0.75 (25) at 0
    assert average_precision(p, r, "coco101") == pytest.approx((26 + 50 * 0.6) / 101)
    assert average_precision(np.zeros(0), np.zeros(0), "voc") == 0.0  # GT but no predictions
    assert np.isnan(average_precision([0.0], [np.nan], "voc"))  # no GT
    with pytest.raises(ValueError):
        average_precision(p, r, "bogus")


def test_rules_on_equal_overlap_and_the_luna16_hits():
    from cxr_det.evaluation.matching import lesion_hits

    gt = np.array([[0.0, 0.0, 50.0, 50.0], [20.0, 20.0, 80.0, 80.0]])
    pred = np.array([[25.0, 25.0, 30.0, 30.0], [5.0, 5.0, 10.0, 10.0]])  # IoBB 1 with both / with g0 only
    # pycocotools ("coco") gives the first prediction the last of the equal boxes: both found
    _, tp = match_image(pred, np.array([0.9, 0.8]), gt, box_iobb, 0.5, rule="coco")
    np.testing.assert_array_equal(tp, [True, True])
    _, tp = match_image(pred, np.array([0.9, 0.8]), gt, box_iobb, 0.5, rule="greedy")
    np.testing.assert_array_equal(tp, [True, False])
    # LUNA16: three hits on one lesion (.9, .7 ignored, .6 ignored) and a miss (.8 FP)
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10], [1, 1, 10, 10]], dtype=float)
    scores, tp = lesion_hits(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([[0.0, 0.0, 10.0, 10.0]]), box_iou, 0.5)
    np.testing.assert_array_equal(scores, [0.8, 0.9])
    np.testing.assert_array_equal(tp, [False, True])


def test_curves_one_point_per_prediction_and_weighted():
    scores, tp = np.array([0.9, 0.8, 0.8, 0.3]), np.array([True, False, True, False])
    # one point per prediction, ties in input order (pycocotools, VOC devkit)
    p, r, _ = precision_recall(scores, tp, 2, group_ties=False)
    np.testing.assert_allclose(p, [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(r, [0.5, 0.5, 1.0, 1.0])
    # weights (bootstrap): a weight of 2 on the second TP equals listing it twice
    w = np.array([[1.0, 1.0, 2.0, 1.0]])
    p2, r2, _ = precision_recall(scores, tp, np.array([3.0]), group_ties=False, weights=w)
    p3, r3, _ = precision_recall(np.r_[scores, 0.8], np.r_[tp, True], 3, group_ties=False)
    assert average_precision(p2, r2, "voc")[0] == pytest.approx(average_precision(p3, r3, "voc"))
    assert average_precision(p2, r2, "coco101")[0] == pytest.approx(average_precision(p3, r3, "coco101"))
