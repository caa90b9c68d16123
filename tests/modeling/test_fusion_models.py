"""Clinical-fusion detectors: every meta-architecture x fusion mode runs, trains and equals stock when off."""
import logging
from pathlib import Path

import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_det import add_cxr_config
from cxr_det.config import add_fusion_config
from cxr_det.modeling import ClinicalEncoder, ClinicalSpatialFusion, ClinicalStandardROIHeads

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HEIGHT, WIDTH = 64, 80
# name -> (SPATIAL, SPATIAL_DECODER, FUSE_DEPTH)
SPATIAL = {
    "none": ("none", "tile", 1),
    "concat-tile": ("concat", "tile", 1),
    "concat-deconv": ("concat", "deconv", 2),
    "add": ("add", "tile", 1),
    "film": ("film", "tile", 1),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _base_cfg(yaml):
    cfg = get_cfg()
    add_cxr_config(cfg)
    if "FUSION" not in cfg.CXR:
        add_fusion_config(cfg)
    cfg.merge_from_file(str(CONFIGS / yaml))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.NAME = "build_mobilenetv3_fpn_backbone"
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.CXR.CLINICAL.ENABLED = True
    cfg.CXR.CLINICAL.NUMERIC = ["age", "temperature", "heartrate"]
    cfg.CXR.CLINICAL.CATEGORICAL = ["gender"]
    cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [3]
    cfg.CXR.FUSION.EMBED_DIM = 4
    cfg.CXR.FUSION.HIDDEN_DIMS = [16, 8]
    cfg.CXR.FUSION.SPATIAL_CHANNELS = 4
    return cfg


def _tiny_rcnn_cfg():
    cfg = _base_cfg("Base-CXR-RCNN-FPN.yaml")
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[8], [16], [32], [64], [128]]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    return cfg


def _tiny_retinanet_cfg():
    cfg = _base_cfg("Base-CXR-RetinaNet.yaml")
    cfg.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128]]
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 50
    return cfg


BASE_CFGS = {"faster": _tiny_rcnn_cfg(), "retinanet": _tiny_retinanet_cfg()}


def _cfg(arch, spatial="none", roi=False, stock=False):
    cfg = BASE_CFGS["retinanet" if arch == "retinanet" else "faster"].clone()
    cfg.MODEL.MASK_ON = arch == "mask"
    mode, decoder, depth = SPATIAL[spatial]
    cfg.CXR.FUSION.SPATIAL, cfg.CXR.FUSION.SPATIAL_DECODER, cfg.CXR.FUSION.FUSE_DEPTH = mode, decoder, depth
    cfg.CXR.FUSION.ROI = roi
    if stock:
        cfg.MODEL.META_ARCHITECTURE = "RetinaNet" if arch == "retinanet" else "GeneralizedRCNN"
    else:
        cfg.MODEL.META_ARCHITECTURE = "ClinicalRetinaNet" if arch == "retinanet" else "ClinicalGeneralizedRCNN"
    return cfg


def _clinical(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "numeric": torch.randn(3, generator=g),
        "missing": (torch.rand(3, generator=g) > 0.7).float(),
        "categorical": torch.randint(0, 3, (1,), generator=g),
    }


def _inputs(with_clinical=(True, True)):
    g = torch.Generator().manual_seed(0)
    inputs = []
    for i, has_clinical in enumerate(with_clinical):
        boxes = torch.tensor([[8.0, 10.0, 40.0, 44.0], [30.0, 20.0, 70.0, 60.0]])
        instances = Instances((HEIGHT, WIDTH), gt_boxes=Boxes(boxes), gt_classes=torch.tensor([0, 3]))
        masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[k, y0:y1, x0:x1] = True
        instances.gt_masks = BitMasks(masks)
        x = {"image": torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=g).float(), "instances": instances,
             "height": HEIGHT, "width": WIDTH}
        if has_clinical:
            x["clinical"] = _clinical(i)
        inputs.append(x)
    return inputs


def _train_losses(model, inputs, seed=0):
    model.train()
    torch.manual_seed(seed)
    with EventStorage():
        return model(inputs)


def _grads_nonzero(params):
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


CASES = [(arch, spatial, roi) for arch in ("faster", "mask") for spatial in SPATIAL for roi in (False, True)]
CASES += [("retinanet", spatial, False) for spatial in SPATIAL]


