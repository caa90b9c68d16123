"""Evaluation of chest X-ray detections: every protocol in one pass, from one set of options.

Modules:

- :mod:`.options`: :class:`EvalOptions`, built from the option table
  :data:`cxr_det.config.CXR_EVAL_OPTIONS` (config keys, fields and tool flags alike).
- :mod:`.protocols`: the protocol registry (:data:`~.protocols.PROTOCOLS`) and the helpers
  the protocol modules share. One module per protocol, each citing its reference scorer:
  :mod:`.coco` (pycocotools ``COCOeval``), :mod:`.vinbigdata` (PASCAL VOC devkit / Kaggle
  VinBigData metric), :mod:`.iobb` (MDF-Net IoBB, Hsieh et al., Scientific Reports 2023), :mod:`.froc`
  (LUNA16 / CAMELYON16 FROC as MONAI computes it), :mod:`.image_level` (image-level ROC AUC
  and AP as scikit-learn defines them).
- :mod:`.matching`: matching of detections to ground truth and the precision-recall
  curves every box protocol builds on; :mod:`.bootstrap`: confidence intervals and paired
  comparisons over images.
- :mod:`.core`: :func:`evaluate_detections` (input checks, the protocols, tables and
  files); :mod:`.cxr_evaluator`: :class:`CXRDetectionEvaluator`, the detectron2 evaluator,
  with the ground truth cached per dataset registration options; :mod:`.coco_files`: the
  evaluation's inputs written as COCO files and read back (``tools/evaluate.py``).
- :mod:`.report`, :mod:`.plots`: tables, ``metrics.json``, ``per_class.csv``, PNG curves;
  :mod:`.run_comparison`: two training runs compared from their evaluator files
  (``tools/benchmark_fusion.py``).
- :mod:`.classification`: image-level classification (multi-label and single-label):
  per-label ROC AUC / AP / sensitivity / specificity / precision / F1 / F2 as scikit-learn
  defines them, thresholds chosen on validation, confusion matrix, bootstrap intervals, and
  :class:`ClassificationEvaluator` (``evaluator_type="cxr_classification"``);
  :mod:`.classification_plots`: its ROC, precision-recall and confusion-matrix PNGs.

Adding a protocol ``"name"``:

1. In ``cxr_det/config.py``, add ``"name"`` to ``CXR_EVAL_PROTOCOLS`` and its options to
   ``CXR_EVAL_OPTIONS`` (name, protocol, default, type, choices, help): that gives the
   ``TEST.CXR_EVAL`` keys, the :class:`EvalOptions` fields with their checks, and the
   ``tools/evaluate.py`` flags.
2. Write ``cxr_det/evaluation/<name>.py``: the metric function (its docstring names the
   reference implementation and version) and a call to
   :func:`~.protocols.register_protocol` with a :class:`~.protocols.Protocol` (``run``,
   table ``titles``, optional ``csv_columns`` and ``plots``); import the module below.

Importing this package checks that every configured protocol is registered.
"""
from . import coco, froc, image_level, iobb, vinbigdata  # noqa: F401  (they register the protocols)
from .classification import ClassificationEvaluator, ClassificationInputs, classification_inputs, evaluate_classification
from .core import EvalOptions, InputReport, evaluate_detections
from .cxr_evaluator import CXRDetectionEvaluator
from .protocols import PROTOCOLS, Protocol, ProtocolInputs, check_registry, register_protocol

check_registry()

__all__ = [
    "ClassificationEvaluator",
    "ClassificationInputs",
    "classification_inputs",
    "evaluate_classification",
    "CXRDetectionEvaluator",
    "EvalOptions",
    "InputReport",
    "evaluate_detections",
    "PROTOCOLS",
    "Protocol",
    "ProtocolInputs",
    "register_protocol",
]
