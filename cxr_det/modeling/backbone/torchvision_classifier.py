"""torchvision's ImageNet classifiers as detectron2 backbones for image-level classification.

The feature extractor of DenseNet-121, ResNet-18/34/50, EfficientNet-B0 or MobileNetV3
(``CXR.CLASSIFIER.TORCHVISION.ARCH``, one of :data:`cxr_det.config.TORCHVISION_CLASSIFIERS`):
everything before torchvision's global pooling and classifier, one output ``"res5"`` at
stride 32 (named by stride like detectron2's ResNet and :mod:`.mobilenet`). Its parameters keep
torchvision's names, so a torchvision state dict loads into it as it is.

Weights (``CXR.CLASSIFIER.TORCHVISION.WEIGHTS``): ``""`` random initialisation (torchvision's),
``"imagenet"`` torchvision's default ImageNet weights (downloaded once into torch hub's cache),
or the path or URL of a torchvision state dict of the same architecture (its classifier head,
``fc.*`` / ``classifier.*``, is dropped; every feature parameter must be there).

One-channel input (:func:`convert_first_conv_to_one_channel`): the first convolution of an
RGB network applied to a gray image through its kernel summed over the three input channels,
the usual way to reuse RGB weights on X-rays (as timm's ``adapt_input_conv``).
"""
import logging
import os
import re
from collections.abc import Mapping
from typing import Dict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.utils.file_io import PathManager

from cxr_det.config import TORCHVISION_CLASSIFIERS
from cxr_det.modeling.pretrained import is_remote

__all__ = [
    "TorchvisionClassifierBackbone",
    "OneChannelConv2d",
    "build_torchvision_classifier_backbone",
    "convert_first_conv_to_one_channel",
    "load_torchvision_state_dict",
    "read_state_dict",
    "torchvision_classifier_backbone",
]

logger = logging.getLogger(__name__)

ARCH_KEY = "CXR.CLASSIFIER.TORCHVISION.ARCH"
WEIGHTS_KEY = "CXR.CLASSIFIER.TORCHVISION.WEIGHTS"
OUTPUT_NAME = "res5"
OUTPUT_STRIDE = 32

