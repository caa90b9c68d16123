"""Losses of the image-level classifiers (``CXR.CLASSIFIER.LOSS``).

Multi-label (C independent labels, sigmoid): binary cross-entropy with logits, optionally
with a ``pos_weight`` per label, or the sigmoid focal loss; both masked by ``label_weights``
(0 = the label is ignored for that image, e.g. CheXpert's uncertain labels under the
``ignore`` policy). Single-label (one of C classes, softmax): cross-entropy with optional
class weights and label smoothing, or the softmax focal loss. Each focal loss equals its
cross-entropy counterpart at ``gamma`` 0 (and ``alpha`` < 0).

Focal loss: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
Detection", ICCV 2017: ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)``.
"""
import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss as _torchvision_sigmoid_focal_loss

from cxr_det.config import CLASSIFICATION_LOSSES, CLASSIFICATION_TASKS

__all__ = [
    "MultiLabelLoss",
    "SingleLabelLoss",
    "build_classification_loss",
    "masked_bce_with_logits",
    "masked_sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
]

logger = logging.getLogger(__name__)


def _masked_mean(losses: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """``sum(w * l) / sum(w)``; 0 (not NaN) when every weight is 0."""
    if weights is None:
        return losses.mean()
    total = (weights * losses).sum()
    return total / weights.sum().clamp(min=torch.finfo(losses.dtype).eps)


def _check_multi_label(logits, targets, weights):
    if logits.dim() != 2 or targets.shape != logits.shape:
        raise ValueError(f"multi-label loss: logits {tuple(logits.shape)} and labels {tuple(targets.shape)} "
                         "must both be (N, C)")
    if weights is not None and weights.shape != logits.shape:
        raise ValueError(f"multi-label loss: label_weights {tuple(weights.shape)} must be (N, C) = "
                         f"{tuple(logits.shape)}")


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor] = None,
                           pos_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the weighted elements.

    ``l_ij = -[p_j y_ij log s(x_ij) + (1 - y_ij) log(1 - s(x_ij))]`` (torch's
    ``binary_cross_entropy_with_logits``, ``p_j`` = ``pos_weight``, 1 when None), reduced to
    ``sum(w_ij l_ij) / sum(w_ij)``: with 0/1 weights the mean over the labels that count.

    Args:
        logits: float (N, C).
        targets: float (N, C) in [0, 1].
        weights: float (N, C) >= 0 (``label_weights``; 0 = ignored), None = all 1.
        pos_weight: float (C,) >= 0, the weight of each label's positives.

    Returns:
        A scalar; 0 when every weight is 0.
    """
    _check_multi_label(logits, targets, weights)
    losses = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    return _masked_mean(losses, weights)


def masked_sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor] = None,
                              alpha: float = -1.0, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017; torchvision's ``sigmoid_focal_loss``), averaged over
    the weighted elements like :func:`masked_bce_with_logits`.

    Args:
        logits: float (N, C).
        targets: float (N, C) in [0, 1].
        weights: float (N, C) >= 0, None = all 1.
        alpha: weight of the positives in (0, 1) (negatives ``1 - alpha``); < 0 = none.
        gamma: focusing parameter >= 0 (0 = BCE).

    Returns:
        A scalar; 0 when every weight is 0.
    """
    _check_multi_label(logits, targets, weights)
    losses = _torchvision_sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    return _masked_mean(losses, weights)


def _check_single_label(logits, labels, class_weights):
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"single-label loss: logits {tuple(logits.shape)} must be (N, C) and labels "
                         f"{tuple(labels.shape)} (N,)")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"single-label loss: labels {labels.tolist()} outside [0, {logits.shape[1]})")
    if class_weights is not None and class_weights.shape != logits.shape[1:]:
        raise ValueError(f"single-label loss: class weights {tuple(class_weights.shape)} must be (C,) = "
                         f"{tuple(logits.shape[1:])}")


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: Optional[torch.Tensor] = None,
                          label_smoothing: float = 0.0) -> torch.Tensor:
    """torch's ``F.cross_entropy`` with its class weights and label smoothing, mean reduction
    (with weights: ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, torch's weighted mean).

    Args:
        logits: float (N, C).
        labels: int64 (N,) in [0, C).
        class_weights: float (C,) >= 0, None = all 1.
        label_smoothing: in [0, 1): the target is ``(1 - e) one_hot + e / C``.

    Raises:
        ValueError: shapes that do not fit, or a label outside [0, C).
    """
    _check_single_label(logits, labels, class_weights)
    return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing)


