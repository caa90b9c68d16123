"""Matching of detections to ground truth, and the precision-recall curves built on it.

One routine (:func:`match_detections`) serves every box-level protocol
(:mod:`~cxr_det.evaluation.vinbigdata` VOC AP, :mod:`~cxr_det.evaluation.iobb` MDF-Net
AP/AR, :mod:`~cxr_det.evaluation.froc`; overlaps from :mod:`cxr_det.utils.boxes`) and the
bootstrap of :mod:`cxr_det.evaluation.bootstrap`; they differ in the overlap function, its
threshold, the matching rule of the reference scorer (PASCAL VOC devkit, pycocotools,
LUNA16) and how the curve is summarised. All boxes are ``XYXY_ABS`` with continuous areas
(``(x1 - x0) * (y1 - y0)``, no +1), as pycocotools and ``map-boxes`` compute them.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from cxr_det.utils.boxes import box_ioa, box_iou

__all__ = [
    "ImageBoxes",
    "Matches",
    "box_iobb",
    "center_inside",
    "OVERLAPS",
    "MATCH_RULES",
    "COCO_RECALL_THRESHOLDS",
    "score_order",
    "match_image",
    "lesion_hits",
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

    ``scores`` and ``tp`` are aligned, one entry per prediction (per found lesion under
    the LUNA16 rule); ``num_gt`` counts the ground-truth boxes the predictions competed
    for, ``num_images`` the images evaluated. ``image_index`` (entries,) is the position of
    each entry's image in the evaluated list and ``gt_per_image`` (num_images,) the GT
    boxes of each image: what a bootstrap needs to reweight images without matching again.
    """

    scores: np.ndarray
    tp: np.ndarray
    num_gt: int
    num_images: int
    image_index: Optional[np.ndarray] = None
    gt_per_image: Optional[np.ndarray] = None

    @staticmethod
    def pool(matches: Sequence["Matches"]) -> "Matches":
        """All classes together (e.g. the overall FROC): predictions concatenated, GT summed."""
        if not matches:
            return Matches(np.zeros(0), np.zeros(0, dtype=bool), 0, 0)
        per_image = [m.gt_per_image for m in matches]
        where = [m.image_index for m in matches]
        return Matches(
            np.concatenate([m.scores for m in matches]),
            np.concatenate([m.tp for m in matches]),
            int(sum(m.num_gt for m in matches)),
            int(matches[0].num_images),
            None if any(w is None for w in where) else np.concatenate(where),
            None if any(g is None for g in per_image) else np.sum(per_image, axis=0),
        )


def box_iobb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection over the *predicted* box's area (MDF-Net's IoBB), (P, G); 0 for empty predictions.

    A small prediction lying inside a large ground-truth box scores 1.
    """
    return box_ioa(pred, gt)


def center_inside(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """1.0 where the predicted box's centre lies inside the GT box (borders included), else 0.0."""
    cx = (pred[:, 0] + pred[:, 2])[:, None] / 2
    cy = (pred[:, 1] + pred[:, 3])[:, None] / 2
    inside = (cx >= gt[None, :, 0]) & (cx <= gt[None, :, 2]) & (cy >= gt[None, :, 1]) & (cy <= gt[None, :, 3])
    return inside.astype(np.float64)


# pycocotools' ``Params.recThrs``.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)

OverlapFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
OVERLAPS: Dict[str, OverlapFn] = {"iou": box_iou, "iobb": box_iobb, "center": center_inside}

