"""Models of cxr_det. Importing this package registers them in detectron2's registries
(``META_ARCH_REGISTRY``, ``ROI_HEADS_REGISTRY``, ``BACKBONE_REGISTRY``): the one explicit
step that makes ``MODEL.META_ARCHITECTURE: ClinicalGeneralizedRCNN`` and friends resolvable."""
from . import backbone  # noqa: F401
from .classifier import ClinicalImageClassifier, ImageClassifier
from .clinical_encoder import ClinicalEncoder
from .fusion import ClinicalSpatialFusion
from .meta_arch import ClinicalGeneralizedRCNN, ClinicalRetinaNet
from .roi_heads import ClinicalStandardROIHeads

__all__ = [
    "ClinicalEncoder",
    "ClinicalGeneralizedRCNN",
    "ClinicalImageClassifier",
    "ClinicalRetinaNet",
    "ClinicalSpatialFusion",
    "ClinicalStandardROIHeads",
    "ImageClassifier",
]
