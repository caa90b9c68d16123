"""Bootstrap confidence intervals over images, and paired comparisons of two prediction sets.

The unit of resampling is the image (its lesions and predictions stay together): a
resample draws ``n`` of the ``n`` images with replacement, i.e. gives image ``i`` a weight
``w_i`` (how often it was drawn). Everything that depends only on one image is computed
once (the matching of its predictions to its ground truth, its image-level scores); a
resample then only reweights the per-prediction true/false-positive flags and per-image
GT counts, so 1000 resamples of thousands of images take seconds. The curve of a resample
equals the curve of the dataset where image ``i`` is listed ``w_i`` times (the copies'
predictions entering together at their score), and with every weight 1 each metric equals
its protocol's value exactly (tested).

Intervals are percentile intervals (Efron & Tibshirani 1993, ch. 13) of the resampled
metric; the paired comparison resamples the same images for both prediction sets and
reports the percentile interval of the difference and a two-sided bootstrap p-value
``min(1, 2 * min(1 + #{d <= 0}, 1 + #{d >= 0}) / (B + 1))`` (Davison & Hinkley 1997,
section 4.4). Metrics: COCO AP50 (pycocotools' matching and 101-point AP at IoU >= 0.5,
100 detections per image and class, no crowd regions), VinBigData mAP at IoU > t, FROC
CPM and image-level AUC, each as its protocol module (:mod:`~cxr_det.evaluation.coco`,
:mod:`~cxr_det.evaluation.vinbigdata`, :mod:`~cxr_det.evaluation.froc`,
:mod:`~cxr_det.evaluation.image_level`) computes it.
"""
import logging
import time
from collections import OrderedDict
from typing import Dict, Sequence

import numpy as np
from tqdm import tqdm

from cxr_det.formats import NO_FINDING

from .image_level import image_scores
from .matching import ImageBoxes, Matches, average_precision, cumulative_counts, match_detections, precision_recall
from .protocols import coco_image_order, threshold_tag
from .vinbigdata import with_no_finding

__all__ = [
    "resample_indices",
    "resample_weights",
    "weighted_auc",
    "BootstrapMetrics",
    "percentile_interval",
    "paired_p_value",
    "bootstrap_intervals",
    "paired_resamples",
    "difference_row",
    "paired_comparison",
]

logger = logging.getLogger(__name__)

COCO_AP50_MAX_DETS = 100  # COCO's maxDets for AP


def resample_indices(num_images: int, num_resamples: int, seed: int = 0) -> np.ndarray:
    """(num_resamples, num_images) image positions drawn with replacement, from
    ``numpy.random.default_rng(seed)``; the same seed gives the same resamples."""
    if num_images <= 0:
        raise ValueError("bootstrap: no images to resample")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_images, size=(int(num_resamples), num_images), dtype=np.int64)


def resample_weights(indices: np.ndarray, num_images: int) -> np.ndarray:
    """Rows of image positions -> rows of per-image draw counts (float)."""
    rows = indices.shape[0]
    flat = (indices + np.arange(rows)[:, None] * num_images).ravel()
    return np.bincount(flat, minlength=rows * num_images).reshape(rows, num_images).astype(np.float64)


def _weighted_ap(m: Matches, weights: np.ndarray, method: str) -> np.ndarray:
    """AP (in [0, 1]) of one class for each row of image weights (B, n); NaN without GT."""
    num_gt = weights @ m.gt_per_image
    precision, recall, _ = precision_recall(
        m.scores, m.tp, num_gt, group_ties=False, weights=weights[:, m.image_index]
    )
    ap = np.asarray(average_precision(precision, recall, method), dtype=np.float64).reshape(-1)
    ap = np.broadcast_to(ap, num_gt.shape).copy()
    ap[num_gt <= 0] = np.nan
    return ap


