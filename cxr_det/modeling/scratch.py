"""Training from scratch: the config changes a ResNet needs when no pretrained weights are given.

detectron2's ResNet configs expect ImageNet weights (``MODEL.WEIGHTS``): their BatchNorm is
frozen (``FrozenBN``, a fixed affine map), the stem and ``res2`` are frozen
(``MODEL.BACKBONE.FREEZE_AT 2``) and the stride sits in the 1x1 convs to match the MSRA
Caffe2 weights. From random weights a frozen BatchNorm normalises nothing: activations grow
through the 50 layers, the first loss is in the hundreds and training reaches Inf/NaN
within 3 iterations (every R50 R-CNN and RetinaNet config here did, with
``MODEL.WEIGHTS ""``).

:func:`adapt_for_scratch` switches such a config to the recipe of detectron2's
``configs/Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml`` (after He, Girshick and Dollar,
"Rethinking ImageNet Pre-training", ICCV 2019): GroupNorm in the backbone and the FPN,
nothing frozen, stride in the 3x3 convs. GroupNorm rather than (Sync)BN because these
configs run with 1 to 8 images per batch, too few for batch statistics (the VinDr RetinaNet
seed uses 1). The R-CNN and RetinaNet heads are left as they are: they start from random
weights with ImageNet weights too, and with a normalised pyramid they train stably
(detectron2's recipe also puts GroupNorm in a 4conv1fc box head, for accuracy, not
stability; set ``MODEL.ROI_BOX_HEAD.NUM_CONV 4 NUM_FC 1 NORM "GN"`` to follow it fully).
The clinical encoder and fusion layers need nothing: they never have pretrained weights.

MobileNetV3 backbones (``CXR.MOBILENET``) use torchvision's trainable BatchNorm and freeze
nothing, so they train from scratch unchanged; so does any config that already sets the
keys above. For those the function changes nothing and says nothing.
"""
import logging

__all__ = ["RESNET_BACKBONES", "SCRATCH_NORM", "adapt_for_scratch", "scratch_changes"]

logger = logging.getLogger(__name__)

# detectron2's backbone builders that read MODEL.RESNETS (and FREEZE_AT); the FPN ones also MODEL.FPN.
RESNET_BACKBONES = ("build_resnet_backbone", "build_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone")
# Normalisation of the backbone and FPN from scratch: independent of the batch size.
SCRATCH_NORM = "GN"


def scratch_changes(cfg):
    """The ``(key, old, new)`` changes :func:`adapt_for_scratch` would make to ``cfg``; empty
    when pretrained weights are given (``MODEL.WEIGHTS``) or the backbone needs none."""
    if cfg.MODEL.WEIGHTS or cfg.MODEL.BACKBONE.NAME not in RESNET_BACKBONES:
        return []
    wanted = [
        ("MODEL.RESNETS.NORM", cfg.MODEL.RESNETS.NORM, SCRATCH_NORM if cfg.MODEL.RESNETS.NORM == "FrozenBN" else None),
        ("MODEL.BACKBONE.FREEZE_AT", cfg.MODEL.BACKBONE.FREEZE_AT, 0),
        ("MODEL.RESNETS.STRIDE_IN_1X1", cfg.MODEL.RESNETS.STRIDE_IN_1X1, False),
    ]
    if "fpn" in cfg.MODEL.BACKBONE.NAME:
        wanted.append(("MODEL.FPN.NORM", cfg.MODEL.FPN.NORM, SCRATCH_NORM if not cfg.MODEL.FPN.NORM else None))
    return [(key, old, new) for key, old, new in wanted if new is not None and old != new]


def adapt_for_scratch(cfg):
    """Make a ResNet config without pretrained weights trainable from scratch; returns ``cfg``.

    With ``MODEL.WEIGHTS`` empty and a detectron2 ResNet backbone (:data:`RESNET_BACKBONES`):
    ``MODEL.RESNETS.NORM`` FrozenBN -> GN, ``MODEL.BACKBONE.FREEZE_AT`` -> 0,
    ``MODEL.RESNETS.STRIDE_IN_1X1`` -> False, and for FPN backbones ``MODEL.FPN.NORM`` "" -> GN
    (detectron2's ``Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml``; see the module's docstring
    for why). Keys already set otherwise by the config are kept; when something changes, one
    warning lists each key with its old and new value. A no-op for MobileNetV3 backbones and
    for configs with weights. ``cfg`` must not be frozen.
    """
    changes = scratch_changes(cfg)
    if not changes:
        return cfg
    for key, _, new in changes:
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = new
    listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)
    logger.warning(
        f'MODEL.WEIGHTS is "": the ResNet backbone starts from random weights, which its set-up for '
        f"ImageNet weights cannot train (frozen BatchNorm diverges within a few iterations; frozen stages "
        f"stay random). Switched to detectron2's from-scratch set-up "
        f"(Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml): {listed}. To train the configured architecture "
        f"instead, set MODEL.WEIGHTS to ImageNet weights (a local copy of "
        f"detectron2://ImageNetPretrained/MSRA/R-50.pkl)."
    )
    return cfg