# Per family: the torchvision children that make the feature extractor, in forward order,
# and the classifier head left out.
_FAMILIES = {
    "densenet": (("features",), "classifier"),
    "resnet": (("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), "fc"),
    "efficientnet": (("features",), "classifier"),
    "mobilenet_v3": (("features",), "classifier"),
}
# Parameter names of DenseNet files saved before torchvision 0.3 ("norm.1" for "norm1"), which
# torchvision's own densenet121 download still uses.
_LEGACY_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def _family(arch: str) -> str:
    if arch not in TORCHVISION_CLASSIFIERS:
        raise ValueError(f"{ARCH_KEY} must be one of {TORCHVISION_CLASSIFIERS}, got {arch!r}")
    return next(f for f in _FAMILIES if arch.startswith(f))


class TorchvisionClassifierBackbone(Backbone):
    """The feature extractor of a torchvision classifier; output ``{"res5": (N, C, H/32, W/32)}``.

    Args:
        model: a torchvision model of architecture ``arch`` (its weights are kept; its pooling
            and classifier head are not).
        arch: its name in :data:`cxr_det.config.TORCHVISION_CLASSIFIERS`.

    DenseNet's features end with a BatchNorm; the ReLU torchvision applies after them in its
    ``forward`` is applied here too. Input sizes need not be multiples of 32 (no FPN), so
    ``size_divisibility`` is 0.
    """

    def __init__(self, model: nn.Module, arch: str):
        super().__init__()
        family = _family(arch)
        children, head = _FAMILIES[family]
        self.arch = arch
        self._children = children
        self._head = head
        for name in children:
            self.add_module(name, getattr(model, name))
        linear = next(m for m in getattr(model, head).modules() if isinstance(m, nn.Linear))
        self._final_relu = family == "densenet"
        self._out_features = [OUTPUT_NAME]
        self._out_feature_channels = {OUTPUT_NAME: linear.in_features}
        self._out_feature_strides = {OUTPUT_NAME: OUTPUT_STRIDE}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, C_in, H, W) normalised images -> ``{"res5": (N, C, ceil(H/32), ceil(W/32))}``."""
        for name in self._children:
            x = getattr(self, name)(x)
        if self._final_relu:
            x = F.relu(x)
        return {OUTPUT_NAME: x}

    @property
    def head_name(self) -> str:
        """Prefix of the torchvision classifier head's parameters (``"fc"`` or ``"classifier"``)."""
        return self._head


class OneChannelConv2d(Conv2d):
    """An RGB network's convolution applied to one-channel images: its kernel summed over RGB.

    ``weight`` keeps the RGB shape (out, 3, kh, kw), so RGB checkpoints (torchvision files,
    detectron2's ``MODEL.WEIGHTS``) load into it unchanged and a run's checkpoints stay in the
    RGB network's layout. On a gray image ``x`` (N, 1, H, W) it computes
    ``conv(x, weight.sum(1))``, which equals the RGB convolution of ``x`` repeated on three
    channels, values and gradients, at a third of the cost: training it is training the RGB
    network on gray images replicated to RGB. ``norm`` and ``activation`` as detectron2's
    :class:`~detectron2.layers.Conv2d`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(
                f"OneChannelConv2d takes one-channel images, got {x.shape[1]} channels: "
                "CXR.CLASSIFIER.IN_CHANNELS 1 needs INPUT.FORMAT 'L' and one MODEL.PIXEL_MEAN / PIXEL_STD value"
            )
        x = F.conv2d(x, self.weight.sum(dim=1, keepdim=True), self.bias, self.stride, self.padding,
                     self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def convert_first_conv_to_one_channel(backbone: nn.Module) -> str:
    """Replace ``backbone``'s first convolution (the first ``nn.Conv2d`` in module order, which
    must take 3 channels) by a :class:`OneChannelConv2d` sharing its parameters, norm and
    activation; returns its name (``"conv1"``, ``"features.conv0"``, ``"stem.conv1"``, ...).

    Raises:
        ValueError: no convolution, or the first one does not take 3 channels, is grouped or
            pads other than with zeros.
    """
    name, conv = next(((n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None:
        raise ValueError(f"{type(backbone).__name__} has no convolution to adapt to one-channel input")
    if isinstance(conv, OneChannelConv2d):
        return name
    if conv.in_channels != 3 or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(
            f"{type(backbone).__name__}.{name} takes {conv.in_channels} channels (groups {conv.groups}, padding "
            f"{conv.padding_mode}); one-channel input sums the kernel of an ungrouped, zero-padded RGB convolution"
        )
    gray = OneChannelConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
        norm=getattr(conv, "norm", None), activation=getattr(conv, "activation", None),
    )
    gray.weight = conv.weight
    gray.bias = conv.bias
    parent_name, _, attr = name.rpartition(".")
    setattr(backbone.get_submodule(parent_name), attr, gray)
    return name


def _state_dict_of(obj, source: str) -> Dict[str, torch.Tensor]:
    """The tensor mapping of a loaded file: a state dict, or one under "state_dict" / "model"."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{WEIGHTS_KEY} {source}: not a torchvision state dict (a mapping of names to tensors)")
    return dict(obj)


def read_state_dict(source: str) -> Dict[str, torch.Tensor]:
    """The state dict at a local path or URL (downloaded into detectron2's file cache).

    Raises:
        FileNotFoundError: a local path that does not exist.
        RuntimeError: a failed download, naming the offline fix.
        ValueError: a file that is not a state dict.
    """
    if is_remote(source):
        try:
            local = PathManager.get_local_path(source)
        except OSError as exc:  # URLError, connection and timeout errors of the download
            raise RuntimeError(
                f"Could not download the weights that {WEIGHTS_KEY} asks for ({source}): {type(exc).__name__}: "
                f"{exc}. Without network access: download it elsewhere and set {WEIGHTS_KEY} /path/to/"
                f"{os.path.basename(source) or 'weights.pth'}, or train from scratch: {WEIGHTS_KEY} \"\""
            ) from exc
    else:
        local = source[len("file://"):] if source.startswith("file://") else source
        if not os.path.isfile(local):
            raise FileNotFoundError(f"{WEIGHTS_KEY} {source}: no such file")
    try:
        obj = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, unsupported globals, truncated files
        raise ValueError(f"{WEIGHTS_KEY} {source}: cannot be read as a torch state dict: {exc}") from exc
    return _state_dict_of(obj, source)


