"""Dataset mapper for image-level classification: one X-ray in, ``image`` and label tensors out."""
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from cxr_det.data.albumentations import apply_albumentations, build_albumentations
from cxr_det.data.clinical.pipeline import load_featurizer
from cxr_det.data.image_io import read_image, read_options_from_config

__all__ = ["ClassificationDatasetMapper", "build_classification_augmentation", "clinical_arrays"]


def build_classification_augmentation(cfg, is_train: bool):
    """detectron2 augmentations of a classifier's input: the resize, then (training) the flip.

    ``CXR.CLASSIFIER.INPUT_SIZE`` s > 0: ``T.Resize((s, s))``, the classifiers' square input
    (aspect ratio not kept, as torchvision's ``Resize((s, s))`` in CheXpert training code);
    0: detectron2's ``build_augmentation`` (``ResizeShortestEdge`` from ``INPUT.MIN_SIZE_*`` /
    ``MAX_SIZE_*``). In training a ``T.RandomFlip`` follows ``INPUT.RANDOM_FLIP`` exactly as in
    detectron2 (``"horizontal"``, ``"vertical"`` or ``"none"``). detectron2's default is
    ``"horizontal"``, which puts the heart on the right of a chest X-ray: the CXR configs set
    ``"none"``.
    """
    size = int(cfg.CXR.CLASSIFIER.INPUT_SIZE)
    if size < 0:
        raise ValueError(f"CXR.CLASSIFIER.INPUT_SIZE must be >= 0 (0 = INPUT.MIN_SIZE_*), got {size}")
    if size == 0:
        return utils.build_augmentation(cfg, is_train)
    augs = [T.Resize((size, size))]
    if is_train and cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal", vertical=cfg.INPUT.RANDOM_FLIP == "vertical")
        )
    return augs