def _weighted_cpm(m: Matches, weights: np.ndarray, fps: Sequence[float]) -> np.ndarray:
    """Mean lesion sensitivity (in [0, 1]) at ``fps`` FPs per image, per row, as
    :func:`~cxr_det.evaluation.froc.sensitivity_at`; NaN without GT."""
    num_gt = weights @ m.gt_per_image
    num_images = weights.sum(axis=1)
    ctp, cfp, _ = cumulative_counts(m.scores, m.tp, group_ties=True, weights=weights[:, m.image_index])
    with np.errstate(invalid="ignore", divide="ignore"):
        fppi = cfp / num_images[:, None]
        sens = ctp / num_gt[:, None]
    rows = np.arange(len(weights))
    values = []
    for rate in fps:
        count = (fppi <= rate + 1e-12).sum(axis=1)
        at = np.where(count > 0, sens[rows, np.maximum(count - 1, 0)] if sens.shape[1] else 0.0, 0.0)
        values.append(at)
    cpm = np.mean(values, axis=0) if values else np.full(len(weights), np.nan)
    cpm[num_gt <= 0] = np.nan
    return cpm


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count one half) of one column per row of image weights;
    NaN where a resample has no positive or no negative image."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, dtype=np.int64)
    if len(starts) == 0:
        return np.full(len(weights), np.nan)
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    u = np.sum(pos * (neg_below + 0.5 * neg), axis=1)
    p, n = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p > 0) & (n > 0), u / (p * n), np.nan)


