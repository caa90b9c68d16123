"""Greedy matching of detections to ground truth, and the precision-recall curves built on it.

One routine (:func:`match_detections`) serves every box-level protocol of
:mod:`cxr_det.evaluation.protocols` (VinBigData VOC AP, MDF-Net IoBB AP/AR, FROC); they
differ only in the overlap function, its threshold and how the curve is summarised.
All boxes are ``XYXY_ABS`` with continuous areas (``(x1 - x0) * (y1 - y0)``, no +1).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "ImageBoxes",
    "Matches",
    "box_iou",
    "box_iobb",
    "center_inside",
    "OVERLAPS",
    "match_image",
    "match_detections",
    "cumulative_counts",
    "precision_recall",
    "average_precision",
]


@dataclass
class ImageBoxes:
    """Ground truth and predictions of one image, as float/int numpy arrays.

    ``gt_classes`` and ``pred_classes`` are contiguous 0-based class indices;
    ``no_finding_score`` is the model's own "image is normal" probability, if it gave one.
    """

    image_id: int
    gt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    gt_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pred_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    pred_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pred_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    no_finding_score: Optional[float] = None

    def __post_init__(self):
        self.gt_boxes = np.asarray(self.gt_boxes, dtype=np.float64).reshape(-1, 4)
        self.gt_classes = np.asarray(self.gt_classes, dtype=np.int64).reshape(-1)
        self.pred_boxes = np.asarray(self.pred_boxes, dtype=np.float64).reshape(-1, 4)
        self.pred_scores = np.asarray(self.pred_scores, dtype=np.float64).reshape(-1)
        self.pred_classes = np.asarray(self.pred_classes, dtype=np.int64).reshape(-1)
        if not (len(self.gt_boxes) == len(self.gt_classes)):
            raise ValueError(f"image {self.image_id}: {len(self.gt_boxes)} GT boxes but {len(self.gt_classes)} classes")
        if not (len(self.pred_boxes) == len(self.pred_scores) == len(self.pred_classes)):
            raise ValueError(f"image {self.image_id}: predicted boxes, scores and classes differ in length")


@dataclass
class Matches:
    """Every prediction of one class (or of several, pooled) over a dataset.

    ``scores`` and ``tp`` are aligned, one entry per prediction; ``num_gt`` counts the
    ground-truth boxes the predictions competed for, ``num_images`` the images evaluated.
    """

    scores: np.ndarray
    tp: np.ndarray
    num_gt: int
    num_images: int

    @staticmethod
    def pool(matches: Sequence["Matches"]) -> "Matches":
        """All classes together (e.g. the overall FROC): predictions concatenated, GT summed."""
        if not matches:
            return Matches(np.zeros(0), np.zeros(0, dtype=bool), 0, 0)
        return Matches(
            np.concatenate([m.scores for m in matches]),
            np.concatenate([m.tp for m in matches]),
            int(sum(m.num_gt for m in matches)),
            int(matches[0].num_images),
        )


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _intersection(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    lt = np.maximum(pred[:, None, :2], gt[None, :, :2])
    rb = np.minimum(pred[:, None, 2:], gt[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection over union, (P, 4) x (G, 4) -> (P, G); 0 where the union is empty."""
    inter = _intersection(pred, gt)
    union = _area(pred)[:, None] + _area(gt)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iobb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection over the *predicted* box's area (MDF-Net's IoBB), (P, G); 0 for empty predictions.

    A small prediction lying inside a large ground-truth box scores 1.
    """
    inter = _intersection(pred, gt)
    area = np.broadcast_to(_area(pred)[:, None], inter.shape)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def center_inside(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """1.0 where the predicted box's centre lies inside the GT box (borders included), else 0.0."""
    cx = (pred[:, 0] + pred[:, 2])[:, None] / 2
    cy = (pred[:, 1] + pred[:, 3])[:, None] / 2
    inside = (cx >= gt[None, :, 0]) & (cx <= gt[None, :, 2]) & (cy >= gt[None, :, 1]) & (cy <= gt[None, :, 3])
    return inside.astype(np.float64)


OverlapFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
OVERLAPS: Dict[str, OverlapFn] = {"iou": box_iou, "iobb": box_iobb, "center": center_inside}


