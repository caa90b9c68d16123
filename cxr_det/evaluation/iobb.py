"""The MDF-Net protocol: AP and AR with IoBB (intersection over the predicted box's area).

Reference: Hsieh et al., "MDF-Net for abnormality detection by fusing X-rays with clinical
data", Scientific Reports 13, 2023, doi:10.1038/s41598-023-41463-0 (REFLACX lesions): their
modified pycocotools ``COCOeval`` (``evaluateImg``, ``accumulate``) with IoBB in place of
IoU, at one threshold, area "all", ``maxDets`` 10 (checked against pycocotools' COCOeval
with the overlap swapped, in ``tests/evaluation/test_eval_references.py``).
"""
from collections import OrderedDict
from typing import Optional, Sequence

from .matching import ImageBoxes, match_detections
from .protocols import Protocol, coco_image_order, nanmean, percent, pr_curve, register_protocol

__all__ = ["iobb_metrics"]


def iobb_metrics(
    images: Sequence[ImageBoxes], class_names: Sequence[str], threshold: float = 0.5, max_dets: Optional[int] = 10
):
    """MDF-Net's protocol: a prediction matches when its IoBB (intersection / predicted
    area) is >= ``threshold``.

    Reference: pycocotools' ``COCOeval`` (``evaluateImg``, ``accumulate``) with IoBB in
    place of IoU, as MDF-Net's modified COCOeval computes it at one threshold, area "all":
    per image and class the predictions sorted by score (stable) and cut to ``max_dets``
    (None keeps all), each taking the best still-free GT box (the last one on equal
    overlap, as pycocotools does); images concatenated by sorted image id, then a stable
    sort by score, one curve point per prediction; AP by COCO's 101-point interpolation, AR
    the recall reached. ``AP``/``AR`` are means over classes with ground truth; per class
    ``AP-<class>``, ``AR-<class>``. Returns ``(results, curves)`` (curves: {class:
    precision-recall curve}).
    """
    matches = match_detections(
        images, len(class_names), "iobb", threshold, strict=False, max_dets=max_dets, rule="coco",
        image_order=coco_image_order(images),
    )
    curves, aps, ars = {}, {}, {}
    for name, m in zip(class_names, matches):
        aps[name], curves[name] = pr_curve(m, "coco101")
        ars[name] = float(m.tp.sum()) / m.num_gt if m.num_gt > 0 else float("nan")
    results = OrderedDict([("AP", percent(nanmean(aps.values()))), ("AR", percent(nanmean(ars.values())))])
    for name in class_names:
        results[f"AP-{name}"] = percent(aps[name])
        results[f"AR-{name}"] = percent(ars[name])
    return results, curves


def _run(inputs, options):
    results, curves = iobb_metrics(inputs.images, inputs.class_names, options.iobb_threshold, options.iobb_max_dets)
    return {"iobb": results}, {"iobb": curves}


def _csv_columns(results, options):
    return [("iobb_AP", "iobb", "AP", "AP"), ("iobb_AR", "iobb", "AR", "AR")] if "iobb" in results else []


def _plots(output_dir, curves, options):
    import os

    from .plots import plot_pr_curves

    title = f"MDF-Net precision-recall (IoBB >= {options.iobb_threshold:g})"
    return [plot_pr_curves(curves["iobb"], title, os.path.join(output_dir, "pr_iobb.png"))]


register_protocol(Protocol(
    name="iobb", run=_run, titles={"iobb": "MDF-Net IoBB"}, csv_columns=_csv_columns, plots=_plots
))
