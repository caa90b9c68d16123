"""Grad-CAM saliency of the image classifiers (issue 12 section 3): heatmaps from the pooled
feature map at the input's resolution, equal to the class activation map for a linear head
over average pooling, the clinical inputs held as given, and the overlay picture."""
import cv2
import numpy as np
import pytest
import torch
from torch import nn

import cxr_det.modeling  # noqa: F401
from detectron2.modeling import build_model
from helpers import ROOT, model_cfg

from cxr_det.utils.saliency import (
    SALIENCY_PANEL_SIDE,
    ClassifierLogits,
    GradCAMSaliency,
    LabelPanel,
    heatmap_overlay,
    saliency_drawing,
)

CLINICAL_CONFIG = ROOT / "configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml"
SIZE = 96  # a 3 x 3 res5 map


def _classifier(extra=()):
    cfg = model_cfg(CLINICAL_CONFIG, ["CXR.CLASSIFIER.TASK", "multi_label", "CXR.CLASSIFIER.NUM_CLASSES", "3",
                                      "CXR.CLASSIFIER.INPUT_SIZE", str(SIZE), "DATASETS.TRAIN", "()",
                                      "DATASETS.TEST", "()", *extra])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.eval()
    return model


def _disc_image(cx, cy, r=14):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    gray = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r * r, 220, 60).astype(np.uint8)
    return torch.as_tensor(np.repeat(gray[None], 3, 0))


CLINICAL = {"numeric": torch.tensor([0.4]), "missing": torch.tensor([0.0]), "categorical": torch.tensor([1])}


@pytest.fixture(scope="module")
def classifier(one_torch_thread):
    return _classifier()


def _min_max(x):
    x = x - x.min()
    return x / (1e-7 + x.max())


def test_heatmaps_are_the_class_activation_maps_of_the_pooled_features(classifier):
    # For global average pooling and a linear head, Grad-CAM's channel weights are the head's
    # weights / (h * w), so the heatmap is the CAM of Zhou et al. (CVPR 2016): relu(W_l . A)
    # on the res5 map A, min-max scaled and resized to the input.
    image = _disc_image(30, 60)
    inputs = {"image": image, "clinical": CLINICAL}
    maps = GradCAMSaliency(classifier)(inputs, [2, 0])
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    with torch.no_grad():
        features = classifier.backbone(classifier.preprocess_image([inputs]).tensor)["res5"][0].numpy()
    assert features.shape[1:] == (3, 3)
    weights = classifier.head.weight.detach().numpy()[:, : features.shape[0]]
    for row, label in zip(maps, [2, 0]):
        cam = np.maximum(np.tensordot(weights[label], features, axes=1), 0)
        expected = _min_max(cv2.resize(_min_max(cam).astype(np.float32), (SIZE, SIZE)))
        assert cam.max() > 0 and cam.min() == 0  # positive somewhere, clipped elsewhere: not a flat map
        assert row.max() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(row, expected, atol=1e-4)


def test_heatmaps_follow_the_image_and_leave_the_model_as_it_was(classifier):
    classifier.head.weight.data.abs_()  # every label's evidence positive: no flat map
    saliency = GradCAMSaliency(classifier)
    left = saliency({"image": _disc_image(25, 48)}, [0, 1, 2])
    right = saliency({"image": _disc_image(70, 48)}, [0, 1, 2])
    assert np.isfinite(left).all() and left.min() >= 0 and left.max() <= 1
    assert np.abs(left - right).max() > 0.1
    assert not classifier.training
    assert all(p.grad is None for p in classifier.parameters())
    assert saliency({"image": _disc_image(25, 48)}, []).shape == (0, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        saliency({"image": _disc_image(25, 48)}, [3])
    with pytest.raises(ValueError, match="needs 'image'"):
        saliency({"clinical": CLINICAL}, [0])


def test_logits_module_keeps_the_clinical_inputs_and_film_makes_them_shape_the_map(one_torch_thread):
    model = _classifier(["CXR.FUSION.SPATIAL", "film"])
    image = _disc_image(40, 40)
    with torch.no_grad():
        expected = model([{"image": image, "clinical": CLINICAL}])[0]["logits"]
        np.testing.assert_allclose(ClassifierLogits(model, CLINICAL)(image[None].float())[0], expected, atol=1e-5)
        for p in model.spatial_fusion.parameters():  # FiLM starts as the identity; give it a say
            nn.init.normal_(p, std=0.5)
    model.head.weight.data.abs_()
    saliency = GradCAMSaliency(model)
    older = {"numeric": torch.tensor([-1.5]), "missing": torch.tensor([0.0]), "categorical": torch.tensor([2])}
    a = saliency({"image": image, "clinical": CLINICAL}, [1])
    b = saliency({"image": image, "clinical": older}, [1])
    assert np.abs(a - b).max() > 1e-3


def test_overlay_puts_red_on_the_evidence_and_blue_elsewhere():
    gray = np.full((40, 60, 3), 128, dtype=np.uint8)
    heat = np.zeros((4, 6), dtype=np.float32)
    heat[:, :3] = 1.0
    out = heatmap_overlay(gray, heat)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    left, right = out[:, :10].reshape(-1, 3).mean(0), out[:, -10:].reshape(-1, 3).mean(0)
    assert left[0] > left[2] + 50 and right[2] > right[0] + 50
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        heatmap_overlay(gray, heat * 2)
    with pytest.raises(ValueError, match="RGB"):
        heatmap_overlay(gray[:, :, 0], heat)


def test_drawing_is_the_xray_and_one_legible_panel_per_label():
    xray = np.repeat(np.linspace(0, 255, 48 * 40).reshape(48, 40, 1).astype(np.uint8), 3, 2)
    heat = np.zeros((3, 3), dtype=np.float32)
    heat[0, 0] = 1.0
    panels = [LabelPanel("Edema", 0.81, "≥ 0.40: positive", "positive"), LabelPanel("Cardiomegaly", 0.2)]
    out = saliency_drawing(xray, [heat, np.zeros((3, 3))], panels, ["a.png", "probabilities: ..."])
    # A 48-pixel image is drawn 512 pixels high per panel, three panels, under the titles.
    panel_width = round(40 * SALIENCY_PANEL_SIDE / 48)
    assert out.shape[1] == 3 * panel_width + 2 * 8
    assert out.shape[0] > SALIENCY_PANEL_SIDE + 4 * 16
    assert panels[0].lines() == ["Edema: 0.81", "≥ 0.40: positive", "ground truth: positive"]
    with pytest.raises(ValueError, match="2 heatmaps for 1 panels"):
        saliency_drawing(xray, [heat, heat], panels[:1])