def match_image(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    overlap: OverlapFn,
    threshold: float,
    strict: bool = False,
    max_dets: Optional[int] = None,
):
    """Greedy matching within one image and class.

    Predictions are visited by decreasing score (stable: equal scores keep their input
    order), at most ``max_dets`` of them. Each takes the still-unmatched GT box of highest
    overlap among those with overlap >= ``threshold`` (> when ``strict``); a GT box is
    matched at most once, so duplicates are false positives. Returns ``(scores, tp)`` of
    the visited predictions, in visiting order.
    """
    order = np.argsort(-pred_scores, kind="stable")
    if max_dets is not None:
        order = order[:max_dets]
    scores = pred_scores[order]
    tp = np.zeros(len(order), dtype=bool)
    if len(order) == 0 or len(gt_boxes) == 0:
        return scores, tp
    ov = overlap(pred_boxes[order], gt_boxes)
    eligible = ov > threshold if strict else ov >= threshold
    free = np.ones(len(gt_boxes), dtype=bool)
    for i in range(len(order)):
        candidates = eligible[i] & free
        if candidates.any():
            j = int(np.argmax(np.where(candidates, ov[i], -np.inf)))
            free[j] = False
            tp[i] = True
    return scores, tp


def match_detections(
    images: Sequence[ImageBoxes],
    num_classes: int,
    overlap: str = "iou",
    threshold: float = 0.5,
    strict: bool = False,
    max_dets: Optional[int] = None,
) -> List[Matches]:
    """Match predictions to GT per image and class with :func:`match_image`; one
    :class:`Matches` per class index ``0..num_classes-1``.

    ``overlap`` names an entry of :data:`OVERLAPS` ("iou", "iobb", "center") or is a
    callable ``(pred (P,4), gt (G,4)) -> (P,G)``. ``max_dets`` limits the predictions per
    image and class (COCO's ``maxDets``).
    """
    fn = OVERLAPS[overlap] if isinstance(overlap, str) else overlap
    scores: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    flags: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for image in images:
        for c in np.union1d(image.gt_classes, image.pred_classes):
            c = int(c)
            if not 0 <= c < num_classes:
                raise ValueError(f"image {image.image_id}: class index {c} outside 0..{num_classes - 1}")
            gt = image.gt_boxes[image.gt_classes == c]
            keep = image.pred_classes == c
            s, tp = match_image(image.pred_boxes[keep], image.pred_scores[keep], gt, fn, threshold, strict, max_dets)
            num_gt[c] += len(gt)
            scores[c].append(s)
            flags[c].append(tp)
    return [
        Matches(
            np.concatenate(scores[c]) if scores[c] else np.zeros(0),
            np.concatenate(flags[c]) if flags[c] else np.zeros(0, dtype=bool),
            int(num_gt[c]),
            len(images),
        )
        for c in range(num_classes)
    ]


def cumulative_counts(scores: np.ndarray, tp: np.ndarray):
    """Cumulative TP and FP counts at each distinct score threshold, highest threshold first.

    Predictions with equal scores enter together (one point per distinct score), so the
    result does not depend on how ties are ordered. Returns ``(tp, fp, thresholds)``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    return np.cumsum(tp)[last], np.cumsum(~tp)[last], scores[last]


def precision_recall(scores: np.ndarray, tp: np.ndarray, num_gt: int):
    """Precision and recall at each distinct score threshold (see :func:`cumulative_counts`).

    Returns ``(precision, recall, thresholds)``; recall is NaN when ``num_gt`` is 0.
    """
    ctp, cfp, thresholds = cumulative_counts(scores, tp)
    precision = ctp / np.maximum(ctp + cfp, 1)
    recall = ctp / num_gt if num_gt > 0 else np.full(len(ctp), np.nan)
    return precision, recall, thresholds


def average_precision(precision: np.ndarray, recall: np.ndarray, method: str = "voc") -> float:
    """Area under a precision-recall curve (points ordered by increasing recall), in [0, 1].

    ``"voc"``: all-point interpolation of PASCAL VOC 2010+ (precision replaced by its
    running maximum from the right, summed over recall steps). ``"coco101"``: COCO's
    101-point interpolation of that envelope. ``"step"``: no interpolation, sum of
    precision x recall step (scikit-learn's ``average_precision_score``). An empty curve
    gives 0; NaN recall (no ground truth) gives NaN.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if len(recall) and np.isnan(recall).any():
        return float("nan")
    if len(recall) == 0:
        return 0.0
    if method == "step":
        steps = np.diff(np.r_[0.0, recall])
        return float(np.sum(steps * precision))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if method == "voc":
        steps = np.diff(np.r_[0.0, recall])
        return float(np.sum(steps * envelope))
    if method == "coco101":
        points = np.linspace(0.0, 1.0, 101)
        idx = np.searchsorted(recall, points, side="left")
        values = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
        return float(np.mean(values))
    raise ValueError(f"unknown AP method {method!r}: expected 'voc', 'coco101' or 'step'")
