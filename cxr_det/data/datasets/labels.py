"""Former home of the label vocabularies; they now live with their formats.

* REFLACX and MDF-Net: :mod:`cxr_det.formats.reflacx_format`
* VinDr-CXR: :mod:`cxr_det.formats.vindr_format`

Re-exported here only for the modules that still import them from this one (the config
module, the synthetic writers, tools/convert_to_coco.py, tests/test_synthetic.py and
tests/test_vindr.py); delete this module once none does.
"""
from cxr_det.formats import NO_FINDING as VINDR_NO_FINDING
from cxr_det.formats.reflacx_format import (
    MDF_NET_CLASSES,
    REFLACX_CERTAINTY_NAMES,
    REFLACX_LABELS,
    REFLACX_LESION_LABELS,
    REFLACX_NON_LESION_LABELS,
    REFLACX_PHASE1_LABELS,
    REFLACX_PHASE1_TO_LABEL,
    REFLACX_PRESENT_CERTAINTY,
)
from cxr_det.formats.vindr_format import (
    VINDR_5_CLASSES,
    VINDR_GLOBAL_LABELS,
    VINDR_KAGGLE_CLASSES,
    VINDR_LOCAL_LABELS,
    VINDR_NO_FINDING_ID,
)