@pytest.mark.parametrize("arch,spatial,roi", CASES, ids=[f"{a}-{s}-{'roi' if r else 'noroi'}" for a, s, r in CASES])
def test_train_and_infer(arch, spatial, roi):
    torch.manual_seed(0)
    model = build_model(_cfg(arch, spatial, roi))
    fused = spatial != "none" or roi
    assert (model.clinical_encoder is not None) == fused
    assert (model.spatial_fusion is not None) == (spatial != "none")
    if arch != "retinanet":
        assert isinstance(model.roi_heads, ClinicalStandardROIHeads) == roi
        if roi:
            assert model.roi_heads.box_predictor.cls_score.in_features == 32 + 8

    losses = _train_losses(model, _inputs())
    expected = {"loss_cls", "loss_box_reg"} if arch == "retinanet" else {
        "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} | ({"loss_mask"} if arch == "mask" else set())
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    if spatial == "film" and not roi:
        # FiLM starts at scale = shift = 0: at step 0 only its projection gets gradients.
        assert any(_grads_nonzero(model.spatial_fusion.parameters()))
    elif fused:
        assert all(_grads_nonzero(model.clinical_encoder.parameters()))

    model.eval()
    with torch.no_grad():
        outputs = model(_inputs(with_clinical=(True, False)))
    assert len(outputs) == 2
    for out in outputs:
        pred = out["instances"]
        assert pred.image_size == (HEIGHT, WIDTH)
        assert len(pred) > 0 and pred.pred_boxes.tensor.shape == (len(pred), 4)
        assert torch.isfinite(pred.scores).all()
        if arch == "mask":
            assert pred.pred_masks.shape == (len(pred), HEIGHT, WIDTH)


@pytest.mark.parametrize("arch", ["faster", "mask", "retinanet"])
def test_fusion_off_equals_stock(arch):
    torch.manual_seed(0)
    stock = build_model(_cfg(arch, stock=True))
    torch.manual_seed(1)
    clinical = build_model(_cfg(arch))
    assert {k: v.shape for k, v in stock.state_dict().items()} == {k: v.shape for k, v in clinical.state_dict().items()}
    clinical.load_state_dict(stock.state_dict(), strict=True)

    stock_losses, clinical_losses = _train_losses(stock, _inputs()), _train_losses(clinical, _inputs())
    assert stock_losses.keys() == clinical_losses.keys()
    for k in stock_losses:
        assert torch.equal(stock_losses[k], clinical_losses[k]), k

    stock.eval(), clinical.eval()
    with torch.no_grad():
        expected, actual = stock(_inputs()), clinical(_inputs())
    for e, a in zip(expected, actual):
        e, a = e["instances"], a["instances"]
        assert len(e) > 0 and e.get_fields().keys() == a.get_fields().keys()
        for name in e.get_fields():
            ev, av = e.get(name), a.get(name)
            ev, av = (ev.tensor, av.tensor) if isinstance(ev, Boxes) else (ev, av)
            assert torch.equal(ev, av), name


def test_missing_clinical_is_all_missing():
    model = build_model(_cfg("faster", "concat-tile", roi=True)).eval()
    explicit = _inputs()
    explicit[1]["clinical"] = {
        "numeric": torch.zeros(3), "missing": torch.ones(3), "categorical": torch.zeros(1, dtype=torch.int64)
    }
    with torch.no_grad():
        implicit_out, explicit_out = model(_inputs(with_clinical=(True, False))), model(explicit)
        with_clinical_out = model(_inputs())
    assert torch.equal(implicit_out[1]["instances"].scores, explicit_out[1]["instances"].scores)
    assert not torch.equal(implicit_out[1]["instances"].scores, with_clinical_out[1]["instances"].scores)


def test_roi_fusion_with_retinanet_raises():
    with pytest.raises(ValueError, match="RetinaNet has no RoI head"):
        build_model(_cfg("retinanet", "concat-tile", roi=True))


def test_bad_clinical_inputs_raise():
    model = build_model(_cfg("faster", "add")).eval()
    inputs = _inputs()
    inputs[0]["clinical"]["numeric"] = torch.zeros(5)
    with pytest.raises(ValueError, match="expected 3"):
        model(inputs)
    inputs = _inputs()
    inputs[0]["clinical"]["categorical"] = torch.tensor([3])
    with pytest.raises(ValueError, match="CATEGORICAL_SIZES"):
        model(inputs)


def test_encoder_default_categorical_sizes(caplog):
    cfg = _cfg("faster", "add")
    cfg.CXR.CLINICAL.CATEGORICAL = ["gender", "acuity_band"]
    cfg.CXR.CLINICAL.CATEGORICAL_SIZES = []
    with caplog.at_level(logging.WARNING, logger="cxr_det.modeling.clinical_encoder"):
        encoder = ClinicalEncoder.from_config(cfg)
    assert encoder.categorical_sizes == [8, 8] and "CATEGORICAL_SIZES is empty" in caplog.text
    out = encoder(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([[0, 7], [1, 2]]))
    assert out.shape == (2, 8)


def test_film_starts_as_identity_and_keeps_shapes():
    shapes = {"p2": ShapeSpec(channels=16, stride=4), "p3": ShapeSpec(channels=16, stride=8)}
    features = {"p2": torch.randn(2, 16, 12, 10), "p3": torch.randn(2, 16, 6, 5), "p4": torch.randn(2, 16, 3, 3)}
    clinical = torch.randn(2, 8)
    for decoder in ("tile", "deconv"):
        film = ClinicalSpatialFusion(shapes, 8, mode="film", decoder=decoder)
        out = film(features, clinical)
        assert all(torch.equal(out[k], features[k]) for k in features)
        for mode in ("concat", "add", "film"):
            fusion = ClinicalSpatialFusion(shapes, 8, mode=mode, decoder=decoder, spatial_channels=4, fuse_depth=2)
            out = fusion(features, clinical)
            assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in features.items()}
            assert out["p4"] is features["p4"]
            out["p2"].sum().backward()
            assert clinical.grad is None or torch.isfinite(clinical.grad).all()


def test_encoder_keeps_the_scale_of_standardised_inputs():
    """He init: a two-layer encoder's output is not squashed towards 0 (PyTorch's default init
    shrinks it about 2.5x per layer, which left the fusion layers too weak a signal to learn from)."""
    torch.manual_seed(0)
    encoder = ClinicalEncoder(9, [3], embed_dim=8, hidden_dims=(32, 32))
    numeric = torch.randn(512, 9)
    out = encoder(numeric, torch.zeros(512, 9), torch.randint(0, 3, (512, 1)))
    rms = out.pow(2).mean().sqrt().item()
    assert 0.4 < rms < 2.0, rms
    assert all(not m.bias.detach().any() for m in encoder.mlp if isinstance(m, torch.nn.Linear))
