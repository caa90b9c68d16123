"""Image-level chest X-ray classifiers as detectron2 meta-architectures.

:class:`ImageClassifier`: backbone (``MODEL.BACKBONE.NAME``: detectron2's
``build_resnet_backbone`` or :func:`~cxr_det.modeling.backbone.build_torchvision_classifier_backbone`)
-> one feature map (``CXR.CLASSIFIER.IN_FEATURE``) -> global average or max pooling -> dropout
-> linear head with C outputs. Multi-label tasks score each label with a sigmoid, single-label
tasks the classes with a softmax (binary = 2 classes, class 1 the positive one); the losses are
those of :mod:`cxr_det.modeling.classification_losses`.

:class:`ClinicalImageClassifier` adds the clinical data of each input (``"clinical"``, encoded
by :class:`~cxr_det.modeling.clinical_encoder.ClinicalEncoder` as for the detectors):
``CXR.FUSION.SPATIAL`` fuses the vector with the pooled feature map (concat / add / FiLM,
:class:`~cxr_det.modeling.fusion.ClinicalSpatialFusion`), ``CXR.FUSION.POOLED`` concatenates it
to the pooled features before the head. With neither it is :class:`ImageClassifier`: same
parameters, same outputs.

Inputs: the dicts of :class:`~cxr_det.data.classification_mapper.ClassificationDatasetMapper`
(``image`` uint8 (C_in, H, W) in ``INPUT.FORMAT``; training targets ``labels`` float (C,) and
``label_weights`` float (C,) for multi_label, ``label`` int64 for single_label). Outputs: in
training ``{"loss_cls": scalar}``, in inference one ``{"scores": (C,) probabilities,
"logits": (C,)}`` per input.
"""
import logging
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList

from cxr_det.config import CLASSIFICATION_TASKS
from cxr_det.modeling.backbone.torchvision_classifier import convert_first_conv_to_one_channel
from cxr_det.modeling.classification_losses import build_classification_loss
from cxr_det.modeling.meta_arch import ClinicalFusionMixin
from cxr_det.modeling.scratch import RESNET_BACKBONES

__all__ = ["ImageClassifier", "ClinicalImageClassifier", "POOLINGS"]

logger = logging.getLogger(__name__)

# Values of CXR.CLASSIFIER.POOLING.
POOLINGS = ("avg", "max")


def _input_channels(cfg) -> int:
    """``CXR.CLASSIFIER.IN_CHANNELS``, checked against the pixel statistics and ``INPUT.FORMAT``."""
    channels = cfg.CXR.CLASSIFIER.IN_CHANNELS
    if channels not in (1, 3):
        raise ValueError(f"CXR.CLASSIFIER.IN_CHANNELS must be 1 or 3, got {channels}")
    mean, std = list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"CXR.CLASSIFIER.IN_CHANNELS is {channels} but MODEL.PIXEL_MEAN {mean} and MODEL.PIXEL_STD {std} "
            f"must have {channels} value(s) each"
        )
    if (cfg.INPUT.FORMAT == "L") != (channels == 1):
        raise ValueError(
            f"CXR.CLASSIFIER.IN_CHANNELS {channels} and INPUT.FORMAT {cfg.INPUT.FORMAT!r} disagree: "
            "one channel is INPUT.FORMAT 'L', three are 'RGB' or 'BGR'"
        )
    return channels


def _check_resnet_config(cfg):
    """detectron2's ResNet-18/34 asserts on these; a clear error instead."""
    if cfg.MODEL.BACKBONE.NAME in RESNET_BACKBONES and cfg.MODEL.RESNETS.DEPTH in (18, 34):
        if cfg.MODEL.RESNETS.RES2_OUT_CHANNELS != 64:
            raise ValueError(
                f"MODEL.RESNETS.DEPTH {cfg.MODEL.RESNETS.DEPTH} (basic blocks) needs "
                "MODEL.RESNETS.RES2_OUT_CHANNELS 64, "
                f"got {cfg.MODEL.RESNETS.RES2_OUT_CHANNELS}"
            )