def softmax_focal_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: Optional[torch.Tensor] = None,
                       gamma: float = 2.0) -> torch.Tensor:
    """Softmax focal loss, the multi-class form of Lin et al. 2017:
    ``l_i = -w_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}`` with ``p = softmax(logits)``,
    reduced as ``F.cross_entropy`` reduces (``sum_i l_i / sum_i w_{y_i}``), so that gamma 0
    gives exactly :func:`softmax_cross_entropy` without smoothing. The class weights play the
    role of Lin et al.'s ``alpha_t``.

    Args:
        logits: float (N, C).
        labels: int64 (N,) in [0, C).
        class_weights: float (C,) >= 0, None = all 1.
        gamma: focusing parameter >= 0.

    Returns:
        A scalar; 0 when the weights of every sample's class are 0.
    """
    _check_single_label(logits, labels, class_weights)
    log_pt = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    # 1 - p_t kept above 0: (1 - p_t)^gamma has an infinite slope at p_t = 1 for gamma < 1.
    modulator = (-torch.expm1(log_pt)).clamp(min=torch.finfo(log_pt.dtype).tiny) ** gamma
    weights = class_weights[labels] if class_weights is not None else torch.ones_like(log_pt)
    return _masked_mean(-modulator * log_pt, weights)


class MultiLabelLoss(nn.Module):
    """``"bce"`` (:func:`masked_bce_with_logits`) or ``"focal"`` (:func:`masked_sigmoid_focal_loss`).

    ``pos_weight`` (C,) is a non-persistent buffer: it follows the model's device and stays
    out of checkpoints (it lives in ``CXR.CLASSIFIER.POS_WEIGHT_VALUES``).
    """

    def __init__(self, kind: str = "bce", pos_weight: Optional[Sequence[float]] = None,
                 focal_alpha: float = -1.0, focal_gamma: float = 2.0):
        super().__init__()
        if kind not in ("bce", "focal"):
            raise ValueError(f"multi-label loss must be 'bce' or 'focal', got {kind!r}")
        if kind == "focal" and pos_weight is not None:
            raise ValueError("CXR.CLASSIFIER.POS_WEIGHT_VALUES weight BCE; the focal loss weighs positives by "
                             "FOCAL_ALPHA: set POS_WEIGHT 'none' and POS_WEIGHT_VALUES [] with LOSS 'focal'")
        self.kind = kind
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32), False
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor] = None):
        """logits, targets, weights float (N, C) -> scalar."""
        if self.kind == "focal":
            return masked_sigmoid_focal_loss(logits, targets, weights, self.focal_alpha, self.focal_gamma)
        return masked_bce_with_logits(logits, targets, weights, self.pos_weight)


class SingleLabelLoss(nn.Module):
    """``"ce"`` (:func:`softmax_cross_entropy`) or ``"focal"`` (:func:`softmax_focal_loss`).

    ``class_weights`` (C,) is a non-persistent buffer (it lives in
    ``CXR.CLASSIFIER.CLASS_WEIGHT_VALUES``).
    """

    def __init__(self, kind: str = "ce", class_weights: Optional[Sequence[float]] = None,
                 label_smoothing: float = 0.0, focal_gamma: float = 2.0):
        super().__init__()
        if kind not in ("ce", "focal"):
            raise ValueError(f"single-label loss must be 'ce' or 'focal', got {kind!r}")
        if kind == "focal" and label_smoothing:
            raise ValueError("CXR.CLASSIFIER.LABEL_SMOOTHING applies to the cross-entropy (LOSS 'ce'), not to 'focal'")
        self.kind = kind
        self.label_smoothing = float(label_smoothing)
        self.focal_gamma = float(focal_gamma)
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32), False
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor):
        """logits float (N, C), labels int64 (N,) -> scalar."""
        if self.kind == "focal":
            return softmax_focal_loss(logits, labels, self.class_weights, self.focal_gamma)
        return softmax_cross_entropy(logits, labels, self.class_weights, self.label_smoothing)


def _weights(values, key, num_classes):
    """A config list of per-class weights as floats (None when empty), checked."""
    if not values:
        return None
    values = [float(v) for v in values]
    if len(values) != num_classes:
        raise ValueError(f"CXR.CLASSIFIER.{key} has {len(values)} values but the model has {num_classes} classes")
    if any(not (v >= 0 and v != float("inf")) for v in values):
        raise ValueError(f"CXR.CLASSIFIER.{key} must be finite and >= 0, got {values}")
    return values


