"""The registry of evaluation protocols, and the helpers the protocol modules share.

A protocol is one module that calls :func:`register_protocol` with a :class:`Protocol`:
its name (one of :data:`cxr_det.config.CXR_EVAL_PROTOCOLS`), the function that computes
it from :class:`ProtocolInputs` and :class:`~cxr_det.evaluation.options.EvalOptions`, the
titles of its result tables, its ``per_class.csv`` columns and its plots.
:func:`~cxr_det.evaluation.core.evaluate_detections` runs the protocols of
``options.protocols`` through :data:`PROTOCOLS`; the report and plots ask the registry too.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from cxr_det.config import CXR_EVAL_PROTOCOLS

from .matching import ImageBoxes, Matches, average_precision, precision_recall

__all__ = [
    "Protocol",
    "ProtocolInputs",
    "PROTOCOLS",
    "register_protocol",
    "registered_protocols",
    "check_registry",
    "threshold_tag",
    "coco_image_order",
    "nanmean",
    "percent",
    "pr_curve",
]


@dataclass
class ProtocolInputs:
    """What every protocol reads, prepared once per evaluation.

    gt_images: detectron2 dataset dicts (bad ground-truth boxes already left out).
    predictions: the per-image prediction dicts kept (at most one per ground-truth image).
    images: :class:`~cxr_det.evaluation.matching.ImageBoxes` per ground-truth image, in order.
    class_names: names of the classes 0..K-1.
    coco_gt: the COCO ground-truth dict of ``gt_images`` when already converted (cached),
        else None.
    """

    gt_images: Sequence[dict]
    predictions: Sequence[dict]
    images: Sequence[ImageBoxes]
    class_names: List[str]
    coco_gt: Optional[dict] = None


# (results by task, curves by task): results are {metric: float in percent}.
RunFn = Callable[[ProtocolInputs, object], Tuple[Dict[str, dict], Dict[str, object]]]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    name: its name in ``options.protocols`` and ``cfg.TEST.CXR_EVAL.PROTOCOLS``.
    run: ``run(inputs, options) -> (results, curves)``: ``results`` maps each task it
        reports (e.g. "bbox" and "segm" for "coco") to an ordered dict of floats in percent
        (summary keys first, then ``<metric>-<class>``, NaN where undefined); ``curves``
        maps tasks to what its plots draw.
    titles: {task: table title}.
    csv_columns: ``csv_columns(results, options)`` -> ``[(CSV column, task, per-class
        metric, summary metric or None)]`` for ``per_class.csv`` (tasks not in ``results``
        give none).
    plots: ``plots(output_dir, curves, options)`` -> paths of the PNGs written, or None.
    """

    name: str
    run: RunFn
    titles: Mapping[str, str]
    csv_columns: Callable[[dict, object], List[tuple]] = field(default=lambda results, options: [])
    plots: Optional[Callable[[str, dict, object], List[str]]] = None


PROTOCOLS: "OrderedDict[str, Protocol]" = OrderedDict()


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS`; returns it. Raises ValueError for a name
    registered twice or one that is not in :data:`cxr_det.config.CXR_EVAL_PROTOCOLS` (where
    the config keys and tool flags come from)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"evaluation protocol {protocol.name!r} is registered twice")
    if protocol.name not in CXR_EVAL_PROTOCOLS:
        raise ValueError(
            f"evaluation protocol {protocol.name!r} is not in cxr_det.config.CXR_EVAL_PROTOCOLS "
            f"{list(CXR_EVAL_PROTOCOLS)}: add it there, with its options in CXR_EVAL_OPTIONS"
        )
    PROTOCOLS[protocol.name] = protocol
    return protocol


def registered_protocols() -> List[Protocol]:
    """The registered protocols in the order of :data:`cxr_det.config.CXR_EVAL_PROTOCOLS`."""
    return [PROTOCOLS[name] for name in CXR_EVAL_PROTOCOLS if name in PROTOCOLS]


def check_registry() -> None:
    """Raise RuntimeError when a name of ``CXR_EVAL_PROTOCOLS`` has no registered protocol
    (its module was not imported by :mod:`cxr_det.evaluation`)."""
    missing = [name for name in CXR_EVAL_PROTOCOLS if name not in PROTOCOLS]
    if missing:
        raise RuntimeError(f"evaluation protocols {missing} are configured but no module registers them")


def threshold_tag(threshold: float) -> str:
    """0.4 -> "40", 0.125 -> "12.5": the suffix of metric names such as ``mAP40``."""
    return f"{threshold * 100:g}"


def coco_image_order(images: Sequence[ImageBoxes]) -> List[int]:
    """Positions of ``images`` by increasing ``image_id``: the order in which pycocotools'
    ``COCOeval`` (``params.imgIds = sorted(...)``) concatenates images, which decides the
    order of tied scores. Ids that cannot be compared (mixed types) keep the given order."""
    try:
        return sorted(range(len(images)), key=lambda i: images[i].image_id)
    except TypeError:
        return list(range(len(images)))


def nanmean(values) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    values = np.asarray(list(values), dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def percent(value: float) -> float:
    """A fraction in [0, 1] as a float in percent (NaN stays NaN)."""
    return float(value) * 100.0


def pr_curve(m: Matches, method: str):
    """``(AP in [0, 1], curve dict)`` of one class's matches: one curve point per
    prediction, ties in matching order (as the reference scorers sort); ``method`` as
    :func:`~cxr_det.evaluation.matching.average_precision`; AP is NaN without ground truth."""
    precision, recall, thresholds = precision_recall(m.scores, m.tp, m.num_gt, group_ties=False)
    ap = average_precision(precision, recall, method) if m.num_gt > 0 else float("nan")
    return ap, {"precision": precision, "recall": recall, "thresholds": thresholds, "ap": ap, "num_gt": m.num_gt}
