"""Models of cxr_det, registered in detectron2's registries on import."""
from . import backbone  # noqa: F401
