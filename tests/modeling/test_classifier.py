"""Image-level classifiers: every backbone x head x fusion mode trains and predicts, fusion off is
the image-only model, one-channel input keeps the RGB network's function, weights load strictly,
and the losses match their definitions."""
import math
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cxr_det  # noqa: F401
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model

from cxr_det.config import get_cxr_cfg
from cxr_det.modeling import ClinicalImageClassifier, ImageClassifier
from cxr_det.modeling.backbone import TorchvisionClassifierBackbone, build_torchvision_classifier_backbone
from cxr_det.modeling.backbone.torchvision_classifier import (
    OneChannelConv2d,
    convert_first_conv_to_one_channel,
    load_torchvision_state_dict,
)
from cxr_det.modeling.classification_losses import (
    build_classification_loss,
    masked_bce_with_logits,
    masked_sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from cxr_det.modeling.fusion import fusion_enabled

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
# Test dataset names -> (task, class names); registered in MetadataCatalog by the `datasets` fixture.
DATASETS = {
    "cls_test_multi": ("multi_label", ["Atelectasis", "Edema", "Effusion"]),
    "cls_test_single": ("single_label", ["COVID", "Normal", "Pneumonia"]),
    "cls_test_binary": ("single_label", ["No finding", "Abnormal"]),
}
# Backbone name -> config overrides (tiny where the architecture allows).
BACKBONES = {
    "d2_R18": {"MODEL.BACKBONE.NAME": "build_resnet_backbone", "MODEL.RESNETS.DEPTH": 18,
               "MODEL.RESNETS.RES2_OUT_CHANNELS": 64, "MODEL.RESNETS.STEM_OUT_CHANNELS": 16},
    "d2_R50_light": {"MODEL.BACKBONE.NAME": "build_resnet_backbone", "MODEL.RESNETS.DEPTH": 50,
                     "MODEL.RESNETS.RES2_OUT_CHANNELS": 32, "MODEL.RESNETS.STEM_OUT_CHANNELS": 16,
                     "MODEL.RESNETS.WIDTH_PER_GROUP": 8},
    **{arch: {"MODEL.BACKBONE.NAME": "build_torchvision_classifier_backbone", "CXR.CLASSIFIER.TORCHVISION.ARCH": arch}
       for arch in ("densenet121", "resnet18", "efficientnet_b0", "mobilenet_v3_small")},
}
# Head name -> (dataset, CXR.CLASSIFIER.LOSS)
HEADS = {
    "multi-bce": ("cls_test_multi", "bce"),
    "multi-focal": ("cls_test_multi", "focal"),
    "single-ce": ("cls_test_single", "ce"),
    "single-focal": ("cls_test_single", "focal"),
}
# Fusion name -> (CXR.FUSION.SPATIAL, POOLED)
FUSIONS = {
    "none": ("none", False), "pooled": ("none", True), "film": ("film", False), "concat+pooled": ("concat", True),
}


@pytest.fixture(autouse=True)
def datasets(catalog_names):
    from detectron2.data import MetadataCatalog

    for name, (task, classes) in DATASETS.items():
        MetadataCatalog.get(name).set(thing_classes=classes, task=task, evaluator_type="cxr_classification")
        catalog_names.append(name)


def _cfg(backbone="mobilenet_v3_small", head="multi-bce", fusion="none", in_channels=3, **opts):
    dataset, loss = HEADS[head]
    spatial, pooled = FUSIONS[fusion]
    cfg = get_cxr_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ClinicalImageClassifier"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.PIXEL_MEAN = [128.0] * in_channels
    cfg.MODEL.PIXEL_STD = [64.0] * in_channels
    cfg.INPUT.FORMAT = "L" if in_channels == 1 else "RGB"
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.DATASETS.TEST = (dataset,)
    cfg.CXR.CLASSIFIER.INPUT_SIZE = SIZE
    cfg.CXR.CLASSIFIER.IN_CHANNELS = in_channels
    cfg.CXR.CLASSIFIER.LOSS = loss
    cfg.CXR.CLINICAL.ENABLED = True
    cfg.CXR.CLINICAL.NUMERIC = ["age", "temperature", "heartrate"]
    cfg.CXR.CLINICAL.CATEGORICAL = ["gender"]
    cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [3]
    cfg.CXR.FUSION.EMBED_DIM = 4
    cfg.CXR.FUSION.HIDDEN_DIMS = [16, 8]
    cfg.CXR.FUSION.SPATIAL = spatial
    cfg.CXR.FUSION.POOLED = pooled
    for key, value in {**BACKBONES[backbone], **opts}.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def _inputs(task, channels=3, with_clinical=(True, True), seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i, has_clinical in enumerate(with_clinical):
        x = {"image": torch.randint(0, 256, (channels, SIZE, SIZE), generator=g, dtype=torch.uint8),
             "image_id": f"img{i}", "height": SIZE, "width": SIZE}
        if task == "multi_label":
            x["labels"] = torch.tensor([1.0, 0.0, float(i % 2)])
            x["label_weights"] = torch.tensor([1.0, 1.0, 0.0 if i == 0 else 1.0])
        else:
            x["label"] = torch.tensor(i + 1, dtype=torch.int64)
        if has_clinical:
            x["clinical"] = {"numeric": torch.randn(3, generator=g), "missing": torch.tensor([0.0, 1.0, 0.0]),
                             "categorical": torch.tensor([i + 1])}
        inputs.append(x)
    return inputs


def _has_grad(params):
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)


# Every backbone x head x fusion mode, and the concat variant of spatial fusion once.
CASES = [(backbone, head, fusion) for backbone in BACKBONES for head in HEADS for fusion in ("none", "pooled", "film")]
CASES += [("mobilenet_v3_small", "single-ce", "concat+pooled")]


@pytest.mark.parametrize("backbone,head,fusion", CASES, ids=["-".join(c) for c in CASES])
def test_train_and_infer(backbone, head, fusion):
    torch.manual_seed(0)
    model = build_model(_cfg(backbone, head, fusion))
    task, classes = DATASETS[HEADS[head][0]]
    spatial, pooled = FUSIONS[fusion]
    assert isinstance(model, ClinicalImageClassifier)
    assert (model.task, model.num_classes, model.class_names) == (task, 3, classes)
    assert (model.clinical_encoder is not None) == (fusion != "none")
    assert (model.spatial_fusion is not None) == (spatial != "none")
    channels = model.backbone.output_shape()[model.in_feature].channels
    assert model.head.in_features == channels + (8 if pooled else 0)

    model.train()
    losses = model(_inputs(task))
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].dim() == 0
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"] > 0
    losses["loss_cls"].backward()
    assert _has_grad(model.head.parameters()) and _has_grad(model.backbone.parameters())
    if spatial == "film":
        # FiLM starts at scale = shift = 0: at step 0 only its projection gets gradients.
        assert _has_grad(model.spatial_fusion.parameters())
    elif fusion != "none":
        assert _has_grad(model.clinical_encoder.parameters())

    model.eval()
    with torch.no_grad():
        outputs = model(_inputs(task, with_clinical=(True, False)))
    assert len(outputs) == 2
    for out in outputs:
        assert set(out) == {"scores", "logits"}
        assert out["scores"].shape == out["logits"].shape == (3,)
        assert torch.isfinite(out["logits"]).all()
        expected = torch.sigmoid(out["logits"]) if task == "multi_label" else torch.softmax(out["logits"], 0)
        torch.testing.assert_close(out["scores"], expected)
        if task == "single_label":
            assert math.isclose(float(out["scores"].sum()), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "d2_R18"])
