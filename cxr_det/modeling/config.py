"""Config keys of the clinical-fusion models, under ``cfg.CXR.FUSION`` (see :func:`add_fusion_config`)."""
from detectron2.config import CfgNode as CN

__all__ = ["add_fusion_config", "fusion_enabled", "clinical_vector_dim", "SPATIAL_MODES", "SPATIAL_DECODERS"]

SPATIAL_MODES = ("none", "concat", "add", "film")
SPATIAL_DECODERS = ("tile", "deconv")


def add_fusion_config(cfg):
    """Add ``cfg.CXR.FUSION`` (and ``CXR.CLINICAL.CATEGORICAL_SIZES`` if absent); returns ``cfg``.

    The fusion models are ``MODEL.META_ARCHITECTURE: ClinicalGeneralizedRCNN`` or
    ``ClinicalRetinaNet``; with ``SPATIAL: none`` and ``ROI: False`` they are the stock models.
    """
    if "CXR" not in cfg:
        cfg.CXR = CN()
    if "CLINICAL" not in cfg.CXR:
        from cxr_det.data.clinical.config import add_clinical_config

        add_clinical_config(cfg)
    if "CATEGORICAL_SIZES" not in cfg.CXR.CLINICAL:
        # Embedding table size of each categorical feature (vocabulary + 1 for unknown);
        # empty: 8 per feature.
        cfg.CXR.CLINICAL.CATEGORICAL_SIZES = []

    _C = cfg.CXR.FUSION = CN()
    # Fusion of the clinical vector with every FPN level (MDF-Net "3D"): "none"; "concat"
    # (concatenate the clinical map, then FUSE_DEPTH 3x3 convs back to the level's channels);
    # "add" (clinical map projected to the level's channels and added); "film" (per-channel
    # scale and shift, features * (1 + gamma) + beta, starting at gamma = beta = 0).
    _C.SPATIAL = "none"
    # How the clinical vector becomes a map: "tile" (the vector repeated at every position,
    # HIDDEN_DIMS[-1] channels); "deconv" (a learned transposed-conv decoder to an 8x8 map of
    # SPATIAL_CHANNELS channels, resized to each level; spatially varying scale/shift for "film").
    _C.SPATIAL_DECODER = "tile"
    # Channels of the clinical map made by the "deconv" decoder.
    _C.SPATIAL_CHANNELS = 16
    # Number of 3x3 convs after concatenation in "concat" mode (>= 1; ReLU between them).
    _C.FUSE_DEPTH = 1
    # Concatenate the clinical vector of each RoI's image to the box-head features before the
    # box predictor (MDF-Net "1D"; R-CNN only, uses ClinicalStandardROIHeads).
    _C.ROI = False
    # Embedding size of each categorical feature in the clinical encoder.
    _C.EMBED_DIM = 8
    # Hidden layers of the clinical encoder's MLP (Linear + ReLU each); the clinical vector
    # has HIDDEN_DIMS[-1] elements.
    _C.HIDDEN_DIMS = [64, 64]
    # Dropout after each hidden layer of the clinical encoder.
    _C.DROPOUT = 0.0
    return cfg


def fusion_enabled(cfg) -> bool:
    """Whether ``cfg.CXR.FUSION`` asks for any fusion (else the models are the stock ones)."""
    return cfg.CXR.FUSION.SPATIAL != "none" or bool(cfg.CXR.FUSION.ROI)


def clinical_vector_dim(cfg) -> int:
    """Size of the clinical encoder's output vector, ``HIDDEN_DIMS[-1]``."""
    if not cfg.CXR.FUSION.HIDDEN_DIMS:
        raise ValueError("CXR.FUSION.HIDDEN_DIMS must list at least one layer width")
    return int(cfg.CXR.FUSION.HIDDEN_DIMS[-1])
