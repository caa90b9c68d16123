"""Spatial fusion of the clinical vector with every FPN level (MDF-Net "3D" fusion).

The clinical vector is first made spatial: "tile" repeats the vector itself at every
position; "deconv" decodes it with two transposed convs into a small map (8x8) that is
resized bilinearly to each level. Each level then has its own fusion layer that keeps
the level's channels, so RPN, RoI heads and RetinaNet heads are unchanged:

* "concat": concatenate the map, then ``depth`` 3x3 convs back to the level's channels.
* "add": the map projected (1x1) to the level's channels and added.
* "film": the map projected (1x1) to a per-channel scale and shift,
  ``features * (1 + gamma) + beta``; the projection starts at zero so the level starts
  unchanged. With "deconv" the scale and shift also vary over the image.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from fvcore.nn import weight_init
from torch import nn

from detectron2.layers import ShapeSpec

__all__ = [
    "ClinicalSpatialFusion",
    "ClinicalMapDecoder",
    "SPATIAL_MODES",
    "SPATIAL_DECODERS",
    "fusion_enabled",
    "clinical_vector_dim",
]

# Values of CXR.FUSION.SPATIAL and CXR.FUSION.SPATIAL_DECODER (cxr_det.config.add_fusion_config).
SPATIAL_MODES = ("none", "concat", "add", "film")
SPATIAL_DECODERS = ("tile", "deconv")


def fusion_enabled(cfg) -> bool:
    """Whether ``cfg.CXR.FUSION`` asks for any fusion (``SPATIAL``, ``ROI`` or, for image
    classifiers, ``POOLED``); else the models are the stock / image-only ones."""
    fusion = cfg.CXR.FUSION
    return fusion.SPATIAL != "none" or bool(fusion.ROI) or bool(fusion.POOLED)


def clinical_vector_dim(cfg) -> int:
    """Size of the clinical encoder's output vector, ``HIDDEN_DIMS[-1]``."""
    if not cfg.CXR.FUSION.HIDDEN_DIMS:
        raise ValueError("CXR.FUSION.HIDDEN_DIMS must list at least one layer width")
    return int(cfg.CXR.FUSION.HIDDEN_DIMS[-1])


def _resize(clinical_map: torch.Tensor, size) -> torch.Tensor:
    """The clinical map at a level's height and width (tiled if it is 1x1)."""
    if clinical_map.shape[-2:] == (1, 1):
        return clinical_map.expand(-1, -1, *size)
    return F.interpolate(clinical_map, size=tuple(size), mode="bilinear", align_corners=False)


class ClinicalMapDecoder(nn.Sequential):
    """Clinical vector (N, D) -> map (N, channels, 8, 8) by two transposed convs."""

    def __init__(self, in_dim: int, channels: int):
        super().__init__(
            nn.ConvTranspose2d(in_dim, channels, kernel_size=4),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, vector):
        return super().forward(vector[:, :, None, None])


class _ConcatFusion(nn.Module):
    def __init__(self, channels, map_channels, depth):
        super().__init__()
        layers, in_channels = [], channels + map_channels
        for i in range(depth):
            conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
            weight_init.c2_xavier_fill(conv)
            layers += [conv] if i == depth - 1 else [conv, nn.ReLU(inplace=True)]
            in_channels = channels
        self.convs = nn.Sequential(*layers)

    def forward(self, x, clinical_map):
        return self.convs(torch.cat([x, _resize(clinical_map, x.shape[-2:])], dim=1))


class _AddFusion(nn.Module):
    def __init__(self, channels, map_channels, depth):
        super().__init__()
        self.proj = nn.Conv2d(map_channels, channels, kernel_size=1)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, clinical_map):
        return x + _resize(self.proj(clinical_map), x.shape[-2:])


class _FiLMFusion(nn.Module):
    def __init__(self, channels, map_channels, depth):
        super().__init__()
        self.proj = nn.Conv2d(map_channels, 2 * channels, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, clinical_map):
        gamma, beta = _resize(self.proj(clinical_map), x.shape[-2:]).chunk(2, dim=1)
        return x * (1 + gamma) + beta


_FUSIONS = {"concat": _ConcatFusion, "add": _AddFusion, "film": _FiLMFusion}


class ClinicalSpatialFusion(nn.Module):
    """Fuses a clinical vector into a backbone's output dict; names, channels, strides kept.

    Args:
        input_shapes: backbone output shapes of the levels to fuse (other levels pass through).
        clinical_dim: size of the clinical vector.
        mode: "concat", "add" or "film".
        decoder: "tile" or "deconv".
        spatial_channels: channels of the "deconv" map.
        fuse_depth: 3x3 convs after concatenation ("concat" only).
    """

    def __init__(self, input_shapes: Dict[str, ShapeSpec], clinical_dim: int, mode: str = "concat",
                 decoder: str = "tile", spatial_channels: int = 16, fuse_depth: int = 1):
        super().__init__()
        if mode not in _FUSIONS:
            raise ValueError(f"CXR.FUSION.SPATIAL must be one of {SPATIAL_MODES}, got {mode!r}")
        if decoder not in SPATIAL_DECODERS:
            raise ValueError(f"CXR.FUSION.SPATIAL_DECODER must be one of {SPATIAL_DECODERS}, got {decoder!r}")
        if fuse_depth < 1:
            raise ValueError(f"CXR.FUSION.FUSE_DEPTH must be >= 1, got {fuse_depth}")
        self.mode = mode
        self.decoder = ClinicalMapDecoder(clinical_dim, spatial_channels) if decoder == "deconv" else None
        map_channels = spatial_channels if self.decoder is not None else clinical_dim
        self.levels = nn.ModuleDict(
            {name: _FUSIONS[mode](shape.channels, map_channels, fuse_depth) for name, shape in input_shapes.items()}
        )

    @classmethod
    def from_config(cls, cfg, input_shapes: Dict[str, ShapeSpec], levels: Sequence[str], clinical_dim: int):
        """Fusion of ``levels`` (the backbone outputs the heads read) per ``cfg.CXR.FUSION``."""
        unknown = sorted(set(levels) - set(input_shapes))
        if unknown:
            raise ValueError(f"the heads read feature maps {unknown} that the backbone does not produce")
        fusion = cfg.CXR.FUSION
        return cls(
            {name: shape for name, shape in input_shapes.items() if name in levels},
            clinical_dim,
            mode=fusion.SPATIAL,
            decoder=fusion.SPATIAL_DECODER,
            spatial_channels=fusion.SPATIAL_CHANNELS,
            fuse_depth=fusion.FUSE_DEPTH,
        )

    def forward(self, features: Dict[str, torch.Tensor], clinical: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``features``: backbone outputs (N, C, H, W) by name; ``clinical``: (N, D) vectors."""
        clinical_map = self.decoder(clinical) if self.decoder is not None else clinical[:, :, None, None]
        return {
            name: self.levels[name](x, clinical_map) if name in self.levels else x
            for name, x in features.items()
        }