def _summarise(keys, limit=8):
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_torchvision_state_dict(backbone: TorchvisionClassifierBackbone, state_dict: Mapping[str, torch.Tensor],
                                source: str = "the state dict") -> None:
    """Load a torchvision state dict of ``backbone.arch`` into ``backbone``, strictly.

    A ``module.`` prefix (DataParallel) is stripped, the classifier head's parameters are
    dropped, and DenseNet's legacy names (``norm.1``) are read as torchvision reads them.

    Raises:
        ValueError: any feature parameter missing, unexpected or of another shape, naming them.
    """
    state = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.split(".", 1)[0] == backbone.head_name:
            continue
        if backbone.arch.startswith("densenet"):
            key = _LEGACY_DENSENET_KEY.sub(r"\1\2.", key)
        state[key] = value
    expected = backbone.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_summarise(unexpected)}")
    if shapes:
        problems.append(f"other shapes (file vs model) {len(shapes)}: {_summarise(shapes)}")
    if problems:
        raise ValueError(
            f"{WEIGHTS_KEY} {source} does not fit torchvision's {backbone.arch} ({ARCH_KEY}): " + "; ".join(problems)
        )
    backbone.load_state_dict(state, strict=True)


def _imagenet_model(arch: str) -> nn.Module:
    """torchvision's ``arch`` with its default ImageNet weights; a failed download names the fix."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights)
    except OSError as exc:  # URLError, connection and timeout errors of the download
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise RuntimeError(
            f"Could not download torchvision's ImageNet weights of {arch} that {WEIGHTS_KEY} imagenet asks for "
            f"({weights.url}): {type(exc).__name__}: {exc}. Without network access: copy that file to {cache}, "
            f"or set {WEIGHTS_KEY} /path/to/{os.path.basename(weights.url)} (a local copy), "
            f'or train from scratch: {WEIGHTS_KEY} ""'
        ) from exc


def torchvision_classifier_backbone(arch: str, weights: str = "",
                                    in_channels: int = 3) -> TorchvisionClassifierBackbone:
    """The backbone of ``arch`` with ``weights`` ("", "imagenet", a path or a URL) for
    ``in_channels`` (3, or 1: :func:`convert_first_conv_to_one_channel` after loading)."""
    _family(arch)
    if in_channels not in (1, 3):
        raise ValueError(f"torchvision classifier backbones take 1 or 3 input channels, got {in_channels}")
    if weights == "imagenet":
        backbone = TorchvisionClassifierBackbone(_imagenet_model(arch), arch)
        logger.info("Backbone %s: torchvision's ImageNet weights", arch)
    else:
        backbone = TorchvisionClassifierBackbone(torchvision.models.get_model(arch, weights=None), arch)
        if weights:
            load_torchvision_state_dict(backbone, read_state_dict(weights), weights)
            logger.info("Backbone %s: weights from %s", arch, weights)
    if in_channels == 1:
        convert_first_conv_to_one_channel(backbone)
    return backbone


@BACKBONE_REGISTRY.register()
def build_torchvision_classifier_backbone(cfg, input_shape: ShapeSpec):
    """``CXR.CLASSIFIER.TORCHVISION.ARCH`` with ``WEIGHTS``; ``input_shape.channels`` 3 or 1.

    Raises:
        ValueError: an unknown architecture or a state dict that does not fit it (naming the keys).
        FileNotFoundError: a weights path that does not exist.
        RuntimeError: a failed download, naming the offline fix.
    """
    node = cfg.CXR.CLASSIFIER.TORCHVISION
    return torchvision_classifier_backbone(node.ARCH, node.WEIGHTS, input_shape.channels)