def test_fusion_off_equals_image_only(backbone):
    cfg = _cfg(backbone, "multi-bce", "none")
    assert not fusion_enabled(cfg)
    torch.manual_seed(0)
    image_only = ImageClassifier(cfg)
    torch.manual_seed(0)
    clinical = build_model(cfg)
    assert type(clinical) is ClinicalImageClassifier and clinical.clinical_encoder is None
    expected, actual = image_only.state_dict(), clinical.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)

    inputs = _inputs("multi_label")
    torch.testing.assert_close(image_only(inputs)["loss_cls"], clinical(inputs)["loss_cls"], rtol=0, atol=0)
    image_only.eval(), clinical.eval()
    with torch.no_grad():
        for e, a in zip(image_only(inputs), clinical(inputs)):
            assert torch.equal(e["logits"], a["logits"]) and torch.equal(e["scores"], a["scores"])


def test_pooled_fusion_enables_the_encoder():
    cfg = _cfg(fusion="pooled")
    assert fusion_enabled(cfg)
    model = build_model(cfg).eval()
    with torch.no_grad():
        with_clinical = model(_inputs("multi_label"))
        without = model(_inputs("multi_label", with_clinical=(False, False)))
    assert not torch.equal(with_clinical[0]["logits"], without[0]["logits"])


