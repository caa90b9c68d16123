"""cxr_det: detectron2 extension for lesion detection on chest X-rays."""
from cxr_det import compat as _compat

_compat.apply()

from cxr_det.config import add_cxr_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_cxr_config", "__version__"]