class BootstrapMetrics:
    """The per-image precomputation of the bootstrapped metrics of one prediction set.

    Args:
        images: :class:`~cxr_det.evaluation.matching.ImageBoxes`, the evaluated images.
        class_names: names of the classes 0..K-1.
        options: :class:`~cxr_det.evaluation.core.EvalOptions`; the metrics follow its
            protocols ("coco" -> ``AP50``, "vinbigdata" -> ``mAP40``, "froc" -> ``CPM``,
            "image" -> ``AUC``) and their options (IoU, matching rules, FROC rates).

    :meth:`per_class` gives, for rows of image weights (B, n), each metric per class as a
    (B, rows) array in [0, 1]; :meth:`summary` turns that into the headline metric (B,).
    """

    def __init__(self, images: Sequence[ImageBoxes], class_names: Sequence[str], options):
        self.num_images = len(images)
        self.class_names = list(class_names)
        k = len(self.class_names)
        self.rows: "OrderedDict[str, list]" = OrderedDict()
        self._coco = self._vin = self._froc = self._image = None
        protocols = options.protocols
        if "coco" in protocols:
            self._coco = match_detections(
                images, k, "iou", 0.5, max_dets=COCO_AP50_MAX_DETS, rule="coco", image_order=coco_image_order(images)
            )
            self.rows["AP50"] = list(self.class_names)
        if "vinbigdata" in protocols:
            self.vin_name = f"mAP{threshold_tag(options.vinbigdata_iou)}"
            self._vin = match_detections(
                with_no_finding(images, k), k + 1, "iou", options.vinbigdata_iou, strict=True,
                rule=options.vinbigdata_matching,
            )
            self.rows[self.vin_name] = self.class_names + [NO_FINDING]
        if "froc" in protocols:
            rule = "luna16" if options.froc_rule == "luna16" else "greedy"
            if options.froc_criterion == "center":
                per_class = match_detections(images, k, "center", 0.5, rule=rule)
            else:
                per_class = match_detections(images, k, "iou", options.froc_iou, rule=rule)
            self._froc = (Matches.pool(per_class), per_class)
            self._fps = tuple(options.froc_fps)
            self.rows["CPM"] = list(self.class_names)
        if "image" in protocols:
            scores, labels = image_scores(images, k)
            self._image = (scores[:, :k], labels[:, :k])
            self.rows["AUC"] = list(self.class_names)

    @property
    def metrics(self):
        """Names of the bootstrapped metrics, e.g. ``["AP50", "mAP40", "CPM", "AUC"]``."""
        return list(self.rows)

    def per_class(self, weights: np.ndarray) -> Dict[str, np.ndarray]:
        """``{metric: (B, rows)}`` per-class values in [0, 1] (NaN where undefined) for
        image weights (B, n); CPM also carries the pooled curve's value as ``"CPM_all"``."""
        out = OrderedDict()
        if self._coco is not None:
            out["AP50"] = np.stack([_weighted_ap(m, weights, "coco101") for m in self._coco], axis=1)
        if self._vin is not None:
            out[self.vin_name] = np.stack([_weighted_ap(m, weights, "voc") for m in self._vin], axis=1)
        if self._froc is not None:
            pooled, per_class = self._froc
            out["CPM"] = np.stack([_weighted_cpm(m, weights, self._fps) for m in per_class], axis=1)
            out["CPM_all"] = _weighted_cpm(pooled, weights, self._fps)
        if self._image is not None:
            scores, labels = self._image
            out["AUC"] = np.stack(
                [weighted_auc(scores[:, c], labels[:, c], weights) for c in range(scores.shape[1])], axis=1
            )
        return out

    @staticmethod
    def summary(per_class: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Headline metric per row, as each protocol defines it: mean over the classes
        with a value (COCO AP50, VinBigData mAP, image-level AUC) or the pooled FROC CPM."""
        out = OrderedDict()
        for name, values in per_class.items():
            if name == "CPM_all":
                continue
            if name == "CPM":
                out[name] = per_class["CPM_all"]
                continue
            with np.errstate(invalid="ignore"):
                valid = ~np.isnan(values)
                total = np.where(valid, values, 0.0).sum(axis=1)
                count = valid.sum(axis=1)
                out[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return out

    def evaluate(self, weights: np.ndarray):
        """``(per_class, summary)`` for image weights (B, n)."""
        per_class = self.per_class(np.asarray(weights, dtype=np.float64).reshape(-1, self.num_images))
        return per_class, self.summary(per_class)

    def point(self):
        """``(per_class, summary)`` of the evaluated set itself (every weight 1), as (rows,)
        arrays and floats."""
        per_class, summary = self.evaluate(np.ones((1, self.num_images)))
        return {k: v[0] for k, v in per_class.items()}, {k: float(v[0]) for k, v in summary.items()}


def _chunks(num_resamples: int, entries: int) -> int:
    """Resamples per chunk, keeping (chunk, entries) float arrays near 4 million values."""
    return int(max(1, min(num_resamples, 4_000_000 // max(entries, 1))))


def _run(scorers: Sequence[BootstrapMetrics], num_resamples: int, seed: int, desc: str):
    """Per-class and summary arrays (B, ...) of every scorer on the same resamples."""
    n = scorers[0].num_images
    indices = resample_indices(n, num_resamples, seed)
    entries = max([n] + [len(m.scores) for s in scorers for ms in (s._coco, s._vin) if ms for m in ms]
                  + [len(s._froc[0].scores) for s in scorers if s._froc])
    step = _chunks(num_resamples, entries)
    collected = [([], []) for _ in scorers]
    start = time.perf_counter()
    for lo in tqdm(range(0, num_resamples, step), desc=desc, unit="chunk", disable=None, leave=False):
        weights = resample_weights(indices[lo : lo + step], n)
        for (per_class_list, summary_list), scorer in zip(collected, scorers):
            per_class, summary = scorer.evaluate(weights)
            per_class_list.append(per_class)
            summary_list.append(summary)
    logger.info("%s: %d resamples of %d images in %.1f s", desc, num_resamples, n, time.perf_counter() - start)
    out = []
    for per_class_list, summary_list in collected:
        per_class = {k: np.concatenate([p[k] for p in per_class_list]) for k in per_class_list[0]}
        summary = {k: np.concatenate([s[k] for s in summary_list]) for k in summary_list[0]}
        out.append((per_class, summary))
    return out


def percentile_interval(values: np.ndarray, confidence: float = 0.95):
    """``(low, high)`` percentile interval of the finite ``values``; NaNs if there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": ``min(1, 2 * min(1 + #{d <= 0},
    1 + #{d >= 0}) / (B + 1))`` over the finite differences (NaN if there are none)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    tail = min(1 + int((d <= 0).sum()), 1 + int((d >= 0).sum()))
    return float(min(1.0, 2.0 * tail / (d.size + 1)))


def bootstrap_intervals(
    images: Sequence[ImageBoxes],
    class_names: Sequence[str],
    options,
    num_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> "OrderedDict[str, float]":
    """Bootstrap percentile intervals over images of AP50, mAP@t, CPM and AUC (those whose
    protocol ``options`` selects).

    Returns floats in percent: ``<metric>`` (the point value, equal to the protocol's),
    ``<metric>_low``, ``<metric>_high`` for the headline metrics, the same keys suffixed
    ``-<class>`` per class (and "No finding" for VinBigData), and ``resamples``. Seeded:
    the same ``seed`` gives the same intervals. Raises ValueError without images.
    """
    scorer = BootstrapMetrics(images, class_names, options)
    point_class, point = scorer.point()
    ((per_class, summary),) = _run([scorer], int(num_resamples), seed, "bootstrap")
    results = OrderedDict()
    for name, values in summary.items():
        low, high = percentile_interval(values, confidence)
        results[name], results[f"{name}_low"], results[f"{name}_high"] = 100 * point[name], 100 * low, 100 * high
    results["resamples"] = float(num_resamples)
    for name, rows in scorer.rows.items():
        for c, row in enumerate(rows):
            low, high = percentile_interval(per_class[name][:, c], confidence)
            results[f"{name}-{row}"] = 100 * float(point_class[name][c])
            results[f"{name}_low-{row}"], results[f"{name}_high-{row}"] = 100 * low, 100 * high
    return results


def _check_paired(images_a, images_b):
    if len(images_a) != len(images_b):
        raise ValueError(f"paired comparison: {len(images_a)} images in A but {len(images_b)} in B")
    for a, b in zip(images_a, images_b):
        if a.image_id != b.image_id or not (
            np.array_equal(a.gt_boxes, b.gt_boxes) and np.array_equal(a.gt_classes, b.gt_classes)
        ):
            raise ValueError(f"paired comparison: image {a.image_id!r} / {b.image_id!r} differs between A and B")


def paired_resamples(
    images_a: Sequence[ImageBoxes],
    images_b: Sequence[ImageBoxes],
    class_names: Sequence[str],
    options,
    num_resamples: int = 1000,
    seed: int = 0,
):
    """Both prediction sets scored on the same bootstrap resamples of the images.

    Returns ``(scorer, (point_a, point_b), (samples_a, samples_b))``: the
    :class:`BootstrapMetrics` of A (its ``rows`` name the per-class columns), each set's
    ``point()`` and each set's ``(per_class, summary)`` arrays over the resamples, values
    in [0, 1]. Raises ValueError if the two lists differ in images or ground truth.
    """
    _check_paired(images_a, images_b)
    scorer_a = BootstrapMetrics(images_a, class_names, options)
    scorer_b = BootstrapMetrics(images_b, class_names, options)
    samples = _run([scorer_a, scorer_b], int(num_resamples), seed, "paired bootstrap")
    return scorer_a, (scorer_a.point(), scorer_b.point()), samples


def difference_row(value_a: float, value_b: float, differences: np.ndarray, confidence: float = 0.95):
    """``{"A", "B", "difference", "low", "high", "p_value"}`` in percent from values in
    [0, 1] and the resampled differences B - A (see :func:`percentile_interval`,
    :func:`paired_p_value`)."""
    low, high = percentile_interval(differences, confidence)
    return OrderedDict(
        [
            ("A", 100 * float(value_a)),
            ("B", 100 * float(value_b)),
            ("difference", 100 * (float(value_b) - float(value_a))),
            ("low", 100 * low),
            ("high", 100 * high),
            ("p_value", paired_p_value(differences)),
        ]
    )


def paired_comparison(
    images_a: Sequence[ImageBoxes],
    images_b: Sequence[ImageBoxes],
    class_names: Sequence[str],
    options,
    num_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> "OrderedDict[str, OrderedDict[str, OrderedDict[str, float]]]":
    """Paired bootstrap comparison of two prediction sets A and B on the same ground truth.

    ``images_a`` and ``images_b`` hold the same images (same ids, same order, same GT)
    with each set's predictions; every resample draws the same images for both. Returns
    ``{metric: {row: {"A", "B", "difference", "low", "high", "p_value"}}}`` in percent
    (difference = B - A; ``low``/``high`` its percentile interval; rows "all" (the headline
    metric) then each class). Raises ValueError if the two lists differ in images or GT.
    """
    scorer, (point_a, point_b), ((class_a, sum_a), (class_b, sum_b)) = paired_resamples(
        images_a, images_b, class_names, options, num_resamples, seed
    )
    out = OrderedDict()
    for name, rows in scorer.rows.items():
        table = OrderedDict()
        table["all"] = difference_row(point_a[1][name], point_b[1][name], sum_b[name] - sum_a[name], confidence)
        for c, row in enumerate(rows):
            diff = class_b[name][:, c] - class_a[name][:, c]
            table[row] = difference_row(point_a[0][name][c], point_b[0][name][c], diff, confidence)
        out[name] = table
    return out
