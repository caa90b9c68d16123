"""``CXRDetectionEvaluator``: every chest X-ray detection protocol in one detectron2 evaluator,
configured by ``cfg.TEST.CXR_EVAL`` (:func:`cxr_det.config.add_cxr_eval_config`), with the
dataset's ground truth cached per registration options."""
import copy
import logging
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from .coco import records_to_coco
from .coco_files import write_evaluation_inputs
from .core import NO_FINDING_SCORE_KEY, EvalOptions, evaluate_detections, gather_predictions

__all__ = ["CXRDetectionEvaluator", "NO_FINDING_SCORE_KEY", "dataset_ground_truth", "clear_ground_truth_cache"]

logger = logging.getLogger(__name__)

# (dataset name, cxr_options_key, class names) -> (records, COCO ground truth); the newest last.
_GT_CACHE: "OrderedDict[tuple, Tuple[List[dict], dict]]" = OrderedDict()
_GT_CACHE_SIZE = 4


def clear_ground_truth_cache() -> None:
    """Forget every cached ground truth (see :func:`dataset_ground_truth`)."""
    _GT_CACHE.clear()


def dataset_ground_truth(dataset_name: str, class_names: Sequence[str]) -> Tuple[List[dict], dict]:
    """``(records, coco_gt)``: a registered dataset's dicts (``DatasetCatalog``) and their
    COCO ground truth (:func:`~cxr_det.evaluation.coco.records_to_coco`, with ``info``
    naming the dataset and its options).

    Cached in memory (the last few datasets) under the dataset name, the class names and
    the fingerprint of the options it was registered with (``MetadataCatalog``
    ``cxr_options_key``, see :mod:`cxr_det.data.datasets.builtin`): a name registered
    again with other options has another key, so its old ground truth is never reused.
    A dataset registered without that key (by other code) is loaded and converted on every
    call. The records are shared between calls: do not modify them.
    """
    metadata = MetadataCatalog.get(dataset_name)
    options_key = metadata.get("cxr_options_key")
    key = (dataset_name, options_key, tuple(class_names))
    if options_key is not None and key in _GT_CACHE:
        _GT_CACHE.move_to_end(key)
        logger.debug("ground truth of %s (options %s) from the cache", dataset_name, options_key)
        return _GT_CACHE[key]
    records = DatasetCatalog.get(dataset_name)
    coco_gt = records_to_coco(records, class_names)
    coco_gt["info"] = {"dataset_name": dataset_name, "cxr_options_key": options_key,
                       "cxr_options": metadata.get("cxr_options")}
    value = (records, coco_gt)
    if options_key is not None:
        _GT_CACHE[key] = value
        while len(_GT_CACHE) > _GT_CACHE_SIZE:
            _GT_CACHE.popitem(last=False)
    return value


def _to_float(value) -> float:
    return float(torch.as_tensor(value).detach().cpu().reshape(-1)[0])


class CXRDetectionEvaluator(DatasetEvaluator):
    """COCO, VinBigData, MDF-Net IoBB, FROC and image-level metrics from one pass.

    Ground truth is the registered dataset's dicts (``DatasetCatalog``; boxes in any
    ``BoxMode``; no annotation = normal image) and ``MetadataCatalog`` ``thing_classes``,
    cached per registration options (:func:`dataset_ground_truth`).
    ``process`` takes the model's ``instances`` (``pred_boxes``, ``scores``,
    ``pred_classes``, optional ``pred_masks``) and, when a model scores images itself,
    ``output["image_no_finding_score"]`` (probability that the image is normal; the
    VinBigData "No finding" confidence, instead of 1 - highest box score).

    ``evaluate`` returns ``{"bbox", "segm", "vinbigdata", "iobb", "froc", "image"}`` (those
    selected), each a dict of floats in percent like detectron2's (thresholds are raw
    scores) -- see :func:`~cxr_det.evaluation.core.evaluate_detections`. Dataset images that
    were never processed count as predicting nothing. With ``output_dir`` it writes
    ``metrics.json``, ``per_class.csv``, the PNG curves, and its inputs as COCO files
    (:func:`~cxr_det.evaluation.coco_files.write_evaluation_inputs`) that
    :func:`~cxr_det.evaluation.coco_files.load_evaluation_inputs` and ``tools/evaluate.py``
    read back to the same numbers.
    """

    def __init__(self, dataset_name: str, cfg=None, output_dir: Optional[str] = None, distributed: bool = True,
                 **options):
        """Options come from ``cfg.TEST.CXR_EVAL`` when ``cfg`` is given (else defaults);
        keyword arguments named as :class:`~cxr_det.evaluation.options.EvalOptions` fields
        (e.g. ``froc_iou=0.5``) override them when not None. Raises TypeError for an unknown
        option, ValueError for a bad value or a dataset without ``thing_classes``."""
        self._dataset_name = dataset_name
        self._options = EvalOptions.from_cfg(cfg, **options)
        metadata = MetadataCatalog.get(dataset_name)
        if not metadata.get("thing_classes"):
            raise ValueError(f"dataset {dataset_name!r} has no thing_classes in its metadata")
        self._class_names = list(metadata.thing_classes)
        self._output_dir = output_dir
        self._distributed = distributed
        self._cpu = torch.device("cpu")
        self._predictions = []

    @property
    def options(self) -> EvalOptions:
        """The :class:`~cxr_det.evaluation.options.EvalOptions` in use."""
        return self._options

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = {"image_id": inp["image_id"]}
            if "instances" in out:
                inst = out["instances"].to(self._cpu)
                pred["boxes"] = inst.pred_boxes.tensor.numpy().astype(np.float64)
                pred["scores"] = inst.scores.numpy().astype(np.float64)
                pred["classes"] = inst.pred_classes.numpy().astype(np.int64)
                if inst.has("pred_masks") and "coco" in self._options.protocols:
                    pred["segmentations"] = [r["segmentation"] for r in instances_to_coco_json(inst, inp["image_id"])]
            if out.get(NO_FINDING_SCORE_KEY) is not None:
                pred[NO_FINDING_SCORE_KEY] = _to_float(out[NO_FINDING_SCORE_KEY])
            self._predictions.append(pred)

    def evaluate(self):
        predictions = gather_predictions(self._predictions, self._distributed)
        if predictions is None:  # not the main process
            return {}
        if not predictions:
            logger.warning("[CXRDetectionEvaluator] Did not receive valid predictions.")
            return {}
        records, coco_gt = dataset_ground_truth(self._dataset_name, self._class_names)
        if self._output_dir:
            write_evaluation_inputs(self._output_dir, predictions, self._class_names, coco_gt=coco_gt)
        results = evaluate_detections(
            records, predictions, self._class_names, self._options, self._output_dir, coco_gt=coco_gt
        )
        return copy.deepcopy(OrderedDict(results))
