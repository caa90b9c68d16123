"""Grad-CAM saliency of the image-level classifiers, and its pictures.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, arXiv:1610.02391) weighs each channel of a
convolutional feature map by the spatial mean of the gradient of a class score, sums, and
keeps the positive part. It is computed here by the ``grad-cam`` package
(``pytorch_grad_cam.GradCAM``, https://github.com/jacobgil/pytorch-grad-cam) on the backbone
feature map that :class:`~cxr_det.modeling.classifier.ClinicalImageClassifier` pools, for
the label's logit (``ClassifierOutputTarget``), with the patient's clinical inputs held
fixed. grad-cam min-max scales each map to [0, 1], so a map shows where the evidence for a
label lies in the image, not how strong it is: the probability says that.

- :class:`ClassifierLogits`: the classifier as a module from an image batch to logits.
- :class:`GradCAMSaliency`: one model input (a
  :class:`~cxr_det.data.classification_mapper.ClassificationDatasetMapper` dict) to one
  (H, W) heatmap per requested label, at the input image's resolution.
- :func:`heatmap_overlay`: a heatmap in the jet colours blended on the gray X-ray.
- :func:`saliency_drawing`: the X-ray and one overlay per label side by side, each titled
  with the label, its probability, the decision and the ground truth, on the canvas of
  :mod:`cxr_det.utils.drawing`.
"""
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxr_det.utils.drawing import MIN_FONT_PX, prepare_image, side_by_side, title_strip

__all__ = [
    "SALIENCY_PANEL_SIDE",
    "NO_EVIDENCE",
    "ClassifierLogits",
    "GradCAMSaliency",
    "LabelPanel",
    "heatmap_overlay",
    "saliency_drawing",
]

logger = logging.getLogger(__name__)

SALIENCY_PANEL_SIDE = 512  # drawn pixels on the long side of each panel
FONT_FRACTION = 1 / 32  # title font height / panel side (16 px at 512)
IMAGE_WEIGHT = 0.55  # share of the X-ray in an overlay; the rest is the heatmap's colour
# Under an overlay whose map is 0 everywhere: the Grad-CAM is flat (equal everywhere, or
# nowhere positive), so no region stands out.
NO_EVIDENCE = "Grad-CAM flat: no region stands out"


class ClassifierLogits(nn.Module):
    """A classifier as ``images (B, C_in, H, W) -> logits (B, C)``, the form Grad-CAM drives.

    The classifier takes a list of input dicts (``ImageClassifier.logits``); this module builds
    them from an image batch, every image with the same ``clinical`` inputs (the mapper's
    ``{"numeric", "missing", "categorical"}`` tensors, or None for an image-only model).
    Gradients flow from the logits to the images.
    """

    def __init__(self, model: nn.Module, clinical: Optional[dict] = None):
        super().__init__()
        self.model = model
        self.clinical = clinical

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = [{"image": image} for image in images]
        if self.clinical is not None:
            for item in inputs:
                item["clinical"] = self.clinical
        return self.model.logits(inputs)


def _tap(name: str, tap: nn.Module):
    """A forward hook on a backbone that passes its output ``name`` through ``tap``."""

    def hook(module, inputs, features):
        features = dict(features)
        features[name] = tap(features[name])
        return features

    return hook


