"""Box-level chest X-ray protocols: VinBigData VOC mAP, MDF-Net IoBB AP/AR and FROC.

Each function takes the per-image :class:`~cxr_det.evaluation.matching.ImageBoxes` and
the class names, matches with :func:`~cxr_det.evaluation.matching.match_detections`, and
returns ``(results, curves)``: ``results`` an ordered dict of floats in percent (summary
keys first, then ``<metric>-<class>``; NaN where a class has no ground truth), ``curves``
the arrays behind them for plots and CSV files.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .matching import ImageBoxes, Matches, average_precision, cumulative_counts, match_detections, precision_recall

__all__ = [
    "NO_FINDING",
    "NO_FINDING_BOX",
    "DEFAULT_FROC_FPS",
    "with_no_finding",
    "vinbigdata_metrics",
    "iobb_metrics",
    "froc_curve",
    "sensitivity_at",
    "froc_metrics",
]

NO_FINDING = "No finding"
# The competition's box for "No finding" (ground truth of a normal image, and the prediction).
NO_FINDING_BOX = (0.0, 0.0, 1.0, 1.0)
DEFAULT_FROC_FPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _nanmean(values) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _pct(value: float) -> float:
    return float(value) * 100.0


def threshold_tag(threshold: float) -> str:
    """0.4 -> "40", 0.125 -> "12.5": the suffix of metric names such as ``mAP40``."""
    return f"{threshold * 100:g}"


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
    precision, recall, thresholds = precision_recall(m.scores, m.tp, m.num_gt)
    ap = average_precision(precision, recall, method) if m.num_gt > 0 else float("nan")
    return ap, {"precision": precision, "recall": recall, "thresholds": thresholds, "ap": ap, "num_gt": m.num_gt}


def vinbigdata_metrics(images: Sequence[ImageBoxes], class_names: Sequence[str], iou: float = 0.4):
    """The VinBigData (Kaggle) metric: PASCAL VOC all-point AP at IoU > ``iou`` per class.

    The lesion classes and "No finding" (see :func:`with_no_finding`) are scored alike.
    ``mAP<t>`` is the mean over the classes that have ground truth (classes without any
    are NaN and left out); ``mAP<t>_lesions`` leaves "No finding" out as well. Keys:
    ``mAP40``, ``mAP40_lesions``, ``AP40-<class>`` ... for ``iou=0.4``.
    """
    if NO_FINDING in class_names:
        raise ValueError(f'the VinBigData protocol adds "{NO_FINDING}" itself; it must not be a box class')
    names = list(class_names) + [NO_FINDING]
    matches = match_detections(with_no_finding(images, len(class_names)), len(names), "iou", iou, strict=True)
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

    As in MDF-Net's modified COCOeval: at most ``max_dets`` predictions per image and class,
    AP by COCO's 101-point interpolation, AR the recall reached. ``AP``/``AR`` are means
    over classes with ground truth; per class ``AP-<class>``, ``AR-<class>``.
    """
    matches = match_detections(images, len(class_names), "iobb", threshold, strict=False, max_dets=max_dets)
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
    score threshold (highest first). Returns ``(fppi, sensitivity, thresholds)``."""
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
):
    """FROC: lesion sensitivity at ``fps`` false positives per image and their mean (CPM).

    A prediction hits a lesion of its class when ``criterion`` is "iou" and IoU >= ``iou``,
    or when it is "center" and the predicted box's centre lies inside the GT box; each
    lesion counts once, further hits on it are false positives. Per class (FPs of that
    class per image) and overall (all classes pooled). Keys: ``CPM``, ``sens@0.125`` ...
    ``sens@8``, then ``CPM-<class>``, ``sens@0.125-<class>`` ... ``curves`` holds
    ``{"overall": curve, "classes": {name: curve}}``.
    """
    if criterion == "iou":
        matches = match_detections(images, len(class_names), "iou", iou)
    elif criterion == "center":
        matches = match_detections(images, len(class_names), "center", 0.5)
    else:
        raise ValueError(f"unknown FROC criterion {criterion!r}: expected 'iou' or 'center'")
    groups = [("", Matches.pool(matches))] + [(f"-{n}", m) for n, m in zip(class_names, matches)]
    if not images:
        groups = [(suffix, Matches(m.scores, m.tp, m.num_gt, 0)) for suffix, m in groups]
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