def test_one_channel_conv_equals_rgb_conv_on_repeated_gray():
    torch.manual_seed(0)
    rgb = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=True), nn.ReLU())
    gray = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=True), nn.ReLU())
    gray.load_state_dict(rgb.state_dict())
    assert convert_first_conv_to_one_channel(gray) == "0"
    assert isinstance(gray[0], OneChannelConv2d) and gray[0].weight.shape == (8, 3, 5, 5)
    assert {k: v.shape for k, v in gray.state_dict().items()} == {k: v.shape for k, v in rgb.state_dict().items()}

    x = torch.randn(2, 1, 17, 19)
    out_gray, out_rgb = gray(x), rgb(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(out_gray, out_rgb)
    out_gray.square().sum().backward()
    out_rgb.square().sum().backward()
    torch.testing.assert_close(gray[0].weight.grad, rgb[0].weight.grad)
    with pytest.raises(ValueError, match="one-channel images"):
        gray(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("backbone", ["d2_R18", "resnet18"])
def test_one_channel_model_is_the_rgb_model_on_repeated_gray(backbone):
    """IN_CHANNELS 1: an RGB model's weights load unchanged, and the gray image gives what the
    RGB model gives for it repeated on three channels (detectron2's stem.conv1 carries its norm)."""
    rgb = build_model(_cfg(backbone)).eval()
    gray = build_model(_cfg(backbone, in_channels=1)).eval()
    gray.load_state_dict(rgb.state_dict(), strict=True)
    first = "stem.conv1" if backbone.startswith("d2") else "conv1"
    assert isinstance(gray.backbone.get_submodule(first), OneChannelConv2d)
    inputs = _inputs("multi_label", channels=1)
    repeated = [{**x, "image": x["image"].repeat(3, 1, 1)} for x in inputs]
    with torch.no_grad():
        for g, c in zip(gray(inputs), rgb(repeated)):
            torch.testing.assert_close(g["logits"], c["logits"], rtol=1e-4, atol=1e-5)


def test_input_channel_checks():
    cfg = _cfg(in_channels=1)
    cfg.MODEL.PIXEL_MEAN = [128.0, 128.0, 128.0]
    with pytest.raises(ValueError, match="PIXEL_MEAN"):
        build_model(cfg)
    cfg = _cfg(in_channels=1)
    cfg.INPUT.FORMAT = "RGB"
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        build_model(cfg)
    model = build_model(_cfg())
    with pytest.raises(ValueError, match=r"input 0: image of shape \(1, 64, 64\)"):
        model(_inputs("multi_label", channels=1))


def test_config_errors():
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS 64"):
        build_model(_cfg("d2_R18", **{"MODEL.RESNETS.RES2_OUT_CHANNELS": 256}))
    with pytest.raises(ValueError, match="IN_FEATURE 'res4'"):
        build_model(_cfg(**{"CXR.CLASSIFIER.IN_FEATURE": "res4"}))
    with pytest.raises(ValueError, match="CXR.FUSION.ROI"):
        build_model(_cfg(**{"CXR.FUSION.ROI": True}))
    with pytest.raises(ValueError, match="TASK is empty"):
        build_model(_cfg(**{"DATASETS.TRAIN": ("cls_test_unregistered",), "DATASETS.TEST": ()}))
    with pytest.raises(ValueError, match="NUM_CLASSES is 0"):
        build_model(_cfg(**{"DATASETS.TRAIN": (), "DATASETS.TEST": (), "CXR.CLASSIFIER.TASK": "multi_label"}))
    with pytest.raises(ValueError, match="POS_WEIGHT_VALUES has 2 values"):
        build_model(_cfg(**{"CXR.CLASSIFIER.POS_WEIGHT_VALUES": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="'ce' is for single_label"):
        build_model(_cfg(**{"CXR.CLASSIFIER.LOSS": "ce"}))
    # Without datasets the model is built from TASK and NUM_CLASSES alone (a trained run's config).
    model = build_model(_cfg(**{"DATASETS.TRAIN": (), "DATASETS.TEST": (), "CXR.CLASSIFIER.TASK": "single_label",
                                "CXR.CLASSIFIER.NUM_CLASSES": 4, "CXR.CLASSIFIER.LOSS": "auto"}))
    assert (model.task, model.num_classes, model.class_names) == ("single_label", 4, None)


def test_training_needs_targets():
    model = build_model(_cfg(head="single-ce"))
    inputs = _inputs("single_label")
    del inputs[1]["label"]
    with pytest.raises(ValueError, match="input 1 \\(img1\\) has no 'label'"):
        model(inputs)
    inputs = _inputs("single_label")
    inputs[0]["label"] = torch.tensor(3)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        model(inputs)


def test_label_weights_mask_the_loss():
    """An image without label_weights counts every label; weights 0 take a label out."""
    model = build_model(_cfg()).eval()  # eval: BatchNorm statistics independent of the batch
    inputs = _inputs("multi_label")
    with torch.no_grad():
        logits = model.logits(inputs)
        loss = model.losses(logits, inputs)
        del inputs[0]["label_weights"]
        unmasked = model.losses(logits, inputs)
    labels = torch.stack([x["labels"] for x in inputs])
    elementwise = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    torch.testing.assert_close(loss, (elementwise.sum() - elementwise[0, 2]) / 5)
    torch.testing.assert_close(unmasked, elementwise.mean())


@pytest.mark.parametrize("head,fusion", [("multi-bce", "pooled"), ("single-focal", "film")])
def test_gradient_steps_decrease_the_loss(head, fusion):
    torch.manual_seed(0)
    model = build_model(_cfg(head=head, fusion=fusion)).train()
    inputs = _inputs(DATASETS[HEADS[head][0]][0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    first = None
    for _ in range(4):
        loss = model(inputs)["loss_cls"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(inputs)["loss_cls"].item() < first


def test_pool_covers_each_image_only():
    model = build_model(_cfg(**{"CXR.CLASSIFIER.POOLING": "max"}))
    features = torch.zeros(2, 4, 2, 2)
    features[1, :, 1, :] = 5.0  # only in the padding of image 1 (32 rows = 1 feature row)
    features[1, :, 0, 0] = 1.0
    pooled = model.pool(features, [(64, 64), (32, 64)])
    assert pooled[0].tolist() == [0.0] * 4 and pooled[1].tolist() == [1.0] * 4


# ---------------------------------------------------------------- torchvision weights


def _shape(channels):
    return ShapeSpec(channels=channels)


def _cfg_weights(arch, weights):
    return _cfg(arch, **{"CXR.CLASSIFIER.TORCHVISION.WEIGHTS": weights})


def _reference(arch, seed=3):
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None).state_dict()


def _assert_loaded(backbone, reference):
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, reference[k]), k


def test_weights_from_a_path(tmp_path):
    reference = _reference("mobilenet_v3_small")
    path = tmp_path / "mnv3.pth"
    torch.save(reference, path)
    backbone = build_torchvision_classifier_backbone(_cfg_weights("mobilenet_v3_small", str(path)), _shape(3))
    assert isinstance(backbone, TorchvisionClassifierBackbone)
    _assert_loaded(backbone, reference)

    # A training checkpoint: under "state_dict", saved from DataParallel.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.items()}}, wrapped)
    _assert_loaded(build_torchvision_classifier_backbone(_cfg_weights("mobilenet_v3_small", str(wrapped)), _shape(3)),
                   reference)

    # One channel: the weights load first, then the first convolution sums them.
    gray = build_torchvision_classifier_backbone(_cfg_weights("mobilenet_v3_small", str(path)), _shape(1))
    assert isinstance(gray.features[0][0], OneChannelConv2d)
    _assert_loaded(gray, reference)


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    reference = _reference("mobilenet_v3_small")
    reference.pop("features.0.0.weight")
    reference["features.99.weight"] = torch.zeros(1)
    reference["features.1.block.0.0.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(reference, path)
    with pytest.raises(ValueError) as info:
        build_torchvision_classifier_backbone(_cfg_weights("mobilenet_v3_small", str(path)), _shape(3))
    message = str(info.value)
    names = ("features.0.0.weight", "features.99.weight", "features.1.block.0.0.weight", "CXR.CLASSIFIER.TORCHVISION")
    for key in names:
        assert key in message, message
    with pytest.raises(FileNotFoundError, match="TORCHVISION.WEIGHTS"):
        build_torchvision_classifier_backbone(_cfg_weights("resnet18", str(tmp_path / "none.pth")), _shape(3))


def test_densenet_legacy_parameter_names_load():
    """torchvision's own densenet121 file names BatchNorms "norm.1"; they load as torchvision loads them."""
    reference = _reference("densenet121")
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in reference.items()}
    assert legacy.keys() != reference.keys()
    backbone = TorchvisionClassifierBackbone(torchvision.models.get_model("densenet121", weights=None), "densenet121")
    load_torchvision_state_dict(backbone, legacy)
    _assert_loaded(backbone, reference)


def test_imagenet_weights_and_offline_error(monkeypatch):
    reference = _reference("mobilenet_v3_small")
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, *a, **k: reference)
    _assert_loaded(build_torchvision_classifier_backbone(_cfg_weights("mobilenet_v3_small", "imagenet"), _shape(3)),
                   reference)

    def offline(self, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError) as info:
        build_torchvision_classifier_backbone(_cfg_weights("resnet18", "imagenet"), _shape(3))
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "CXR.CLASSIFIER.TORCHVISION.WEIGHTS" in message
    assert "from scratch" in message and torch.hub.get_dir() in message

    from detectron2.utils.file_io import PathManager

    monkeypatch.setattr(PathManager, "get_local_path", lambda path, **kwargs: offline(None))
    with pytest.raises(RuntimeError, match="Could not download .*example.org/chexpert_densenet.pth"):
        build_torchvision_classifier_backbone(
            _cfg_weights("densenet121", "https://example.org/chexpert_densenet.pth"), _shape(3))


def test_unknown_arch():
    with pytest.raises(ValueError, match="TORCHVISION.ARCH must be one of"):
        build_model(_cfg(**{"CXR.CLASSIFIER.TORCHVISION.ARCH": "vgg16"}))


@pytest.mark.parametrize("arch", ["densenet121", "resnet18", "efficientnet_b0", "mobilenet_v3_small"])
def test_backbone_output_shape(arch):
    backbone = build_torchvision_classifier_backbone(_cfg(arch), _shape(3)).eval()
    (name, shape), = backbone.output_shape().items()
    assert shape.stride == 32 and backbone.size_divisibility == 0
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))[name]
    assert out.shape == (1, shape.channels, 2, 3)
    if arch == "densenet121":  # torchvision's DenseNet applies a ReLU after its features
        assert out.min() >= 0


# ---------------------------------------------------------------- losses


def _logits_targets(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(4, 3, generator=g) > 0.5).double()
    weights = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 1]], dtype=torch.float64)
    return logits, targets, weights