class ClassificationDatasetMapper:
    """Turn a classification dataset dict into model inputs.

    Reads the X-ray (PNG, JPEG or DICOM, :func:`cxr_det.data.image_io.read_image`) into
    ``INPUT.FORMAT``; in training applies the configured albumentations transforms
    (``CXR.INPUT.ALBUMENTATIONS``, image only), then the detectron2 augmentations of
    :func:`build_classification_augmentation` (square resize, flip per ``INPUT.RANDOM_FLIP``).

    The returned dict is a shallow copy of the input (the input is never modified) with:

    - ``image``: uint8 tensor (C_in, H, W), C_in 3 for "BGR"/"RGB", 1 for "L";
    - ``height`` / ``width``: the file's own size in pixels (checked when the dict has them);
    - ``labels`` / ``label_weights`` (multi-label): float32 NumPy arrays (C,); a dict with
      ``labels`` but no ``label_weights`` gets weights of 1;
    - ``label`` (single-label): int64 NumPy 0-d array;
    - ``clinical`` (with a clinical featurizer): the dict of ``numeric`` float32 (n,),
      ``missing`` float32 (n,) and ``categorical`` int64 (m,) arrays of :func:`clinical_arrays`
      (the detection mapper's values, as arrays rather than tensors: see there why).

    Targets that a dict lacks or holds as None (unlabelled images at inference) are absent
    from the output; other keys
    pass through as they are (shared with the input dict, not copied).

    Raises FileNotFoundError naming a missing image file, the readers' errors for undecodable
    ones, detectron2's ``SizeMismatchError`` when ``height``/``width`` disagree with the file,
    and ValueError naming the ``image_id`` for malformed targets (``labels`` not 1-D,
    ``labels`` and ``label_weights`` of different lengths, ``label`` not a non-negative int).
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations,
        image_format: str,
        albumentations=None,
        clinical_featurizer=None,
        read_options=None,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.albumentations = albumentations
        self.clinical_featurizer = clinical_featurizer
        self.read_options = dict(read_options or {})
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            f"[ClassificationDatasetMapper] {mode}: augmentations {augmentations}, albumentations {albumentations}"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_classification_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "albumentations": build_albumentations(cfg.CXR.INPUT.ALBUMENTATIONS) if is_train else None,
            "clinical_featurizer": load_featurizer(cfg) if cfg.CXR.CLINICAL.ENABLED else None,
            "read_options": read_options_from_config(cfg),
        }

    def __call__(self, dataset_dict):
        dataset_dict = dict(dataset_dict)
        _targets_to_arrays(dataset_dict)
        if self.clinical_featurizer is not None:
            dataset_dict["clinical"] = clinical_arrays(self.clinical_featurizer, dataset_dict.get("clinical"))
        image = read_image(dataset_dict["file_name"], self.image_format, **self.read_options)
        utils.check_image_size(dataset_dict, image)

        if self.is_train and self.albumentations is not None:
            image, _ = apply_albumentations(self.albumentations, image, [])
            if image.ndim == 2:  # some OpenCV-backed transforms drop a single channel axis
                image = image[:, :, None]

        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        chw = np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))
        dataset_dict["image"] = torch.as_tensor(chw if chw.flags.writeable else chw.copy())
        return dataset_dict


def clinical_arrays(featurizer, raw):
    """The model's ``clinical`` input for one image as NumPy arrays: ``numeric`` float32 (n,),
    ``missing`` float32 (n,), ``categorical`` int64 (m,) (``raw`` None: no record at all).

    NumPy rather than torch: a data-loader worker sends each tensor of a batch through its own
    shared-memory segment, which for a classifier's 32 small per-image vectors cost more than
    the model's step (measured: 87 vs 44 ms per batch of 32 with and without clinical tensors);
    arrays travel inside the pickled batch. The model converts them with ``torch.as_tensor``.
    """
    numeric, missing, categorical = featurizer.transform(raw)
    return {
        "numeric": np.asarray(numeric, dtype=np.float32),
        "missing": np.asarray(missing, dtype=np.float32),
        "categorical": np.asarray(categorical, dtype=np.int64),
    }


def _targets_to_arrays(record):
    """Replace ``labels`` / ``label_weights`` (float32 (C,)) and ``label`` (int64, 0-d) of
    ``record`` (in place) by NumPy arrays (see :func:`clinical_arrays` for why not tensors)."""
    image_id = record.get("image_id", record.get("file_name"))
    for key in ("labels", "label_weights", "label"):
        if key in record and record[key] is None:
            del record[key]
    if "labels" in record:
        labels = _float_vector(record["labels"], "labels", image_id)
        weights = record.get("label_weights")
        if weights is None:
            weights = np.ones_like(labels)
        else:
            weights = _float_vector(weights, "label_weights", image_id)
            if weights.shape != labels.shape:
                raise ValueError(
                    f"image_id {image_id!r}: 'labels' has {labels.size} values but 'label_weights' has "
                    f"shape {tuple(weights.shape)}; they must have one weight per label"
                )
        record["labels"], record["label_weights"] = labels, weights
    elif "label_weights" in record:
        raise ValueError(f"image_id {image_id!r}: 'label_weights' without 'labels'")
    if "label" in record:
        label = record["label"]
        if isinstance(label, torch.Tensor):
            label = label.item() if label.numel() == 1 else label
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or label < 0:
            raise ValueError(f"image_id {image_id!r}: 'label' must be a class index (int >= 0), got {label!r}")
        record["label"] = np.asarray(int(label), dtype=np.int64)


def _float_vector(values, key, image_id):
    """``values`` as a float32 array of shape (C,); ValueError naming the image and key otherwise."""
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"image_id {image_id!r}: {key!r} must be a list of numbers ({e})") from e
    if array.ndim != 1:
        raise ValueError(f"image_id {image_id!r}: {key!r} must be a flat list of C values, got shape {array.shape}")
    return array.copy()  # the dataset dict's own list/array is never shared
