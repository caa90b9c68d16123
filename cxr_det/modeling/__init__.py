"""Models of cxr_det, registered in detectron2's registries on import."""
from . import backbone  # noqa: F401
from .clinical_encoder import ClinicalEncoder
from .config import add_fusion_config
from .fusion import ClinicalSpatialFusion
from .meta_arch import ClinicalGeneralizedRCNN, ClinicalRetinaNet
from .roi_heads import ClinicalStandardROIHeads

__all__ = [
    "ClinicalEncoder",
    "ClinicalGeneralizedRCNN",
    "ClinicalRetinaNet",
    "ClinicalSpatialFusion",
    "ClinicalStandardROIHeads",
    "add_fusion_config",
]
