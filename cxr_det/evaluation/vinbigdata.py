"""The VinBigData protocol: PASCAL VOC all-point mAP at IoU > 0.4, with "No finding".

Reference: the metric of the Kaggle competition "VinBigData Chest X-ray Abnormalities
Detection" (2021): "PASCAL VOC 2010 mAP at IoU > 0.4", the PASCAL VOC development kit's
matching and AP (``VOCevaldet.m``, ``VOCap.m``; Everingham et al., IJCV 2010) with the
competition's "No finding" class, as the ``map-boxes`` package implements it (checked
against map-boxes 1.0.6 in ``tests/evaluation/test_eval_references.py``). Tied scores are in input
order (images as given, then each image's boxes), as those scorers sort.
"""
from collections import OrderedDict
from typing import List, Sequence

import numpy as np

from cxr_det.formats import NO_FINDING

from .matching import ImageBoxes, match_detections
from .options import OPTIONS
from .protocols import Protocol, nanmean, percent, pr_curve, register_protocol, threshold_tag

__all__ = ["NO_FINDING_BOX", "VINBIGDATA_MATCHING", "with_no_finding", "vinbigdata_metrics"]

# The competition's box for "No finding" (ground truth of a normal image, and the prediction).
NO_FINDING_BOX = (0.0, 0.0, 1.0, 1.0)
# "voc" (the devkit's, the Kaggle metric) or "greedy" (best still-free GT box).
VINBIGDATA_MATCHING = OPTIONS["vinbigdata_matching"]["choices"]


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
    ``mAP40``, ``mAP40_lesions``, ``AP40-<class>`` ... for ``iou=0.4``. Returns
    ``(results, curves)`` (curves: {class: precision-recall curve}).
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
        aps[name], curves[name] = pr_curve(m, "voc")
    results = OrderedDict()
    results[f"mAP{tag}"] = percent(nanmean(aps.values()))
    results[f"mAP{tag}_lesions"] = percent(nanmean(aps[n] for n in class_names))
    for name in names:
        results[f"AP{tag}-{name}"] = percent(aps[name])
    return results, curves


def _run(inputs, options):
    results, curves = vinbigdata_metrics(
        inputs.images, inputs.class_names, options.vinbigdata_iou, options.vinbigdata_matching
    )
    return {"vinbigdata": results}, {"vinbigdata": curves}


def _csv_columns(results, options):
    if "vinbigdata" not in results:
        return []
    tag = threshold_tag(options.vinbigdata_iou)
    return [(f"vinbigdata_AP{tag}", "vinbigdata", f"AP{tag}", f"mAP{tag}")]


def _plots(output_dir, curves, options):
    import os

    from .plots import plot_pr_curves

    title = f"VinBigData precision-recall (IoU > {options.vinbigdata_iou:g})"
    return [plot_pr_curves(curves["vinbigdata"], title, os.path.join(output_dir, "pr_vinbigdata.png"))]


register_protocol(Protocol(
    name="vinbigdata",
    run=_run,
    titles={"vinbigdata": "VinBigData (PASCAL VOC AP, IoU > threshold, with 'No finding')"},
    csv_columns=_csv_columns,
    plots=_plots,
))