def build_classification_loss(cfg, task: str, num_classes: int) -> nn.Module:
    """The loss ``cfg.CXR.CLASSIFIER`` asks for: ``LOSS`` ("auto" = "bce" for multi_label,
    "ce" for single_label), ``POS_WEIGHT_VALUES`` / ``CLASS_WEIGHT_VALUES`` (C values each, or
    empty), ``LABEL_SMOOTHING``, ``FOCAL_GAMMA``, ``FOCAL_ALPHA``.

    Raises:
        ValueError: an unknown task or loss, a loss of the other task ("ce" for multi_label,
            "bce" for single_label), weights of the other task or of another length than C,
            out-of-range smoothing, gamma or alpha, or FOCAL_ALPHA for a single-label task of
            more than 2 classes.
    """
    node = cfg.CXR.CLASSIFIER
    if task not in CLASSIFICATION_TASKS:
        raise ValueError(f"classification task must be one of {CLASSIFICATION_TASKS}, got {task!r}")
    kind = node.LOSS
    if kind not in CLASSIFICATION_LOSSES:
        raise ValueError(f"CXR.CLASSIFIER.LOSS must be one of {CLASSIFICATION_LOSSES}, got {kind!r}")
    if kind == "auto":
        kind = "bce" if task == "multi_label" else "ce"
    if node.FOCAL_GAMMA < 0:
        raise ValueError(f"CXR.CLASSIFIER.FOCAL_GAMMA must be >= 0, got {node.FOCAL_GAMMA}")
    if node.FOCAL_ALPHA > 1:
        raise ValueError(f"CXR.CLASSIFIER.FOCAL_ALPHA must be in [0, 1] (< 0 = off), got {node.FOCAL_ALPHA}")
    if not 0 <= node.LABEL_SMOOTHING < 1:
        raise ValueError(f"CXR.CLASSIFIER.LABEL_SMOOTHING must be in [0, 1), got {node.LABEL_SMOOTHING}")
    pos_weight = _weights(node.POS_WEIGHT_VALUES, "POS_WEIGHT_VALUES", num_classes)
    class_weights = _weights(node.CLASS_WEIGHT_VALUES, "CLASS_WEIGHT_VALUES", num_classes)
    if task == "multi_label":
        if kind == "ce":
            raise ValueError("CXR.CLASSIFIER.LOSS 'ce' is for single_label tasks; multi_label: 'bce' or 'focal'")
        if class_weights is not None or node.LABEL_SMOOTHING:
            raise ValueError("CXR.CLASSIFIER.CLASS_WEIGHT_VALUES and LABEL_SMOOTHING are for single_label tasks; "
                             "multi_label weighs positives with POS_WEIGHT_VALUES")
        if pos_weight is None and node.POS_WEIGHT != "none":
            logger.warning("CXR.CLASSIFIER.POS_WEIGHT is %r but POS_WEIGHT_VALUES is empty: no pos_weight "
                           "(they are computed from DATASETS.TRAIN when training starts)", node.POS_WEIGHT)
        return MultiLabelLoss(kind, pos_weight, node.FOCAL_ALPHA, node.FOCAL_GAMMA)
    if kind == "bce":
        raise ValueError("CXR.CLASSIFIER.LOSS 'bce' is for multi_label tasks; single_label: 'ce' or 'focal'")
    if pos_weight is not None:
        raise ValueError("CXR.CLASSIFIER.POS_WEIGHT_VALUES is for multi_label tasks; single_label: CLASS_WEIGHT_VALUES")
    if class_weights is None and node.CLASS_WEIGHT != "none":
        logger.warning("CXR.CLASSIFIER.CLASS_WEIGHT is %r but CLASS_WEIGHT_VALUES is empty: no class weights "
                       "(they are computed from DATASETS.TRAIN when training starts)", node.CLASS_WEIGHT)
    if kind == "focal" and node.FOCAL_ALPHA >= 0:
        if num_classes != 2:
            raise ValueError(
                "CXR.CLASSIFIER.FOCAL_ALPHA is the weight of the positive class (class 1) of a binary task; "
                f"with {num_classes} classes weigh them with CLASS_WEIGHT_VALUES and set FOCAL_ALPHA -1"
            )
        if class_weights is not None:
            raise ValueError("CXR.CLASSIFIER.FOCAL_ALPHA and CLASS_WEIGHT_VALUES both weigh the classes: set one")
        class_weights = [1.0 - float(node.FOCAL_ALPHA), float(node.FOCAL_ALPHA)]
    return SingleLabelLoss(kind, class_weights, node.LABEL_SMOOTHING, node.FOCAL_GAMMA)