def build_classifier_backbone(cfg):
    """``MODEL.BACKBONE.NAME`` built for RGB input; with ``CXR.CLASSIFIER.IN_CHANNELS`` 1 its first
    convolution then sums its kernel over RGB (:func:`convert_first_conv_to_one_channel`), so RGB
    weights, loaded now (torchvision) or later (``MODEL.WEIGHTS``), apply to gray images."""
    channels = _input_channels(cfg)
    _check_resnet_config(cfg)
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    if channels == 1:
        name = convert_first_conv_to_one_channel(backbone)
        logger.info("One-channel input: %s applies its RGB kernel summed over the channels", name)
    return backbone


def _pooled_feature(cfg, shapes: Dict[str, ShapeSpec]) -> str:
    """``CXR.CLASSIFIER.IN_FEATURE``, or the backbone output of the largest stride (the last one on a tie)."""
    name = cfg.CXR.CLASSIFIER.IN_FEATURE
    if not name:
        return max(reversed(list(shapes)), key=lambda k: shapes[k].stride)
    if name not in shapes:
        raise ValueError(f"CXR.CLASSIFIER.IN_FEATURE {name!r} is not an output of {cfg.MODEL.BACKBONE.NAME}: "
                         f"{sorted(shapes)} (detectron2's ResNet: MODEL.RESNETS.OUT_FEATURES)")
    return name


def classification_targets_of(cfg):
    """``(task, num_classes, class_names)`` of the model: ``CXR.CLASSIFIER.TASK`` and
    ``NUM_CLASSES`` where set, else the ``task`` and ``thing_classes`` of the metadata of
    ``DATASETS.TRAIN[0]`` (or ``DATASETS.TEST[0]``); ``class_names`` None when unknown.

    Raises:
        ValueError: neither gives the task or the class count, an unknown task, or metadata
            with another number of classes than ``NUM_CLASSES``.
    """
    node = cfg.CXR.CLASSIFIER
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    meta = MetadataCatalog.get(names[0]) if names and names[0] in MetadataCatalog.list() else None
    meta_task = meta.get("task", None) if meta is not None else None
    class_names = meta.get("thing_classes", None) if meta is not None else None
    where = f"the metadata of dataset {names[0]!r}" if names else "no dataset (DATASETS.TRAIN and TEST are empty)"
    task = node.TASK or meta_task
    if not task:
        raise ValueError(f"CXR.CLASSIFIER.TASK is empty and {where} gives no task: register the dataset "
                         f"(cxr_det.data.register_from_config) or set TASK to {' or '.join(CLASSIFICATION_TASKS)}")
    if task not in CLASSIFICATION_TASKS:
        raise ValueError(f"classification task must be one of {CLASSIFICATION_TASKS}, got {task!r}")
    num_classes = node.NUM_CLASSES or (len(class_names) if class_names else 0)
    if not num_classes:
        raise ValueError(f"CXR.CLASSIFIER.NUM_CLASSES is 0 and {where} gives no thing_classes: register the "
                         "dataset (cxr_det.data.register_from_config) or set NUM_CLASSES")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"CXR.CLASSIFIER.NUM_CLASSES is {num_classes} but {where} has {len(class_names)} classes "
                         f"{list(class_names)}")
    if task == "single_label" and num_classes < 2:
        raise ValueError(f"a single_label task needs at least 2 classes (binary = 2), got {num_classes}")
    return task, int(num_classes), (list(class_names) if class_names is not None else None)


def linear_head(in_features: int, num_classes: int) -> nn.Linear:
    """The classification layer: weights N(0, 0.01^2), zero bias (detectron2's box predictor init)."""
    head = nn.Linear(in_features, num_classes)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return head


