"""Box-level chest X-ray protocols: VinBigData VOC mAP, MDF-Net IoBB AP/AR and FROC.

Each function takes the per-image :class:`~cxr_det.evaluation.matching.ImageBoxes` and
the class names, matches with :func:`~cxr_det.evaluation.matching.match_detections`, and
returns ``(results, curves)``: ``results`` an ordered dict of floats in percent (summary
keys first, then ``<metric>-<class>``; NaN where a class has no ground truth), ``curves``
the arrays behind them for plots and CSV files.

Each protocol reproduces one reference scorer, tied scores included (score descending,
ties in input order, as those scorers sort):

- VinBigData mAP@0.4: the PASCAL VOC devkit's matching and all-point AP, as the Kaggle
  "PASCAL VOC 2010 mAP at IoU > 0.4" and the ``map-boxes`` package compute it.
- MDF-Net IoBB AP/AR: pycocotools' ``COCOeval`` with IoBB in place of IoU (MDF-Net's
  modified COCOeval), images in sorted-id order as ``COCOeval`` visits them.
- FROC: the CAMELYON16 / LUNA16 threshold sweep (MONAI's ``compute_froc_curve_data``),
  with one-to-one matching or the LUNA16 hit rule.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cxr_det.config import FROC_FPS
from cxr_det.formats import NO_FINDING

from .matching import ImageBoxes, Matches, average_precision, cumulative_counts, match_detections, precision_recall

__all__ = [
    "NO_FINDING",
    "NO_FINDING_BOX",
    "DEFAULT_FROC_FPS",
    "VINBIGDATA_MATCHING",
    "FROC_RULES",
    "coco_image_order",
    "with_no_finding",
    "vinbigdata_metrics",
    "iobb_metrics",
    "froc_curve",
    "sensitivity_at",
    "froc_metrics",
]

# The competition's box for "No finding" (ground truth of a normal image, and the prediction).
NO_FINDING_BOX = (0.0, 0.0, 1.0, 1.0)
DEFAULT_FROC_FPS = FROC_FPS
# VinBigData matching: "voc" (the devkit's, the Kaggle metric) or "greedy" (best still-free GT).
VINBIGDATA_MATCHING = ("voc", "greedy")
# FROC hit rule: "one_to_one" (a second hit of a found lesion is a FP) or "luna16" (ignored).
FROC_RULES = ("one_to_one", "luna16")


def _nanmean(values) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _pct(value: float) -> float:
    return float(value) * 100.0


def threshold_tag(threshold: float) -> str:
    """0.4 -> "40", 0.125 -> "12.5": the suffix of metric names such as ``mAP40``."""
    return f"{threshold * 100:g}"


def coco_image_order(images: Sequence[ImageBoxes]) -> List[int]:
    """Positions of ``images`` by increasing ``image_id``: the order in which pycocotools'
    ``COCOeval`` (``params.imgIds = sorted(...)``) concatenates images, which decides the
    order of tied scores. Ids that cannot be compared (mixed types) keep the given order."""
    try:
        return sorted(range(len(images)), key=lambda i: images[i].image_id)
    except TypeError:
        return list(range(len(images)))


def with_no_finding(images: Sequence[ImageBoxes], num_classes: int) -> List[ImageBoxes]:
    """The images with the VinBigData "No finding" class (index ``num_classes``) added.

    A normal image (no GT box) gets one "No finding" GT box :data:`NO_FINDING_BOX`. Every
    image gets one "No finding" prediction on that box, scored by the model's own
    ``no_finding_score`` when it gave one, else ``1 - (highest lesion score)`` (1 when it
    predicted nothing).
    """
    box = np.asarray([NO_FINDING_BOX])
    out = []
    for im in images:
        gt_boxes, gt_classes = im.gt_boxes, im.gt_classes
        if len(gt_classes) == 0:
            gt_boxes, gt_classes = box, np.asarray([num_classes])
        if im.no_finding_score is not None:
            score = float(im.no_finding_score)
        else:
            score = 1.0 - (float(im.pred_scores.max()) if len(im.pred_scores) else 0.0)
        out.append(
            ImageBoxes(
                im.image_id,
                gt_boxes,
                gt_classes,
                np.concatenate([im.pred_boxes, box]),
                np.r_[im.pred_scores, score],
                np.r_[im.pred_classes, num_classes],
            )
        )
    return out


def _pr_curve(m: Matches, method: str) -> Tuple[float, Dict[str, np.ndarray]]:
    """AP and curve with one point per prediction, ties in matching order (the references')."""
    precision, recall, thresholds = precision_recall(m.scores, m.tp, m.num_gt, group_ties=False)
    ap = average_precision(precision, recall, method) if m.num_gt > 0 else float("nan")
    return ap, {"precision": precision, "recall": recall, "thresholds": thresholds, "ap": ap, "num_gt": m.num_gt}


def vinbigdata_metrics(
    images: Sequence[ImageBoxes], class_names: Sequence[str], iou: float = 0.4, matching: str = "voc"
):
    """The VinBigData (Kaggle) metric: PASCAL VOC 2010 all-point AP at IoU > ``iou`` per class.

    Reference: the PASCAL VOC devkit (``VOCevaldet.m``, ``VOCap.m``), as the ``map-boxes``
    package implements it (with IoU > instead of its >=, as the competition states). Per
    class, detections are sorted by score (ties in input order: images as given, then
    each image's boxes in order); ``matching="voc"`` (default): each detection goes to its
    highest-IoU GT box of that class in that image, and is a true positive only if that box
    is not taken yet (three readers' overlapping boxes on one lesion: a second detection
    whose best box is taken is a false positive even if another reader's box is free);
    ``"greedy"``: it takes the best still-free box instead (not the reference). AP is
    the all-point interpolated area over one point per detection.

    The lesion classes and "No finding" (see :func:`with_no_finding`) are scored alike.
    ``mAP<t>`` is the mean over the classes that have ground truth (classes without any
    are NaN and left out); ``mAP<t>_lesions`` leaves "No finding" out as well. Keys:
    ``mAP40``, ``mAP40_lesions``, ``AP40-<class>`` ... for ``iou=0.4``.
    Raises ValueError if "No finding" is a box class or ``matching`` is unknown.
    """
    if NO_FINDING in class_names:
        raise ValueError(f'the VinBigData protocol adds "{NO_FINDING}" itself; it must not be a box class')
    if matching not in VINBIGDATA_MATCHING:
        raise ValueError(f"VinBigData matching must be one of {list(VINBIGDATA_MATCHING)}, got {matching!r}")
    names = list(class_names) + [NO_FINDING]
    matches = match_detections(
        with_no_finding(images, len(class_names)), len(names), "iou", iou, strict=True, rule=matching
    )
    tag = threshold_tag(iou)
    curves, aps = {}, {}
    for name, m in zip(names, matches):
        aps[name], curves[name] = _pr_curve(m, "voc")
    results = OrderedDict()
    results[f"mAP{tag}"] = _pct(_nanmean(aps.values()))
    results[f"mAP{tag}_lesions"] = _pct(_nanmean(aps[n] for n in class_names))
    for name in names:
        results[f"AP{tag}-{name}"] = _pct(aps[name])
    return results, curves


def iobb_metrics(
    images: Sequence[ImageBoxes], class_names: Sequence[str], threshold: float = 0.5, max_dets: Optional[int] = 10
):
    """MDF-Net's protocol: a prediction matches when its IoBB (intersection / predicted
    area) is >= ``threshold``.

    Reference: pycocotools' ``COCOeval`` (``evaluateImg``, ``accumulate``) with IoBB in
    place of IoU, as MDF-Net's modified COCOeval computes it at one threshold, area "all":
    per image and class the predictions sorted by score (stable) and cut to ``max_dets``,
    each taking the best still-free GT box (the last one on equal overlap, as pycocotools
    does); images concatenated by sorted image id, then a stable sort by score, one curve
    point per prediction; AP by COCO's 101-point interpolation, AR the recall reached.
    ``AP``/``AR`` are means over classes with ground truth; per class ``AP-<class>``,
    ``AR-<class>``.
    """
    matches = match_detections(
        images, len(class_names), "iobb", threshold, strict=False, max_dets=max_dets, rule="coco",
        image_order=coco_image_order(images),
    )
    curves, aps, ars = {}, {}, {}
    for name, m in zip(class_names, matches):
        aps[name], curves[name] = _pr_curve(m, "coco101")
        ars[name] = float(m.tp.sum()) / m.num_gt if m.num_gt > 0 else float("nan")
    results = OrderedDict([("AP", _pct(_nanmean(aps.values()))), ("AR", _pct(_nanmean(ars.values())))])
    for name in class_names:
        results[f"AP-{name}"] = _pct(aps[name])
        results[f"AR-{name}"] = _pct(ars[name])
    return results, curves


def froc_curve(m: Matches):
    """Lesion sensitivity against mean false positives per image, one point per distinct
    score threshold (highest first): a threshold sweep, ties entering together, as MONAI's
    ``compute_froc_curve_data`` (which also drops its lowest threshold and adds (0, 0)).
    Returns ``(fppi, sensitivity, thresholds)``."""
    ctp, cfp, thresholds = cumulative_counts(m.scores, m.tp)
    fppi = cfp / m.num_images if m.num_images > 0 else np.full(len(cfp), np.nan)
    sensitivity = ctp / m.num_gt if m.num_gt > 0 else np.full(len(ctp), np.nan)
    return fppi, sensitivity, thresholds


def sensitivity_at(fppi: np.ndarray, sensitivity: np.ndarray, rates: Sequence[float], num_gt: int = 1) -> np.ndarray:
    """Sensitivity at each false-positive rate: the best operating point with at most that
    many FPs per image (no interpolation; 0 when even the highest threshold exceeds it,
    NaN when ``num_gt`` is 0)."""
    if num_gt <= 0:
        return np.full(len(rates), np.nan)
    out = []
    for rate in rates:
        ok = fppi <= rate + 1e-12
        out.append(float(sensitivity[ok].max()) if ok.any() else 0.0)
    return np.asarray(out)


def froc_metrics(
    images: Sequence[ImageBoxes],
    class_names: Sequence[str],
    fps: Sequence[float] = DEFAULT_FROC_FPS,
    criterion: str = "iou",
    iou: float = 0.3,
    rule: str = "one_to_one",
):
    """FROC: lesion sensitivity at ``fps`` false positives per image and their mean (CPM).

    A prediction hits a lesion of its class when ``criterion`` is "iou" and IoU >= ``iou``,
    or when it is "center" and the predicted box's centre lies inside the GT box.
    ``rule``: "one_to_one" (default): predictions visited by score each take the best
    still-free lesion they hit; each lesion counts once, a second hit on a found lesion is a
    false positive. "luna16": the LUNA16 / CAMELYON16 rule (MONAI's
    ``compute_fp_tp_probs``): a prediction hitting any lesion is never a false positive,
    a lesion is found at the highest score of the predictions hitting it, and further hits
    are ignored. The curve is a threshold sweep (:func:`froc_curve`); the sensitivity at a
    rate is the best operating point with at most that many FPs per image, without the
    linear interpolation of MONAI's ``compute_froc_score``.

    Per class (FPs of that class per image) and overall (all classes pooled). Keys:
    ``CPM``, ``sens@0.125`` ... ``sens@8``, then ``CPM-<class>``, ``sens@0.125-<class>``
    ... ``curves`` holds ``{"overall": curve, "classes": {name: curve}}``.
    Raises ValueError for an unknown criterion or rule.
    """
    if rule not in FROC_RULES:
        raise ValueError(f"unknown FROC rule {rule!r}: expected one of {list(FROC_RULES)}")
    match_rule = "luna16" if rule == "luna16" else "greedy"
    if criterion == "iou":
        matches = match_detections(images, len(class_names), "iou", iou, rule=match_rule)
    elif criterion == "center":
        matches = match_detections(images, len(class_names), "center", 0.5, rule=match_rule)
    else:
        raise ValueError(f"unknown FROC criterion {criterion!r}: expected 'iou' or 'center'")
    groups = [("", Matches.pool(matches))] + [(f"-{n}", m) for n, m in zip(class_names, matches)]
    if not images:
        groups = [(suffix, Matches(m.scores, m.tp, m.num_gt, 0, m.image_index, m.gt_per_image)) for suffix, m in groups]
    results, curves = OrderedDict(), {"overall": None, "classes": OrderedDict()}
    for suffix, m in groups:
        fppi, sens, thresholds = froc_curve(m)
        at = sensitivity_at(fppi, sens, fps, m.num_gt)
        results[f"CPM{suffix}"] = _pct(np.mean(at))
        for rate, value in zip(fps, at):
            results[f"sens@{rate:g}{suffix}"] = _pct(value)
        curve = {"fppi": fppi, "sensitivity": sens, "thresholds": thresholds, "num_gt": m.num_gt}
        curve["cpm"] = float(np.mean(at))
        if suffix:
            curves["classes"][suffix[1:]] = curve
        else:
            curves["overall"] = curve
    return results, curves
