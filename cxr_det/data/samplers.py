"""Training samplers against class imbalance in image-level classification.

Two remedies, chosen by ``DATALOADER.SAMPLER_TRAIN``
(:func:`cxr_det.data.classification_loader.build_classification_train_sampler`):

- ``"RepeatFactorTrainingSampler"``: detectron2's sampler fed image-level repeat factors
  computed from the labels by :func:`image_repeat_factors` (the LVIS rule, Gupta et al.,
  "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019, appendix B.2,
  which detectron2's ``repeat_factors_from_category_frequency`` applies to boxes).
- ``"ClassBalancedSampler"`` (:class:`ClassBalancedSampler`, single-label data): images drawn
  with replacement, each with probability proportional to 1 / (images of its class), so
  that every class is expected equally often (what PyTorch's ``WeightedRandomSampler`` does
  with inverse class frequencies, as an infinite stream sharded across ranks).

Detection datasets (REFLACX, VinDr-CXR) use detectron2's box-level
``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency`` unchanged, through
detectron2's own ``build_detection_train_loader`` and ``DATALOADER.SAMPLER_TRAIN``.
"""
import itertools
import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data.sampler import Sampler

from detectron2.utils import comm

__all__ = [
    "positive_labels",
    "label_repeat_factors",
    "image_repeat_factors",
    "ClassBalancedSampler",
]


def _image_name(record, index):
    return record.get("image_id", record.get("file_name", f"#{index}"))


def positive_labels(record, index=0) -> set:
    """The label indices an image is positive for.

    Multi-label dicts (``labels``, ``label_weights``): each ``c`` with ``labels[c] >= 0.5``
    and ``label_weights[c] > 0`` (an ignored label is neither positive nor negative).
    Single-label dicts (``label``): ``{label}``.

    Raises ValueError naming the image (``image_id``, else ``file_name``, else ``#index``)
    when the dict has neither ``labels`` nor ``label``, or ``labels`` and ``label_weights``
    differ in length.
    """
    if record.get("labels") is not None:
        labels = np.asarray(record["labels"], dtype=np.float64).reshape(-1)
        weights = record.get("label_weights")
        weights = np.ones_like(labels) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.shape != labels.shape:
            raise ValueError(
                f"image {_image_name(record, index)!r}: {labels.size} labels but {weights.size} label_weights"
            )
        return set(np.flatnonzero((labels >= 0.5) & (weights > 0)).tolist())
    if record.get("label") is not None:
        return {int(record["label"])}
    raise ValueError(
        f"image {_image_name(record, index)!r} has neither 'labels' (multi-label) nor 'label' (single-label): "
        "image-level repeat factors need classification dataset dicts (detection dicts use detectron2's "
        "RepeatFactorTrainingSampler.repeat_factors_from_category_frequency)"
    )


def label_repeat_factors(dataset_dicts, repeat_thresh: float) -> dict:
    """Per-label repeat factors ``r_c = max(1, sqrt(t / f_c))`` of the LVIS rule.

    ``f_c`` is the fraction of all images (in 0..1) that are positive for label ``c``
    (:func:`positive_labels`); ``t`` = ``repeat_thresh`` (>= 0; a label in fewer than a
    fraction ``t`` of the images is oversampled, one at ``t / 4`` twice as often). Returns
    ``{label index: r_c}`` for the labels with at least one positive image.

    Raises ValueError for an empty dataset, a negative threshold, or a dict without targets.
    """
    repeat_thresh = float(repeat_thresh)
    if not repeat_thresh >= 0:
        raise ValueError(f"repeat threshold (DATALOADER.REPEAT_THRESHOLD) must be >= 0, got {repeat_thresh}")
    if len(dataset_dicts) == 0:
        raise ValueError("image_repeat_factors: the dataset is empty")
    counts = Counter()
    for i, record in enumerate(dataset_dicts):
        counts.update(positive_labels(record, i))
    n = len(dataset_dicts)
    return {c: max(1.0, math.sqrt(repeat_thresh / (k / n))) for c, k in sorted(counts.items())}


def image_repeat_factors(dataset_dicts, repeat_thresh: float) -> torch.Tensor:
    """Image-level repeat factors of classification dataset dicts, for detectron2's
    ``RepeatFactorTrainingSampler(repeat_factors, seed=...)``.

    The image's factor is the largest ``r_c`` (:func:`label_repeat_factors`) over the labels it
    is positive for, 1 when it has none (the LVIS rule, as detectron2's
    ``repeat_factors_from_category_frequency`` applies it to the categories of boxes).

    Returns a float32 tensor of shape (N,), values >= 1; its sum is the expected number of
    images in one pass of the sampler. Raises as :func:`label_repeat_factors`.
    """
    per_label = label_repeat_factors(dataset_dicts, repeat_thresh)
    factors = [max((per_label[c] for c in positive_labels(r, i)), default=1.0) for i, r in enumerate(dataset_dicts)]
    return torch.tensor(factors, dtype=torch.float32)


class ClassBalancedSampler(Sampler):
    """Infinite stream of dataset indices in which every class is expected equally often.

    Each draw picks image ``i`` with probability proportional to ``1 / n(label_i)``, ``n(c)``
    being the number of images of class ``c``: with replacement (``torch.multinomial``), in
    chunks of ``len(labels)`` draws. Like detectron2's ``TrainingSampler``, the stream is one
    sequence determined by ``seed`` (shared by all ranks; None = detectron2's shared random
    seed) and rank ``r`` of ``W`` (:mod:`detectron2.utils.comm`) yields its elements
    ``r, r + W, r + 2W, ...``, so the shards are disjoint positions of the same stream.

    Args:
        labels: class index (int >= 0) of each image, length N >= 1 (single-label data).
        seed: the stream's seed.

    Raises ValueError for an empty ``labels`` or an entry that is not a non-negative int.
    """

    def __init__(self, labels: Sequence[int], seed: Optional[int] = None):
        labels = list(labels)
        if not labels:
            raise ValueError("ClassBalancedSampler: no labels (the dataset is empty)")
        for i, label in enumerate(labels):
            if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or label < 0:
                raise ValueError(f"ClassBalancedSampler: labels[{i}] = {label!r} is not a class index (int >= 0)")
        labels = torch.as_tensor(labels, dtype=torch.int64)
        counts = torch.bincount(labels)
        self.class_counts = counts
        self.weights = 1.0 / counts[labels].double()
        if seed is None:
            seed = comm.shared_random_seed()
        self._seed = int(seed)
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=g).tolist()