# How a detection claims a ground-truth box (see match_image).
MATCH_RULES = ("greedy", "coco", "voc", "luna16")


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by decreasing score, equal scores kept in input order.

    This is the order of both references: pycocotools' ``np.argsort(-scores,
    kind='mergesort')`` (per image, then over the concatenation of images) and the PASCAL
    VOC devkit's MATLAB ``sort(-confidence)`` (stable) over the detections in file order.
    """
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")


def match_image(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    overlap: OverlapFn,
    threshold: float,
    strict: bool = False,
    max_dets: Optional[int] = None,
    rule: str = "greedy",
):
    """Match the predictions of one image and class to its ground-truth boxes.

    Predictions are visited by decreasing score (:func:`score_order`: equal scores keep
    their input order), at most ``max_dets`` of them. A GT box is eligible for a
    prediction when their overlap is >= ``threshold`` (> when ``strict``). ``rule``:

    - ``"voc"``: the PASCAL VOC devkit (``VOCevaldet.m``; the ``map-boxes`` package): the
      prediction goes to its highest-overlap GT box (the first on ties) whether or not that
      box is taken; eligible and not taken -> true positive, else false positive.
    - ``"coco"``: pycocotools' ``COCOeval.evaluateImg``: the prediction takes the eligible
      GT box of highest overlap among those not yet taken, the *last* in GT order on ties.
    - ``"greedy"``: as ``"coco"`` but the first on ties.

    Every rule matches a GT box at most once, so a duplicate is a false positive. Returns
    ``(scores, tp)`` of the visited predictions, in visiting order. (The LUNA16 rule, where
    duplicates are ignored, is :func:`lesion_hits`.)
    """
    if rule not in ("greedy", "coco", "voc"):
        raise ValueError(f"unknown matching rule {rule!r}: expected 'greedy', 'coco' or 'voc'")
    order = score_order(pred_scores)
    if max_dets is not None:
        order = order[:max_dets]
    scores = pred_scores[order]
    tp = np.zeros(len(order), dtype=bool)
    if len(order) == 0 or len(gt_boxes) == 0:
        return scores, tp
    ov = overlap(pred_boxes[order], gt_boxes)
    eligible = ov > threshold if strict else ov >= threshold
    free = np.ones(len(gt_boxes), dtype=bool)
    if rule == "voc":
        best = np.argmax(ov, axis=1)
        for i, j in enumerate(best):
            if eligible[i, j] and free[j]:
                free[j] = False
                tp[i] = True
        return scores, tp
    last = len(gt_boxes) - 1
    for i in range(len(order)):
        candidates = eligible[i] & free
        if candidates.any():
            values = np.where(candidates, ov[i], -np.inf)
            j = last - int(np.argmax(values[::-1])) if rule == "coco" else int(np.argmax(values))
            free[j] = False
            tp[i] = True
    return scores, tp


def lesion_hits(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    overlap: OverlapFn,
    threshold: float,
    strict: bool = False,
):
    """The LUNA16 / CAMELYON16 rule (MONAI's ``compute_fp_tp_probs``) for one image and class.

    A prediction that hits (overlap >= ``threshold``, > when ``strict``) any GT lesion is
    not a false positive; each lesion hit is found with the highest score among the
    predictions hitting it; further hits of a found lesion are ignored (neither TP nor FP).
    Returns ``(scores, tp)``: one entry per false positive (``tp`` False, in visiting
    order) followed by one per lesion found (``tp`` True, its score).
    """
    order = score_order(pred_scores)
    scores = pred_scores[order]
    if len(order) == 0 or len(gt_boxes) == 0:
        return scores, np.zeros(len(order), dtype=bool)
    ov = overlap(pred_boxes[order], gt_boxes)
    hits = ov > threshold if strict else ov >= threshold
    fp = ~hits.any(axis=1)
    found = hits.any(axis=0)
    lesion_scores = np.where(hits, scores[:, None], -np.inf).max(axis=0)[found]
    return np.r_[scores[fp], lesion_scores], np.r_[np.zeros(int(fp.sum()), dtype=bool), np.ones(len(lesion_scores), dtype=bool)]


def match_detections(
    images: Sequence[ImageBoxes],
    num_classes: int,
    overlap: str = "iou",
    threshold: float = 0.5,
    strict: bool = False,
    max_dets: Optional[int] = None,
    rule: str = "greedy",
    image_order: Optional[Sequence[int]] = None,
) -> List[Matches]:
    """Match predictions to GT per image and class; one :class:`Matches` per class index
    ``0..num_classes-1``.

    ``overlap`` names an entry of :data:`OVERLAPS` ("iou", "iobb", "center") or is a
    callable ``(pred (P,4), gt (G,4)) -> (P,G)``. ``max_dets`` limits the predictions per
    image and class (COCO's ``maxDets``; not used by "luna16"). ``rule`` is one of
    :data:`MATCH_RULES`: "greedy", "coco", "voc" (see :func:`match_image`) or "luna16"
    (see :func:`lesion_hits`). The entries are concatenated image by image in
    ``image_order`` (positions in ``images``; default: as given), which decides the order of
    tied scores in the curves (e.g. pycocotools goes by sorted image id). Raises
    ValueError for a class index outside ``0..num_classes-1`` or an unknown rule.
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"unknown matching rule {rule!r}: expected one of {list(MATCH_RULES)}")
    fn = OVERLAPS[overlap] if isinstance(overlap, str) else overlap
    scores: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    flags: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    where: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    gt_per_image = np.zeros((num_classes, len(images)), dtype=np.int64)
    for pos in range(len(images)) if image_order is None else image_order:
        image = images[pos]
        for c in np.union1d(image.gt_classes, image.pred_classes):
            c = int(c)
            if not 0 <= c < num_classes:
                raise ValueError(f"image {image.image_id}: class index {c} outside 0..{num_classes - 1}")
            gt = image.gt_boxes[image.gt_classes == c]
            keep = image.pred_classes == c
            if rule == "luna16":
                s, tp = lesion_hits(image.pred_boxes[keep], image.pred_scores[keep], gt, fn, threshold, strict)
            else:
                s, tp = match_image(
                    image.pred_boxes[keep], image.pred_scores[keep], gt, fn, threshold, strict, max_dets, rule
                )
            gt_per_image[c, pos] = len(gt)
            scores[c].append(s)
            flags[c].append(tp)
            where[c].append(np.full(len(s), pos, dtype=np.int64))
    return [
        Matches(
            np.concatenate(scores[c]) if scores[c] else np.zeros(0),
            np.concatenate(flags[c]) if flags[c] else np.zeros(0, dtype=bool),
            int(gt_per_image[c].sum()),
            len(images),
            np.concatenate(where[c]) if where[c] else np.zeros(0, dtype=np.int64),
            gt_per_image[c],
        )
        for c in range(num_classes)
    ]


def _weighted_cumsum(values: np.ndarray, weights: Optional[np.ndarray]) -> np.ndarray:
    if weights is None:
        return np.cumsum(values)
    return np.cumsum(weights * values, axis=-1)


def cumulative_counts(scores: np.ndarray, tp: np.ndarray, group_ties: bool = True, weights=None):
    """Cumulative TP and FP counts, highest score first (stable: see :func:`score_order`).

    ``group_ties=True``: one point per distinct score, so predictions with equal scores
    enter together and the result does not depend on their order (a threshold sweep:
    FROC, ROC, scikit-learn's ``average_precision_score``). ``group_ties=False``: one point
    per prediction, ties in input order (pycocotools' ``accumulate`` and the VOC devkit).
    ``weights``: optional (E,) or (B, E) non-negative weights per prediction (bootstrap
    resamples); the counts are then weighted sums, of shape (B, points).
    Returns ``(tp, fp, thresholds)``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    order = score_order(scores)
    scores, tp = scores[order], tp[order]
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)[..., order]
    if group_ties:
        last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    else:
        last = np.ones(len(scores), dtype=bool)
    ctp = _weighted_cumsum(tp, weights)[..., last]
    cfp = _weighted_cumsum(~tp, weights)[..., last]
    return ctp, cfp, scores[last]


def precision_recall(scores: np.ndarray, tp: np.ndarray, num_gt, group_ties: bool = True, weights=None):
    """Precision and recall at each point of :func:`cumulative_counts` (same arguments).

    ``num_gt`` is a count, or (B,) counts with (B, E) ``weights``. Precision is 0 before
    any prediction counts; recall is NaN where ``num_gt`` is 0.
    Returns ``(precision, recall, thresholds)``.
    """
    ctp, cfp, thresholds = cumulative_counts(scores, tp, group_ties, weights)
    precision = np.divide(ctp, ctp + cfp, out=np.zeros(np.shape(ctp)), where=(ctp + cfp) > 0)
    num_gt = np.asarray(num_gt, dtype=np.float64)
    if num_gt.ndim == 0:
        recall = ctp / num_gt if num_gt > 0 else np.full(np.shape(ctp), np.nan)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(num_gt[:, None] > 0, ctp / np.where(num_gt > 0, num_gt, 1)[:, None], np.nan)
    return precision, recall, thresholds


def average_precision(precision, recall, method: str = "voc"):
    """Area under a precision-recall curve (points ordered by increasing recall), in [0, 1].

    ``"voc"``: all-point interpolation of PASCAL VOC 2010+ (the devkit's ``VOCap.m``;
    ``map-boxes``' ``_compute_ap``): precision replaced by its running maximum from the
    right, summed over recall steps. ``"coco101"``: pycocotools' ``accumulate``: that
    envelope read at the first point reaching each of the 101 recall thresholds 0, .01 .. 1
    (0 past the last point), averaged. ``"step"``: no interpolation, sum of precision x
    recall step (scikit-learn's ``average_precision_score``). An empty curve gives 0; NaN
    recall (no ground truth) gives NaN. 1-D inputs give a float; 2-D inputs (B, points),
    e.g. bootstrap resamples, give a (B,) array, one value per row.
    Raises ValueError for an unknown method.
    """
    if method not in ("voc", "coco101", "step"):
        raise ValueError(f"unknown AP method {method!r}: expected 'voc', 'coco101' or 'step'")
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    single = precision.ndim == 1
    precision, recall = np.atleast_2d(precision), np.atleast_2d(recall)
    if method == "coco101":
        out = np.asarray([_coco101(p, r) for p, r in zip(precision, recall)], dtype=np.float64)
    else:
        if method == "voc" and precision.shape[1]:
            precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        out = np.sum(np.diff(recall, axis=1, prepend=0.0) * precision, axis=1)
    out[np.isnan(recall).any(axis=1)] = np.nan
    return float(out[0]) if single else out


def _coco101(precision: np.ndarray, recall: np.ndarray) -> float:
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
    values = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
    return float(np.mean(values))
