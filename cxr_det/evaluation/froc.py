"""The FROC protocol: lesion sensitivity at false positives per image, and its mean (CPM).

References: the LUNA16 challenge (Setio et al., Medical Image Analysis 42, 2017) and
CAMELYON16 (Bejnordi et al., JAMA 318, 2017) FROC and competition performance metric at
1/8 ... 8 FPs per image, as MONAI's ``monai.metrics.froc`` (``compute_fp_tp_probs``,
``compute_froc_curve_data``; checked against MONAI 1.6 in ``tests/evaluation/test_eval_references.py``)
computes them; the hit rule is LUNA16's ("luna16") or one-to-one matching (default).
"""
from collections import OrderedDict
from typing import Sequence

import numpy as np

from cxr_det.config import FROC_FPS

from .matching import ImageBoxes, Matches, cumulative_counts, match_detections
from .options import OPTIONS
from .protocols import Protocol, percent, register_protocol

__all__ = ["DEFAULT_FROC_FPS", "FROC_RULES", "FROC_CRITERIA", "froc_curve", "sensitivity_at", "froc_metrics"]

DEFAULT_FROC_FPS = FROC_FPS
# "one_to_one" (a second hit of a found lesion is a FP) or "luna16" (it is ignored).
FROC_RULES = OPTIONS["froc_rule"]["choices"]
# "iou" (IoU >= the FROC IoU) or "center" (predicted centre inside the GT box).
FROC_CRITERIA = OPTIONS["froc_criterion"]["choices"]


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
        results[f"CPM{suffix}"] = percent(np.mean(at))
        for rate, value in zip(fps, at):
            results[f"sens@{rate:g}{suffix}"] = percent(value)
        curve = {"fppi": fppi, "sensitivity": sens, "thresholds": thresholds, "num_gt": m.num_gt}
        curve["cpm"] = float(np.mean(at))
        if suffix:
            curves["classes"][suffix[1:]] = curve
        else:
            curves["overall"] = curve
    return results, curves


def _run(inputs, options):
    results, curves = froc_metrics(
        inputs.images, inputs.class_names, options.froc_fps, options.froc_criterion, options.froc_iou, options.froc_rule
    )
    return {"froc": results}, {"froc": curves}


def _csv_columns(results, options):
    return [("froc_CPM", "froc", "CPM", "CPM")] if "froc" in results else []


def _plots(output_dir, curves, options):
    import os

    from .plots import plot_froc

    return [plot_froc(curves["froc"], options.froc_fps, os.path.join(output_dir, "froc.png"))]


register_protocol(Protocol(
    name="froc",
    run=_run,
    titles={"froc": "FROC (lesion sensitivity at FPs per image)"},
    csv_columns=_csv_columns,
    plots=_plots,
))
