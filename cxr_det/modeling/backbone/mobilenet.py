"""MobileNetV3 (torchvision) as a detectron2 backbone, alone or with an FPN.

Small, fast backbones for CPU experiments and for the compact models of the REFLACX seed
projects (FPN channels 16-64). Weights: ``CXR.MOBILENET.PRETRAINED`` loads torchvision's
ImageNet weights (downloaded once into torch hub's cache; offline, a failed download is an
error naming the fix); with it False the network starts from scratch, with trainable
BatchNorm, and needs no other change to train (see :mod:`cxr_det.modeling.scratch`).
"""
import torch
import torchvision
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from cxr_det.modeling.pretrained import MOBILENET_KEY, explain_download_error

_VARIANTS = {
    "small": (torchvision.models.mobilenet_v3_small, torchvision.models.MobileNet_V3_Small_Weights),
    "large": (torchvision.models.mobilenet_v3_large, torchvision.models.MobileNet_V3_Large_Weights),
}


class MobileNetV3(Backbone):
    """torchvision's MobileNetV3 feature extractor cut into stages by output stride.

    Stage ``res<k>`` is the last block whose output stride is ``2**k``; the stage
    boundaries are found with one dummy forward pass, so both variants work unchanged.
    """

    def __init__(self, variant="small", out_features=("res3", "res4", "res5"), pretrained=False, in_chans=3):
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"CXR.MOBILENET.VARIANT must be one of {sorted(_VARIANTS)}, got {variant!r}")
        builder, weights = _VARIANTS[variant]
        features = builder(weights=weights.DEFAULT if pretrained else None).features
        if in_chans != 3:
            first = features[0][0]
            features[0][0] = nn.Conv2d(in_chans, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)

        stage_end, channels = {}, {}
        with torch.no_grad():
            x = torch.zeros(1, in_chans, 64, 64)
            for i, block in enumerate(features):
                x = block(x)
                stride = 64 // x.shape[-1]
                name = f"res{stride.bit_length() - 1}"
                stage_end[name], channels[name] = i, x.shape[1]
        unknown = [f for f in out_features if f not in stage_end]
        if unknown:
            raise ValueError(f"MobileNetV3 has no stage(s) {unknown}; available: {sorted(stage_end)}")

        self.features = features[: max(stage_end[f] for f in out_features) + 1]
        self._stage_end = {stage_end[f]: f for f in out_features}
        self._out_features = list(out_features)
        self._out_feature_channels = {f: channels[f] for f in out_features}
        self._out_feature_strides = {f: 2 ** int(f[3:]) for f in out_features}

    def forward(self, x):
        outputs = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self._stage_end:
                outputs[self._stage_end[i]] = x
        return outputs


def _bottom_up(cfg, input_shape, out_features):
    """The configured MobileNetV3; a failed download of its ImageNet weights names the fix."""
    try:
        return MobileNetV3(
            variant=cfg.CXR.MOBILENET.VARIANT,
            out_features=out_features,
            pretrained=cfg.CXR.MOBILENET.PRETRAINED,
            in_chans=input_shape.channels,
        )
    except OSError as exc:  # URLError, connection and timeout errors of the download
        if not cfg.CXR.MOBILENET.PRETRAINED:
            raise
        _, weights = _VARIANTS.get(cfg.CXR.MOBILENET.VARIANT, _VARIANTS["small"])
        raise explain_download_error(exc, cfg, MOBILENET_KEY, url=weights.DEFAULT.url) from exc


@BACKBONE_REGISTRY.register()
def build_mobilenetv3_backbone(cfg, input_shape: ShapeSpec):
    return _bottom_up(cfg, input_shape, cfg.CXR.MOBILENET.OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_mobilenetv3_fpn_backbone(cfg, input_shape: ShapeSpec):
    """MobileNetV3 + FPN with P2/P3..P6 like detectron2's ResNet-FPN (for R-CNN)."""
    return FPN(
        bottom_up=_bottom_up(cfg, input_shape, cfg.MODEL.FPN.IN_FEATURES),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