class ImageClassifier(nn.Module):
    """Image-only classifier: backbone -> global pooling -> dropout -> linear head.

    Not registered: from YAML it is ``ClinicalImageClassifier`` with fusion off (the trainer
    recognises classifiers by that name); built directly, ``ImageClassifier(cfg)``.

    Args:
        backbone: a detectron2 ``Backbone``.
        in_feature: the backbone output that is pooled.
        head: ``nn.Linear`` (D, C): D the pooled channels (plus what subclasses concatenate).
        loss: a module of :mod:`~cxr_det.modeling.classification_losses` for ``task``.
        task: "multi_label" or "single_label".
        pixel_mean, pixel_std: per-channel normalisation of the input images (C_in values each).
        pooling: "avg" or "max".
        dropout: dropout probability before the head.
        class_names: the label / class names (index = output index), or None.

    Attributes: ``task``, ``num_classes`` (C), ``class_names``.
    """

    @configurable
    def __init__(self, *, backbone, in_feature: str, head: nn.Linear, loss: nn.Module, task: str,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], pooling: str = "avg",
                 dropout: float = 0.0, class_names: Optional[Sequence[str]] = None):
        super().__init__()
        if task not in CLASSIFICATION_TASKS:
            raise ValueError(f"classification task must be one of {CLASSIFICATION_TASKS}, got {task!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"CXR.CLASSIFIER.POOLING must be one of {POOLINGS}, got {pooling!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"CXR.CLASSIFIER.DROPOUT must be in [0, 1), got {dropout}")
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and PIXEL_STD {list(pixel_std)} differ in length")
        if class_names is not None and len(class_names) != head.out_features:
            raise ValueError(f"{len(class_names)} class names for a head of {head.out_features} outputs")
        shapes = backbone.output_shape()
        if in_feature not in shapes:
            raise ValueError(f"the backbone has no output {in_feature!r}: {sorted(shapes)}")
        self.backbone = backbone
        self.in_feature = in_feature
        self._feature_stride = shapes[in_feature].stride
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = head
        self.loss = loss
        self.task = task
        self.num_classes = head.out_features
        self.class_names = list(class_names) if class_names is not None else None
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        node = cfg.CXR.CLASSIFIER
        backbone = build_classifier_backbone(cfg)
        shapes = backbone.output_shape()
        in_feature = _pooled_feature(cfg, shapes)
        task, num_classes, class_names = classification_targets_of(cfg)
        return {
            "backbone": backbone,
            "in_feature": in_feature,
            "head": linear_head(shapes[in_feature].channels, num_classes),
            "loss": build_classification_loss(cfg, task, num_classes),
            "task": task,
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "pooling": node.POOLING,
            "dropout": node.DROPOUT,
            "class_names": class_names,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalise the inputs' ``image`` tensors and batch them (padded with 0, the mean)."""
        channels = self.pixel_mean.shape[0]
        images = []
        for i, x in enumerate(batched_inputs):
            image = x["image"].to(self.device)
            if image.dim() != 3 or image.shape[0] != channels:
                raise ValueError(
                    f"input {i}: image of shape {tuple(image.shape)}, expected ({channels}, H, W): the model was built "
                    f"for {channels} channel(s) (CXR.CLASSIFIER.IN_CHANNELS, MODEL.PIXEL_MEAN, INPUT.FORMAT)"
                )
            images.append((image - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def _global_pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3)) if self.pooling == "avg" else features.amax(dim=(2, 3))

    def pool(self, features: torch.Tensor, image_sizes: Sequence) -> torch.Tensor:
        """(N, C, h, w) feature map -> (N, C), each image pooled over the part of the map its
        unpadded size covers (``ceil(size / stride)``), so a prediction does not depend on the
        other images of the batch."""
        h, w = features.shape[-2:]
        s = self._feature_stride
        covered = [(min(h, math.ceil(ih / s)), min(w, math.ceil(iw / s))) for ih, iw in image_sizes]
        if all(c == (h, w) for c in covered):
            return self._global_pool(features)
        return torch.cat([self._global_pool(features[i:i + 1, :, :ch, :cw]) for i, (ch, cw) in enumerate(covered)])

    def embed(self, batched_inputs: List[dict]) -> torch.Tensor:
        """The features the head reads, (N, D) (before dropout)."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        return self.pool(features[self.in_feature], images.image_sizes)

    def logits(self, batched_inputs: List[dict]) -> torch.Tensor:
        """(N, C) logits of the inputs."""
        return self.head(self.dropout(self.embed(batched_inputs)))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid of each label (multi_label) or softmax over the classes (single_label)."""
        return torch.sigmoid(logits) if self.task == "multi_label" else torch.softmax(logits, dim=-1)

    def forward(self, batched_inputs: List[dict]):
        """Training: ``{"loss_cls": scalar}``; inference: one ``{"scores", "logits"}`` (C,) per input."""
        logits = self.logits(batched_inputs)
        if self.training:
            return {"loss_cls": self.losses(logits, batched_inputs)}
        scores = self.probabilities(logits)
        return [{"scores": s, "logits": z} for s, z in zip(scores, logits)]

    def _stacked(self, batched_inputs, key, dtype, shape, default=None):
        values = []
        for i, x in enumerate(batched_inputs):
            if key not in x and default is not None:
                values.append(default)
                continue
            if key not in x:
                raise ValueError(
                    f"input {i} ({x.get('file_name', x.get('image_id', '?'))}) has no {key!r}: a {self.task} model "
                    f"trains on the targets ClassificationDatasetMapper reads from a {self.task} dataset"
                )
            value = torch.as_tensor(x[key], dtype=dtype)
            if tuple(value.shape) != shape:
                raise ValueError(f"input {i}: {key!r} of shape {tuple(value.shape)}, expected {shape} "
                                 f"(the model has {self.num_classes} classes)")
            values.append(value)
        return torch.stack(values).to(self.device)

    def losses(self, logits: torch.Tensor, batched_inputs: List[dict]) -> torch.Tensor:
        """The loss of ``logits`` (N, C) against the inputs' targets (see the module docstring)."""
        if self.task == "single_label":
            return self.loss(logits, self._stacked(batched_inputs, "label", torch.int64, ()))
        labels = self._stacked(batched_inputs, "labels", torch.float32, (self.num_classes,))
        weights = None
        if any("label_weights" in x for x in batched_inputs):  # an input without them counts every label
            weights = self._stacked(batched_inputs, "label_weights", torch.float32, (self.num_classes,),
                                    default=torch.ones(self.num_classes))
        return self.loss(logits, labels, weights)


@META_ARCH_REGISTRY.register()
class ClinicalImageClassifier(ClinicalFusionMixin, ImageClassifier):
    """:class:`ImageClassifier` with clinical fusion (``CXR.FUSION``): ``SPATIAL`` on the pooled
    feature map, ``POOLED`` concatenation of the clinical vector to the pooled features (the
    head then reads D + ``HIDDEN_DIMS[-1]`` features). An input without ``"clinical"`` counts
    as all-missing. ``ROI`` has no meaning here (no RoI head) and is an error.
    """

    @configurable
    def __init__(self, *, pooled_fusion: bool = False, **kwargs):
        super().__init__(**kwargs)
        if pooled_fusion and self.clinical_encoder is None:
            raise ValueError("pooled fusion needs a clinical_encoder")
        self.pooled_fusion = bool(pooled_fusion)

    @classmethod
    def from_config(cls, cfg):
        if cfg.CXR.FUSION.ROI:
            raise ValueError("CXR.FUSION.ROI fuses into R-CNN box-head features; an image classifier has none: "
                             "use CXR.FUSION.POOLED (concatenation to the pooled features) or SPATIAL")
        ret = super().from_config(cfg)
        ret.update(cls._build_fusion(cfg, ret["backbone"].output_shape(), [ret["in_feature"]]))
        ret["pooled_fusion"] = bool(cfg.CXR.FUSION.POOLED)
        if ret["pooled_fusion"]:
            head = ret["head"]
            ret["head"] = linear_head(head.in_features + ret["clinical_encoder"].output_dim, head.out_features)
        return ret

    def embed(self, batched_inputs: List[dict]) -> torch.Tensor:
        if self.clinical_encoder is None:
            return super().embed(batched_inputs)
        vectors = self.clinical_encoder(*self._clinical_batch(batched_inputs))
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.spatial_fusion is not None:
            features = self.spatial_fusion(features, vectors)
        pooled = self.pool(features[self.in_feature], images.image_sizes)
        return torch.cat([pooled, vectors], dim=1) if self.pooled_fusion else pooled