def test_masked_bce_with_pos_weight_by_hand():
    logits, targets, weights = _logits_targets()
    pos_weight = torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64)
    p = torch.sigmoid(logits)
    by_hand = -(pos_weight * targets * torch.log(p) + (1 - targets) * torch.log(1 - p))
    expected = (by_hand * weights).sum() / weights.sum()
    torch.testing.assert_close(masked_bce_with_logits(logits, targets, weights, pos_weight), expected)
    torch.testing.assert_close(masked_bce_with_logits(logits, targets), by_hand.div(pos_weight ** targets).mean())


def test_all_zero_weights_give_zero_loss_and_gradient():
    logits, targets, _ = _logits_targets()
    logits.requires_grad_(True)
    for loss in (masked_bce_with_logits(logits, targets, torch.zeros_like(targets)),
                 masked_sigmoid_focal_loss(logits, targets, torch.zeros_like(targets), 0.25, 2.0),
                 softmax_focal_loss(logits, torch.tensor([0, 1, 2, 0]), torch.zeros(3, dtype=torch.float64))):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(grad).all() and not grad.any()


def test_sigmoid_focal_matches_torchvision_and_its_definition():
    logits, targets, weights = _logits_targets()
    elementwise = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none")
    torch.testing.assert_close(masked_sigmoid_focal_loss(logits, targets, weights, 0.25, 2.0),
                               (elementwise * weights).sum() / weights.sum())
    torch.testing.assert_close(masked_sigmoid_focal_loss(logits, targets, None, 0.25, 2.0),
                               torchvision.ops.sigmoid_focal_loss(logits, targets, 0.25, 2.0, reduction="mean"))
    # Lin et al. 2017: FL = -alpha_t (1 - p_t)^gamma log p_t
    p = torch.sigmoid(logits)
    p_t = torch.where(targets > 0, p, 1 - p)
    alpha_t = torch.where(targets > 0, 0.25, 0.75)
    torch.testing.assert_close(elementwise, -alpha_t * (1 - p_t) ** 2 * torch.log(p_t))
    # gamma 0 and no alpha: the masked BCE.
    torch.testing.assert_close(masked_sigmoid_focal_loss(logits, targets, weights, -1.0, 0.0),
                               masked_bce_with_logits(logits, targets, weights))