class GradCAMSaliency:
    """Grad-CAM heatmaps of a :class:`~cxr_det.modeling.classifier.ClinicalImageClassifier`.

    The target layer is the backbone output the classifier pools (``model.in_feature``,
    ``CXR.CLASSIFIER.IN_FEATURE`` or the backbone's last output): detectron2 backbones
    return a dict of maps, so the map is passed through an identity module while the heatmaps
    are computed (a forward hook on the backbone, removed afterwards) and Grad-CAM hooks that
    module. With ``CXR.FUSION.SPATIAL`` the gradient reaches this map through the FiLM
    modulation, so the clinical data shapes the weights, not the activations.

    ``saliency(inputs, labels)``: ``inputs`` one model input dict (``image`` (C_in, H, W)
    uint8 or float tensor, optional ``clinical``), ``labels`` label / class indices. Returns
    float32 (len(labels), H, W) in [0, 1]; (0, H, W) for no labels. The model is left in the
    mode and with the gradients (none) it had.

    Raises:
        ValueError: the model has no ``backbone`` / ``in_feature``; a label outside [0, C);
            an input without ``image`` or not (C_in, H, W).
        RuntimeError: no gradient reached the feature map (a model whose inference detaches).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.backbone = getattr(model, "backbone", None)
        self.feature = getattr(model, "in_feature", None)
        if self.backbone is None or not self.feature:
            raise ValueError(f"GradCAMSaliency needs a ClinicalImageClassifier (a backbone and in_feature); "
                             f"got {type(model).__name__}")
        self.num_classes = int(getattr(model, "num_classes"))
        self._warned_size = False

    def _check_map_size(self, size, image_size):
        """Warn once when the feature map has a single row or column: Grad-CAM then cannot
        localise along it (its min-max scaling makes a 1 x 1 map 0 everywhere)."""
        if min(size) < 2 and not self._warned_size:
            self._warned_size = True
            logger.warning(f"Grad-CAM: the {self.feature!r} feature map is {size[0]} x {size[1]} for a "
                           f"{image_size[0]} x {image_size[1]} input, too coarse to localise; larger inputs "
                           "(CXR.CLASSIFIER.INPUT_SIZE) give finer maps")

    def __call__(self, inputs: dict, labels: Sequence[int]) -> np.ndarray:
        image = inputs.get("image")
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            raise ValueError("GradCAMSaliency: the input needs 'image', a (C_in, H, W) tensor"
                             + ("" if image is None else f"; got shape {tuple(image.shape)}"))
        labels = [int(label) for label in labels]
        bad = [label for label in labels if not 0 <= label < self.num_classes]
        if bad:
            raise ValueError(f"GradCAMSaliency: label index(es) {bad} outside [0, {self.num_classes})")
        height, width = image.shape[-2:]
        if not labels:
            return np.zeros((0, height, width), dtype=np.float32)
        was_training = self.model.training
        tap = nn.Identity()
        handle = self.backbone.register_forward_hook(_tap(self.feature, tap))
        cam = GradCAM(model=ClassifierLogits(self.model, inputs.get("clinical")), target_layers=[tap])
        try:
            batch = image.float().unsqueeze(0).expand(len(labels), -1, -1, -1)
            with torch.enable_grad():
                maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(label) for label in labels])
            if not cam.activations_and_grads.gradients:
                raise RuntimeError(f"GradCAMSaliency: no gradient reached the {self.feature!r} feature map; "
                                   f"{type(self.model).__name__}'s inference must not detach it")
            self._check_map_size(tuple(cam.activations_and_grads.activations[0].shape[-2:]), (height, width))
        finally:
            cam.activations_and_grads.release()
            handle.remove()
            self.model.zero_grad(set_to_none=True)
            self.model.train(was_training)
        return np.clip(np.nan_to_num(maps.astype(np.float32)), 0.0, 1.0)


def heatmap_overlay(image_rgb: np.ndarray, heatmap: np.ndarray, image_weight: float = IMAGE_WEIGHT) -> np.ndarray:
    """``heatmap`` in OpenCV's jet colours (blue 0 .. red 1) blended on ``image_rgb``.

    Args:
        image_rgb: (H, W, 3) uint8 RGB, the X-ray.
        heatmap: (h, w) floats in [0, 1] over the whole image (resized to H x W, bilinear).
        image_weight: share of the X-ray in the blend, in [0, 1] (grad-cam's
            ``show_cam_on_image``, which also rescales the blend to full brightness).

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: an image that is not (H, W, 3), a heatmap that is not 2-D or outside [0, 1].
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"heatmap_overlay: expected an (H, W, 3) RGB image, got shape {image_rgb.shape}")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2 or not np.isfinite(heatmap).all() or heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError(f"heatmap_overlay: expected a 2-D heatmap in [0, 1], got shape {heatmap.shape}"
                         + (f", range {heatmap.min():.3g}..{heatmap.max():.3g}" if heatmap.size else ""))
    h, w = image_rgb.shape[:2]
    resized = np.clip(cv2.resize(heatmap, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return show_cam_on_image(image_rgb.astype(np.float32) / 255.0, resized, use_rgb=True, image_weight=image_weight)


@dataclass(frozen=True)
class LabelPanel:
    """The title of one overlay.

    ``name``: the label or class; ``probability`` in [0, 1]; ``decision``: e.g.
    ``"≥ 0.41: positive"`` ("" = none); ``truth``: the ground truth, e.g. ``"positive"``
    ("" = unknown).
    """

    name: str
    probability: float
    decision: str = ""
    truth: str = ""

    def lines(self) -> List[str]:
        lines = [f"{self.name}: {self.probability:.2f}"]
        if self.decision:
            lines.append(self.decision)
        if self.truth:
            lines.append(f"ground truth: {self.truth}")
        return lines


def _panel(image_rgb: np.ndarray, lines: Sequence[str], rows: int, font_px: float) -> np.ndarray:
    padded = list(lines) + [""] * (rows - len(lines))
    return np.concatenate([title_strip(padded, image_rgb.shape[1], font_px), image_rgb])


def saliency_drawing(image_rgb: np.ndarray, heatmaps: Sequence[np.ndarray], panels: Sequence[LabelPanel],
                     title_lines: Sequence[str] = (), panel_side: int = SALIENCY_PANEL_SIDE) -> np.ndarray:
    """The X-ray and one Grad-CAM overlay per label, side by side under a title.

    Each panel is drawn ``panel_side`` pixels on its long side (the image's aspect ratio
    kept, heatmaps resized onto it) and titled: the X-ray "X-ray", each overlay with its
    :class:`LabelPanel`'s lines (and :data:`NO_EVIDENCE` when its map is 0 everywhere).
    ``title_lines`` (the file, all probabilities, where the thresholds come from) go in a
    strip across the whole picture, the first line bold.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        heatmaps: one (h, w) float map in [0, 1] per panel (any resolution of the whole image).
        panels: the labels' titles, as many as ``heatmaps``.

    Returns:
        (H', W', 3) uint8 RGB.

    Raises:
        ValueError: ``heatmaps`` and ``panels`` of different lengths, a non-positive
            ``panel_side``, and :func:`heatmap_overlay`'s errors.
    """
    if len(heatmaps) != len(panels):
        raise ValueError(f"saliency_drawing: {len(heatmaps)} heatmaps for {len(panels)} panels")
    if panel_side <= 0:
        raise ValueError(f"saliency_drawing: panel_side must be positive, got {panel_side}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"saliency_drawing: expected an (H, W, 3) RGB image, got shape {image_rgb.shape}")
    image, _ = prepare_image(image_rgb, panel_side / max(image_rgb.shape[:2]), 0)
    font_px = max(float(MIN_FONT_PX), round(panel_side * FONT_FRACTION, 1))
    titles = [["X-ray"]] + [p.lines() + ([] if np.max(m, initial=0) > 0 else [NO_EVIDENCE])
                            for p, m in zip(panels, heatmaps)]
    rows = max(len(t) for t in titles)
    drawn = [_panel(image, titles[0], rows, font_px)]
    drawn += [_panel(heatmap_overlay(image, m), t, rows, font_px) for m, t in zip(heatmaps, titles[1:])]
    picture = side_by_side(*drawn)
    if title_lines:
        picture = np.concatenate([title_strip(list(title_lines), picture.shape[1], font_px), picture])
    return picture
