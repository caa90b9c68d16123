"""Data loaders of image-level classification, on detectron2's detection loaders.

detectron2's ``build_detection_train_loader`` / ``build_detection_test_loader`` batch any
dataset dicts through any mapper; what differs for classification is done here: the dicts
carry no ``annotations`` (so no empty-image filtering and no box histogram), the mapper is
:class:`~cxr_det.data.classification_mapper.ClassificationDatasetMapper`, and the
imbalance samplers of :mod:`cxr_det.data.samplers` are selected by
``DATALOADER.SAMPLER_TRAIN``.
"""
import logging

from detectron2.data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler

from cxr_det.data.classification_mapper import ClassificationDatasetMapper
from cxr_det.data.samplers import ClassBalancedSampler, image_repeat_factors, label_repeat_factors

__all__ = [
    "CLASSIFICATION_SAMPLERS",
    "build_classification_train_sampler",
    "build_classification_train_loader",
    "build_classification_test_loader",
]

logger = logging.getLogger(__name__)

CLASSIFICATION_SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler", "ClassBalancedSampler")


def _label_name(class_names, index):
    return class_names[index] if class_names and 0 <= index < len(class_names) else str(index)


def build_classification_train_sampler(cfg, dataset_dicts, seed=None):
    """The training sampler ``DATALOADER.SAMPLER_TRAIN`` names, for classification dicts.

    - ``"TrainingSampler"``: detectron2's, every image once per pass in a random order.
    - ``"RepeatFactorTrainingSampler"``: detectron2's, with image-level repeat factors from
      the labels (:func:`cxr_det.data.samplers.image_repeat_factors`,
      ``DATALOADER.REPEAT_THRESHOLD``); logs the oversampled labels and the effective
      epoch size (the sum of the factors).
    - ``"ClassBalancedSampler"``: :class:`cxr_det.data.samplers.ClassBalancedSampler`, for
      single-label dicts (``label``) only.

    ``seed``: the sampler's stream seed (None: detectron2's shared random seed).

    Raises ValueError for another sampler name (detectron2's ``RandomSubsetTrainingSampler``
    included), for ``ClassBalancedSampler`` on multi-label data, and the samplers' errors.
    """
    name = cfg.DATALOADER.SAMPLER_TRAIN
    n = len(dataset_dicts)
    logger.info(f"Using training sampler {name} on {n} images")
    if name == "TrainingSampler":
        return TrainingSampler(n, seed=seed)
    if name == "RepeatFactorTrainingSampler":
        threshold = cfg.DATALOADER.REPEAT_THRESHOLD
        factors = image_repeat_factors(dataset_dicts, threshold)
        class_names = _class_names(cfg)
        repeated = {
            _label_name(class_names, c): round(r, 3)
            for c, r in label_repeat_factors(dataset_dicts, threshold).items()
            if r > 1.0
        }
        logger.info(
            f"RepeatFactorTrainingSampler (REPEAT_THRESHOLD {threshold}): label repeat factors > 1: "
            f"{repeated or 'none'}; {int((factors > 1).sum())} of {n} images repeated; effective epoch "
            f"size {float(factors.sum()):.1f} images (x{float(factors.sum()) / n:.2f})"
        )
        return RepeatFactorTrainingSampler(factors, seed=seed)
    if name == "ClassBalancedSampler":
        labels = []
        for i, record in enumerate(dataset_dicts):
            if record.get("label") is None:
                what = "multi-label ('labels')" if record.get("labels") is not None else "unlabelled"
                raise ValueError(
                    f"DATALOADER.SAMPLER_TRAIN ClassBalancedSampler needs single-label data (a 'label' per image); "
                    f"image {record.get('image_id', i)!r} of DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} is {what}. "
                    "Use RepeatFactorTrainingSampler for multi-label data"
                )
            labels.append(record["label"])
        sampler = ClassBalancedSampler(labels, seed=seed)
        class_names = _class_names(cfg)
        counts = {_label_name(class_names, c): int(k) for c, k in enumerate(sampler.class_counts.tolist()) if k}
        logger.info(f"ClassBalancedSampler: images per class {counts}, each class drawn equally often")
        return sampler
    raise ValueError(
        f"DATALOADER.SAMPLER_TRAIN {name!r} is not a classification training sampler; "
        f"use one of {CLASSIFICATION_SAMPLERS}"
    )


def _class_names(cfg):
    if not cfg.DATASETS.TRAIN:
        return None
    return MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", None)


def build_classification_train_loader(cfg, mapper=None):
    """detectron2's ``build_detection_train_loader`` over ``DATASETS.TRAIN`` for classification.

    Dicts come from ``get_detection_dataset_dicts(DATASETS.TRAIN, filter_empty=False)``; the
    mapper defaults to ``ClassificationDatasetMapper(cfg, is_train=True)``; the sampler is
    :func:`build_classification_train_sampler`'s. Aspect-ratio grouping is off for square
    inputs (``CXR.CLASSIFIER.INPUT_SIZE`` > 0) and follows ``DATALOADER.ASPECT_RATIO_GROUPING``
    otherwise. Returns an infinite iterable of lists of ``SOLVER.IMS_PER_BATCH`` / world-size
    mapped dicts.

    Raises ValueError when ``DATASETS.TRAIN`` is empty, and the sampler's errors.
    """
    if not cfg.DATASETS.TRAIN:
        raise ValueError("build_classification_train_loader: DATASETS.TRAIN is empty")
    dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
    if mapper is None:
        mapper = ClassificationDatasetMapper(cfg, True)
    sampler = build_classification_train_sampler(cfg, dataset)
    return build_detection_train_loader(
        dataset=dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=bool(cfg.DATALOADER.ASPECT_RATIO_GROUPING) and int(cfg.CXR.CLASSIFIER.INPUT_SIZE) == 0,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def build_classification_test_loader(cfg, dataset_name, mapper=None):
    """detectron2's ``build_detection_test_loader`` over ``dataset_name`` (a name or list of
    names) for classification: every image once, batch size 1, in dataset order, the mapper
    defaulting to ``ClassificationDatasetMapper(cfg, is_train=False)``."""
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    dataset = get_detection_dataset_dicts(names, filter_empty=False)
    if mapper is None:
        mapper = ClassificationDatasetMapper(cfg, False)
    return build_detection_test_loader(dataset=dataset, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)