def test_cross_entropy_with_smoothing_and_weights():
    logits, _, _ = _logits_targets()
    labels = torch.tensor([0, 2, 1, 2])
    log_p = torch.log_softmax(logits, 1)
    eps = 0.1
    smoothed = (1 - eps) * F.one_hot(labels, 3) + eps / 3
    torch.testing.assert_close(softmax_cross_entropy(logits, labels, label_smoothing=eps),
                               -(smoothed * log_p).sum(1).mean())
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    nll = -log_p.gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(softmax_cross_entropy(logits, labels, w), (w[labels] * nll).sum() / w[labels].sum())
    torch.testing.assert_close(softmax_cross_entropy(logits, labels, w, eps),
                               F.cross_entropy(logits, labels, weight=w, label_smoothing=eps))
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        softmax_cross_entropy(logits, torch.tensor([0, 1, 2, 3]))


def test_softmax_focal_by_hand_and_at_gamma_zero():
    logits, _, _ = _logits_targets()
    labels = torch.tensor([0, 2, 1, 2])
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    p_t = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    by_hand = (-w[labels] * (1 - p_t) ** 2 * torch.log(p_t)).sum() / w[labels].sum()
    torch.testing.assert_close(softmax_focal_loss(logits, labels, w, gamma=2.0), by_hand)
    torch.testing.assert_close(softmax_focal_loss(logits, labels, w, gamma=0.0), F.cross_entropy(logits, labels, w))
    # A confident correct prediction (p_t == 1 in floating point) has a finite gradient at gamma < 1.
    confident = torch.tensor([[60.0, 0.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(softmax_focal_loss(confident, torch.tensor([0]), gamma=0.5), confident)
    assert torch.isfinite(grad).all()


def test_build_classification_loss():
    cfg = _cfg()
    node = cfg.CXR.CLASSIFIER
    node.LOSS = "auto"
    assert build_classification_loss(cfg, "multi_label", 3).kind == "bce"
    assert build_classification_loss(cfg, "single_label", 3).kind == "ce"
    node.POS_WEIGHT_VALUES = [1.0, 2.0, 3.0]
    loss = build_classification_loss(cfg, "multi_label", 3)
    assert loss.pos_weight.tolist() == [1.0, 2.0, 3.0] and "pos_weight" not in loss.state_dict()
    with pytest.raises(ValueError, match="has 3 values but the model has 4 classes"):
        build_classification_loss(cfg, "multi_label", 4)
    with pytest.raises(ValueError, match="POS_WEIGHT_VALUES is for multi_label"):
        build_classification_loss(cfg, "single_label", 3)
    node.LOSS = "focal"
    with pytest.raises(ValueError, match="FOCAL_ALPHA"):
        build_classification_loss(cfg, "multi_label", 3)
    node.POS_WEIGHT_VALUES = []
    node.FOCAL_ALPHA = 0.25
    with pytest.raises(ValueError, match="binary task"):
        build_classification_loss(cfg, "single_label", 3)
    binary = build_classification_loss(cfg, "single_label", 2)
    assert binary.class_weights.tolist() == [0.75, 0.25]
    node.LOSS = "bce"
    with pytest.raises(ValueError, match="'bce' is for multi_label"):
        build_classification_loss(cfg, "single_label", 2)
